"""Training of the motion network: configuration, objectives, the loop and its callbacks, checkpoints."""
