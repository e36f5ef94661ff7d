"""Built-in checkpoint formats; importing this module registers them."""

from beliefscope.rssm import checkpoint  # noqa: F401  (registers "native")
