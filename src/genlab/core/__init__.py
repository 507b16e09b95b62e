"""Model-agnostic machinery: errors, atomic I/O, checkpoints, the trainer, logging, devices."""
