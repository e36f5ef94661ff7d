"""Built-in checkpoint formats; importing this module registers them."""

from beliefscope.rssm import checkpoint  # noqa: F401  (registers "native")
from beliefscope.rssm.families import (
    dreamerv3_official,  # noqa: F401  (registers "dreamerv3")
    dreamerv3_torch,  # noqa: F401  (registers "dreamerv3-torch")
    torchrl_v3,  # noqa: F401  (registers "torchrl")
)
