"""Training a GAN as two trainer phases, and sampling it.

Goodfellow et al., 2014, "Generative Adversarial Nets": a discriminator D learns to tell real
images from the generator's, and the generator G learns to fool it. Each training step runs two
:class:`~genlab.core.phases.Phase`s on the same batch: the discriminator's (its optimizer only),
then the generator's, each on fresh latents. Two losses are offered:

- ``"hinge"`` (Lim & Ye, 2017; Miyato et al., 2018): D minimises ``relu(1 - D(x)) +
  relu(1 + D(G(z)))``, G minimises ``-D(G(z))``;
- ``"non-saturating"`` (Goodfellow et al., 2014, section 3): D is a logistic classifier,
  ``softplus(-D(x)) + softplus(D(G(z)))``, and G maximises ``log sigmoid(D(G(z)))``, i.e.
  minimises ``softplus(-D(G(z)))``, which keeps its gradient when D wins.

The discriminator's loss adds the R1 penalty (Mescheder et al., 2018, "Which Training Methods
for GANs do actually Converge?"): ``gamma / 2 * E ||grad_x D(x)||^2`` on real images, which
keeps D flat on the data and makes training converge locally.

Instance noise (Arjovsky & Bottou, 2017, "Towards Principled Methods for Training Generative
Adversarial Networks"; Sonderby et al., 2017) adds Gaussian noise to every image D sees, real
and fake, in both phases: the two distributions then overlap, so D cannot win on a detail the
generator cannot reach (on the shapes, the exact white of the background) and its gradient
stays informative.

Under DDP every parameter must take part in each backward, so the discriminator's phase does
not detach the fakes: gradients reach the generator and are dropped (the trainer clears every
gradient after each phase). A GAN has no likelihood, hence no ``bits_per_dim``; it is judged
by its samples (FID). Samples come from the generator in eval mode, usually with the EMA of
the weights (``genlab.core.ema``; the average of the whole model is loaded as is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.batches import Batch
from genlab.core.distributed import unwrap
from genlab.core.errors import GenlabError
from genlab.core.phases import OptimizerGroup, Phase
from genlab.core.registry import Kind, register
from genlab.nets.gan import GAN, GANConfig

KIND = "gan"
LOSSES = ("hinge", "non-saturating")


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise GenlabError(f"unknown GAN loss '{loss}': use {' or '.join(LOSSES)}")


def _check_noise(std: float) -> None:
    if not 0 <= std < float("inf"):
        raise GenlabError(f"instance noise must be a finite std >= 0, got {std}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, loss: str = "hinge") -> Tensor:
    """The discriminator's loss, a mean over the real rows plus a mean over the fake ones."""
    _check_loss(loss)
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, loss: str = "hinge") -> Tensor:
    """The generator's loss, a mean over the fake rows."""
    _check_loss(loss)
    if loss == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """``E ||grad_x D(x)||^2`` over the rows of ``real`` (which must require grad), kept
    differentiable so that its gradient reaches the discriminator's weights."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def _latents_like(model: nn.Module, images: Tensor) -> Tensor:
    """Fresh latents for a batch, from the global generator (checkpointed, so resume is exact)."""
    return torch.randn(len(images), unwrap(model).config.z_dim, device=images.device)


class DiscriminatorLoss:
    """The discriminator's phase: its loss on real images and on fresh fakes under the batch's
    captions, plus ``r1_gamma / 2`` times R1; ``instance_noise``: the std of the noise added
    to D's inputs. Metrics: mean logits ``real`` and ``fake``, and ``r1`` (the unweighted
    penalty)."""

    def __init__(
        self, loss: str = "hinge", r1_gamma: float = 1.0, instance_noise: float = 0.0
    ) -> None:
        _check_loss(loss)
        _check_noise(instance_noise)
        if r1_gamma < 0:
            raise GenlabError(f"r1_gamma must be >= 0, got {r1_gamma}")
        self.loss = loss
        self.r1_gamma = r1_gamma
        self.instance_noise = instance_noise

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor | int]]:
        images, captions = batch
        z = _latents_like(model, images)
        # R1 differentiates D(x) by x, also inside the trainer's no-grad evaluation
        with torch.enable_grad():
            real = images.detach().requires_grad_(self.r1_gamma > 0)
            out = model(z, captions, real, self.instance_noise)
            real_logits, fake_logits = out.real_logits.float(), out.fake_logits.float()
            loss = discriminator_loss(real_logits, fake_logits, self.loss)
            r1 = r1_penalty(real_logits, real) if self.r1_gamma > 0 else loss.new_zeros(())
            loss = loss + self.r1_gamma / 2 * r1
        metrics = {
            "real": real_logits.detach().mean(),
            "fake": fake_logits.detach().mean(),
            "r1": r1.detach(),
            "samples": len(images),
        }
        return loss, metrics


class GeneratorLoss:
    """The generator's phase: its loss on fresh fakes under the batch's captions. Metric:
    ``fake``, the mean logit of its images (seen through the same instance noise as D's)."""

    def __init__(self, loss: str = "hinge", instance_noise: float = 0.0) -> None:
        _check_loss(loss)
        _check_noise(instance_noise)
        self.loss = loss
        self.instance_noise = instance_noise

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor | int]]:
        images, captions = batch
        z = _latents_like(model, images)
        fake_logits = model(z, captions, None, self.instance_noise).fake_logits.float()
        loss = generator_loss(fake_logits, self.loss)
        return loss, {"fake": fake_logits.detach().mean(), "samples": len(images)}


def gan_phases(
    loss: str = "hinge",
    r1_gamma: float = 1.0,
    d_lr: float | None = None,
    g_lr: float | None = None,
    weight_decay: float | None = 0.0,
    instance_noise: float = 0.0,
) -> tuple[list[Phase], dict[str, OptimizerGroup]]:
    """The trainer's ``step_fn`` and ``optimizers`` for a :class:`~genlab.nets.gan.GAN`: phase
    ``d`` steps the optimizer ``discriminator``, then phase ``g`` the optimizer ``generator``
    (logged as ``d_loss``, ``d_real``, ``d_fake``, ``d_r1``, ``g_loss``, ``g_fake``). Learning
    rates ``None`` are the run's; GANs train without weight decay (``None``: the run's);
    ``instance_noise`` is the std of the noise on D's inputs in both phases."""
    phases = [
        Phase(DiscriminatorLoss(loss, r1_gamma, instance_noise), ("discriminator",), "d"),
        Phase(GeneratorLoss(loss, instance_noise), ("generator",), "g"),
    ]
    optimizers = {
        "discriminator": OptimizerGroup("discriminator", d_lr, weight_decay),
        "generator": OptimizerGroup("generator", g_lr, weight_decay),
    }
    return phases, optimizers


def latents(
    n: int, dim: int, generator: torch.Generator, truncation: float | None = None
) -> Tensor:
    """(n, dim) standard normal latents on ``generator``'s device; with ``truncation`` t every
    entry beyond +-t is drawn again until none is (the truncation trick of BigGAN, Brock et al.,
    2019: fidelity for variety)."""
    if truncation is not None and truncation <= 0:
        raise GenlabError(f"truncation must be positive, got {truncation}")
    z = torch.randn(n, dim, generator=generator, device=generator.device)
    if truncation is not None:
        while (outside := z.abs() > truncation).any():
            z[outside] = torch.randn(
                int(outside.sum()), generator=generator, device=generator.device
            )
    return z


@torch.no_grad()
def sample(
    model: GAN,
    n: int,
    captions: Tensor | None,
    generator: torch.Generator,
    truncation: float | None = None,
) -> Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] from the generator in eval mode, one per caption
    row (None or all-pad rows: unconditional); all randomness comes from ``generator``."""
    if captions is not None and len(captions) != n:
        raise GenlabError(f"{len(captions)} captions for {n} samples: give one caption per sample")
    net = model.generator
    device = next(net.parameters()).device
    z = latents(n, model.config.z_dim, generator, truncation).to(device)
    was_training = net.training
    net.eval()
    try:
        images = net(z, None if captions is None else captions.to(device))
    finally:
        net.train(was_training)
    return images.float().clamp(-1, 1)


register(Kind(KIND, GANConfig, GAN))
