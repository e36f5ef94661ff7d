"""Built-in replay formats; importing this module registers them."""
