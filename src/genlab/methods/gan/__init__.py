"""Generative adversarial networks (Goodfellow et al., 2014): a generator trained against a
discriminator, in two trainer phases. ``gan`` has the losses (hinge or non-saturating, with the
R1 penalty), the phases and optimizers a trainer runs, sampling with the truncation trick, and
the ``gan`` model kind. A GAN has no likelihood, so it reports no bits per dimension.
"""
