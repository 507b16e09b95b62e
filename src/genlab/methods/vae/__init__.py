"""Autoencoders that generate: the variational autoencoder and the vector-quantized one.

- ``vae``: a Gaussian latent grid trained on the ELBO (Kingma & Welling, 2014), sampling from
  the prior, and bits per dimension (an upper bound); the ``vae`` model kind.
- ``vq``: a discrete latent grid with an EMA codebook (van den Oord et al., 2017), trained on
  reconstruction; the tokenizer of the image token models (``encode`` / ``decode``); the ``vq``
  model kind.
"""
