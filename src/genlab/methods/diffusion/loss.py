"""The denoising loss, the trainer's step function for any diffusion model.

DDPM's "simple" objective (Ho et al., 2020, "Denoising Diffusion Probabilistic Models",
algorithm 1): noise a clean sample to step t in closed form and regress the network's output on
the target of its parametrisation with a mean squared error, optionally each row weighted by
Min-SNR-gamma (Hang et al., 2023, "Efficient Diffusion Training via Min-SNR Weighting
Strategy"). It assumes no modality: the batch holds ``sample`` (x_0, any shape (B, ...)),
``noise`` (its shape) and ``t`` (B,), and every other key is a condition passed to the network
by name, ``model(x_t, t, **cond)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.schedule import NoiseSchedule

PROCESS_KEYS = ("sample", "noise", "t")  # a batch's other keys are the network's conditions


class DiffusionLoss:
    """Mean squared error between the network's output at (x_t, t) and the schedule's training
    target (noise, sample or velocity), each row weighted by Min-SNR-gamma when ``snr_gamma``
    is set, with the weight of the noisiest steps held at ``snr_floor`` (see
    ``NoiseSchedule.min_snr_weight``)."""

    def __init__(
        self, schedule: NoiseSchedule, snr_gamma: float | None = None, snr_floor: float = 0.0
    ) -> None:
        if snr_gamma is not None and snr_gamma <= 0:
            raise GenlabError(f"snr_gamma must be positive, got {snr_gamma}")
        if not 0.0 <= snr_floor <= (snr_gamma or 0.0):
            raise GenlabError(
                f"snr_floor must lie in [0, snr_gamma] and needs snr_gamma, got {snr_floor}"
            )
        self.schedule = schedule
        self.snr_gamma = snr_gamma
        self.snr_floor = snr_floor

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        x0, noise, t = (batch[key] for key in PROCESS_KEYS)
        cond = {k: v for k, v in batch.items() if k not in PROCESS_KEYS}
        x_t = self.schedule.add_noise(x0, noise, t)
        target = self.schedule.training_target(x0, noise, t)
        pred = model(x_t, t, **cond)
        if self.snr_gamma is None:
            loss = F.mse_loss(pred.float(), target)
        else:
            per_row = (pred.float() - target).pow(2).reshape(len(x0), -1).mean(dim=1)
            weight = self.schedule.min_snr_weight(t, self.snr_gamma, floor=self.snr_floor)
            loss = (weight * per_row).mean()
        return loss, {"samples": x0.shape[0]}
