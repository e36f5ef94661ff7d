"""Built-in replay formats; importing this module registers them."""

# Each format's `detect` claims only its own directories (by file names and keys).
from beliefscope.replay import (
    dreamerv3_chunks,  # noqa: F401
    dreamerv3_torch,  # noqa: F401
    native,  # noqa: F401
    torchrl_rollouts,  # noqa: F401
)
