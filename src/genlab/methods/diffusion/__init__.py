"""Diffusion: the forward process, the DDPM/DDIM samplers, classifier-free guidance, the loss.
Nothing here assumes images: a sample is any tensor ``(B, ...)``."""
