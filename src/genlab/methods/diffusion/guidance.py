"""Classifier-free guidance (Ho & Salimans, 2022, "Classifier-Free Diffusion Guidance").

One network learns both the conditional and the unconditional prediction: during training the
condition (class label or caption) is replaced by a null condition with probability p (typically
0.1). At sampling time the two predictions are extrapolated,
``guided = uncond + s * (cond - uncond)``: s = 1 is the plain conditional model, s = 0 the
unconditional one, and s > 1 trades diversity for adherence to the condition, without the
separate classifier that classifier guidance (Dhariwal & Nichol, 2021) needs.

The helpers work with any denoiser called as ``model(x, t, **cond, drop_cond=mask)``, where
``drop_cond`` (B,) marks the rows that get the null condition (``genlab.nets.unet.UNet``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from genlab.core.errors import GenlabError


def cfg_combine(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Extrapolate from the unconditional towards the conditional prediction by ``scale``."""
    return uncond + scale * (cond - uncond)


def condition_dropout(
    batch_size: int,
    p: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A (B,) bool mask, True with probability ``p``: the rows trained with the null condition."""
    if not 0.0 <= p <= 1.0:
        raise GenlabError(f"condition dropout must lie in [0, 1], got {p}")
    rand_device = generator.device if generator is not None else device
    return (torch.rand(batch_size, generator=generator, device=rand_device) < p).to(device)


def guided_model_output(
    model: Callable[..., Tensor],
    x: Tensor,
    t: Tensor | int,
    cond: Mapping[str, Tensor | None],
    scale: float,
) -> Tensor:
    """The guided prediction at (x, t), with the conditional and unconditional passes run as
    one batch of 2B (one call to the network per sampling step).

    ``cond`` holds the model's condition arguments (e.g. ``{"class_labels": y}`` or
    ``{"context": c, "context_mask": m}``); with s = 1 or s = 0 only one pass is needed.
    """
    B = x.shape[0]
    if scale == 1.0:
        return model(x, t, **cond)
    if scale == 0.0:
        return model(x, t, **cond, drop_cond=torch.ones(B, dtype=torch.bool, device=x.device))
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(B) if t.ndim == 0 else t
    doubled = {k: None if v is None else torch.cat([v, v]) for k, v in cond.items()}
    drop = torch.arange(2 * B, device=x.device) >= B  # the second half is unconditional
    out = model(torch.cat([x, x]), torch.cat([t, t]), **doubled, drop_cond=drop)
    cond_out, uncond_out = out.chunk(2)
    return cfg_combine(uncond_out, cond_out, scale)
