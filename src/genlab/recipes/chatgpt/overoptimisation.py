"""Reward-model over-optimisation in the demo's PPO run, drawn and described for the report.

Gao et al. (2022, "Scaling Laws for Reward Model Overoptimization", figure 1) plot a gold reward
against the KL distance ``sqrt(KL)`` from the initial policy: as the policy is optimised against
a proxy reward model the gold score rises, peaks and falls while the proxy's keeps rising. The
PPO run's held-out monitor (:mod:`genlab.align.ppo_monitor`) logs both scores and the KL on the
same held-out prompts; here the reward model is the proxy and TinyWorld's judge the gold.
:func:`plot_overoptimisation` draws the curves, :func:`describe_stop` says how the run ended.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.align.ppo_monitor import GUARD_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.core.logging import read_metrics


def heldout_evaluations(ppo_folder: Path) -> list[dict[str, Any]]:
    """The held-out evaluations of a PPO run's ``metrics.jsonl``, in order."""
    records = [r for r in read_metrics(ppo_folder) if "heldout_reward" in r]
    if not records:
        raise GenlabError(
            f"{ppo_folder} has no held-out evaluations: the run had no held-out prompts or "
            "eval_every=0"
        )
    return records


def _series(ax: Axes, records: list[dict[str, Any]], x: str, guard: dict[str, Any]) -> None:
    """Judge score (left axis) and reward model score (right axis) against ``x``."""
    xs = [r[x] for r in records]
    if "heldout_gold" in records[0]:
        ax.plot(xs, [r["heldout_gold"] for r in records], "o-", color="C1", label="judge (gold)")
        best = guard.get("best_gold_iteration")
        peak = [r for r in records if r["iteration"] == best]
        if peak:
            label = "peak (the policy kept)" if guard.get("kept_iteration") == best else "peak"
            ax.plot(peak[0][x], peak[0]["heldout_gold"], "*", ms=14, color="C1", label=label)
    ax.set_ylabel("judge score")
    proxy = ax.twinx()
    proxy.plot(xs, [r["heldout_reward"] for r in records], "s--", color="C0", ms=4)
    proxy.set_ylabel("reward model score", color="C0")
    ax.plot([], [], "s--", color="C0", ms=4, label="reward model (proxy)")  # in ax's legend
    ax.grid(alpha=0.3)


def plot_overoptimisation(ppo_folder: Path, out_png: Path) -> None:
    """Two panels from the held-out evaluations: both scores against the iteration, the guard's
    stop marked, and against the KL to the SFT model on a square-root axis (Gao et al.)."""
    records = heldout_evaluations(ppo_folder)
    guard_path = ppo_folder / GUARD_FILE
    guard = read_json(guard_path, "PPO guard record") if guard_path.is_file() else {}
    fig = Figure(figsize=(11, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)

    ax = fig.add_subplot(1, 2, 1)
    _series(ax, records, "iteration", guard)
    if guard.get("stopped"):
        ax.axvline(guard["iteration"], color="C3", ls=":", label="stopped by the guard")
    ax.set(title="PPO on held-out prompts", xlabel="PPO iteration")
    ax.legend(fontsize=8)

    ax = fig.add_subplot(1, 2, 2)
    _series(ax, records, "heldout_kl", guard)
    ax.set_xscale("function", functions=(lambda k: np.sqrt(np.clip(k, 0, None)), np.square))
    ax.set_xlim(left=0)
    ax.set(title="Over-optimisation (Gao et al., 2022)", xlabel="KL to SFT (nats, sqrt scale)")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(out_png, buffer.getvalue())


def _nats(kl: float) -> str:
    """A KL for a sentence: the estimate of a KL near 0 may be slightly negative."""
    return f"{max(kl, 0.0):.1f}"


def describe_stop(ppo_folder: Path) -> str:
    """One sentence for the report: how the PPO run ended and where the judge score peaked."""
    guard = read_json(ppo_folder / GUARD_FILE, "PPO guard record")
    if guard["stopped"]:
        sentence = f"Stopped at iteration {guard['iteration']} of {guard['iterations']}: "
        sentence += guard["reason"]
    else:
        sentence = f"Ran all {guard['iterations']} iterations"
    records = [r for r in read_metrics(ppo_folder) if "heldout_reward" in r]
    when = "at the stop" if guard["stopped"] else "at the end"
    if records and "heldout_gold" in records[-1]:
        sentence += (
            f"; the held-out judge score peaked at iteration {guard['best_gold_iteration']} "
            f"({guard['best_gold']:.3f}) and was {records[-1]['heldout_gold']:.3f} {when}, "
            f"at a held-out KL of {_nats(records[-1]['heldout_kl'])} nats"
        )
    elif records:
        sentence += f"; the held-out KL was {_nats(records[-1]['heldout_kl'])} nats {when}"
    kept = guard["kept_iteration"]
    if kept == 0:
        sentence += (
            "; the policy kept is the starting one (no iteration beat it on held-out prompts)"
        )
    elif kept != guard["iteration"]:
        sentence += f"; the policy kept is iteration {kept}'s, the best held-out judge score"
    elif guard["stopped"]:
        sentence += f"; the policy kept is iteration {kept}'s"
    return sentence + "."
