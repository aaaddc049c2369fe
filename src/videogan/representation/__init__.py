"""The discriminator as a video representation: features for action recognition, linear probes and
fine-tuning."""
