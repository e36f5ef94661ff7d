"""Built-in checkpoint formats; importing this module registers them."""
