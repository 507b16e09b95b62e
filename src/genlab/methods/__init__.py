"""How each family learns and generates, modality-neutral: ``autoregressive`` (decoding, the
one scoring function, image GPT), ``masked`` (mask-predict, MaskGIT), ``diffusion`` (schedules,
samplers, guidance, loss), ``vae`` (VAE, VQ-VAE), ``flow`` (Glow), ``gan``."""
