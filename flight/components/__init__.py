"""Flight components that run on the vehicle's devices."""
