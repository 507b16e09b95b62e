"""Normalising flows: Glow (``flow``), trained by exact maximum likelihood on dequantised 8-bit
images and sampled by inverting the flow from (tempered) Gaussian noise."""
