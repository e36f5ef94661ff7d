"""Built-in replay formats; importing this module registers them."""

# The most specific formats first: detection takes the first that recognises a directory.
from beliefscope.replay import native  # noqa: F401
