"""Training the GAN: the loop, one step, losses, EMA, checkpoints, logging, multi-process set-up and speed
options."""
