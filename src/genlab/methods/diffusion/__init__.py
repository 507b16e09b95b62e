"""Diffusion: the forward process (``schedule``), the DDPM/DDIM samplers (``samplers``),
classifier-free guidance (``guidance``) and the loss (``loss``) assume no modality: a sample is any
tensor ``(B, ...)``. ``text_conditioned`` is the text-to-image model built on them."""
