"""Scaling laws (issue 16): FLOPs counted per run, Kaplan's power laws, the Chinchilla fit and
the compute-optimal split between parameters and tokens."""

from genlab.scaling.chinchilla import ChinchillaFit, compute_optimal, fit_chinchilla, predict
from genlab.scaling.flops import flops_per_token, non_embedding_params, training_flops
from genlab.scaling.power_law import PowerLaw, fit_power_law

__all__ = [
    "ChinchillaFit",
    "PowerLaw",
    "compute_optimal",
    "fit_chinchilla",
    "fit_power_law",
    "flops_per_token",
    "non_embedding_params",
    "predict",
    "training_flops",
]
