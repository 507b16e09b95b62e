"""How each family learns and generates, modality-neutral: ``autoregressive`` (decoding and the
one scoring function), ``diffusion`` (schedules, samplers, guidance, loss)."""
