"""The levers tried on the scaling-laws prediction (issue 16), measured on the same held-out run.

The scaling-laws experiment fits L(N, D) to the CPU sweep and predicts a held-out run at 4x the
sweep's largest compute. This script adds runs to the fit, one kind at a time, and reports for
each arm the held-out prediction's error and a validation error that never sees the held-out
run (fit without the sweep's three largest-compute runs, predict them), then profiles the fit
over a fixed irreducible loss E. The extra runs train with the sweep's own settings, in folders
beside it (reused on a rerun):

- ``-long``: the two smallest shapes for 8M tokens (past the corpus's 4.7M: 1.7 epochs), to
  show the floor E if it is within reach;
- ``-bracket``: widths 192 and 256 (the held-out run's width and one above) for 0.25M and 0.5M
  tokens, so that the fit sees the held-out run's size, within the sweep's largest compute.

    python scripts/scaling_levers.py          # after genlab experiment scaling-laws
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from genlab.core.sweep import collect, markdown_table
from genlab.recipes.experiments.sweep_models import default_sweep
from genlab.recipes.scaling import HELD_OUT, run_beside
from genlab.scaling.chinchilla import fit_chinchilla, predict, predict_interval

ARMS = {
    "long": [(2, 2, 32, 8_000_000), (2, 4, 64, 8_000_000)],
    "bracket": [(4, 4, w, b) for w in (192, 256) for b in (250_000, 500_000)],
}


def columns(rows: list[dict]) -> list[np.ndarray]:
    return [np.array([r[k] for r in rows], dtype=float) for k in ("params", "tokens", "loss")]


def chinchilla(rows: list[dict]):
    fit = fit_chinchilla(*columns(rows), n_resamples=0)
    return lambda n, d: predict(fit, n, d)


def kaplan_joint(rows: list[dict]):
    """Kaplan et al.'s L(N, D) = ((N_c / N)^(a_N / a_D) + D_c / D)^a_D (no irreducible term),
    fitted as the Chinchilla form is: Huber loss on log-loss, L-BFGS from a grid of starts."""
    n, d, loss = (np.log(v) for v in columns(rows))

    def log_loss(theta: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        log_nc, log_dc, a_n, a_d = theta
        return a_d * np.logaddexp((log_nc - n) * a_n / a_d, log_dc - d)

    def objective(theta: np.ndarray) -> float:
        return float(huber(1e-3, log_loss(theta, n, d) - loss).sum())

    starts = itertools.product((5, 10, 15, 20), (5, 10, 15, 20), (0.1, 0.3, 0.6), (0.1, 0.3, 0.6))
    bounds = [(None, None), (None, None), (1e-3, None), (1e-3, None)]
    best = min(
        (minimize(objective, s, method="L-BFGS-B", bounds=bounds) for s in starts),
        key=lambda r: r.fun,
    )
    return lambda n2, d2: np.exp(log_loss(best.x, np.log(n2), np.log(d2)))


def validation_error(rows: list[dict], fitter=chinchilla) -> float:
    """Mean relative error on the three largest-compute runs of a fit to the others."""
    order = np.argsort([r["params"] * r["tokens"] for r in rows])
    law = fitter([rows[i] for i in order[:-3]])
    n, d, loss = columns([rows[i] for i in order[-3:]])
    return float(np.mean(np.abs(law(n, d) - loss) / loss))


def profile(rows: list[dict], e: float) -> tuple[float, float, float]:
    """The Huber objective with E fixed at ``e`` (A, B, alpha, beta free), its alpha and the
    held-out prediction's parameters: how well the runs pin E down."""
    n, d, loss = (np.log(v) for v in columns(rows))
    floor = np.log(e) if e > 0 else -50.0

    def objective(theta: np.ndarray) -> float:
        a, b, alpha, beta = theta
        pred = logsumexp([a - alpha * n, b - beta * d, np.full_like(n, floor)], axis=0)
        return float(huber(1e-3, pred - loss).sum())

    starts = itertools.product(range(0, 30, 5), range(0, 30, 5), (0, 0.5, 1), (0, 0.5, 1))
    best = min((minimize(objective, s, method="L-BFGS-B") for s in starts), key=lambda r: r.fun)
    return best.fun, best.x, e


def main() -> None:
    sweep = default_sweep()
    base = collect(sweep.out)
    held = collect(f"{sweep.out}-{HELD_OUT}")
    if not base or not held:
        sys.exit("run `genlab experiment scaling-laws` first (the sweep and its held-out run)")
    [held_out] = held
    extra = {}
    for name, runs in ARMS.items():
        points = [
            dict(zip(("layers", "heads", "width", "budget"), run, strict=True)) for run in runs
        ]
        extra[name] = run_beside(sweep, points, name, sweep.parallel)
    arms = {"sweep": base}
    for least in (500_000, 1_000_000):
        arms[f"sweep, runs of {least / 1e6:g}M+ tokens"] = [r for r in base if r["budget"] >= least]
    arms["sweep + long"] = base + extra["long"]
    arms["sweep + bracket"] = base + extra["bracket"]
    arms["sweep + long + bracket"] = base + extra["long"] + extra["bracket"]
    table, record = [], {}
    for name, rows in arms.items():
        fit = fit_chinchilla(*columns(rows), n_resamples=200, seed=sweep.seed)
        n, d, measured = held_out["params"], held_out["tokens"], held_out["loss"]
        guess = float(predict(fit, n, d))
        low, high = predict_interval(fit, n, d)
        error, valid = abs(guess - measured) / measured, validation_error(rows)
        record[name] = {"runs": len(rows), "fit": fit.as_dict(), "predicted": guess,
                        "interval": [low, high], "error": error, "validation_error": valid}  # fmt: skip
        table.append([name, len(rows), f"{fit.E:.3f}", f"{fit.alpha:.3f}", f"{fit.beta:.3f}",
                      f"{guess:.4f} [{low:.4f}, {high:.4f}]", f"{100 * error:.1f}%",
                      f"{100 * valid:.1f}%"])  # fmt: skip
    print(f"held-out run: {held_out['layers']} x {held_out['width']}, {held_out['tokens']:,} "
          f"tokens, measured loss {held_out['loss']:.4f}")  # fmt: skip
    print(markdown_table(["fit on", "runs", "E", "alpha", "beta", "predicted [95%]",
                          "error", "validation error"], table))  # fmt: skip
    rows = []
    record["profile"] = []
    for e in (0.0, 0.1, 0.2, 0.3, 0.4):
        value, (a, b, alpha, beta), _ = profile(base, e)
        guess = e + np.exp(a) / held_out["params"] ** alpha + np.exp(b) / held_out["tokens"] ** beta
        error = abs(guess - held_out["loss"]) / held_out["loss"]
        record["profile"].append({"E": e, "huber": value, "predicted": guess, "error": error})
        rows.append(
            [
                e,
                f"{value:.5f}",
                f"{alpha:.3f}",
                f"{beta:.3f}",
                f"{guess:.4f}",
                f"{100 * error:.1f}%",
            ]
        )
    law = kaplan_joint(base)
    guess = float(law(held_out["params"], held_out["tokens"]))
    error = abs(guess - held_out["loss"]) / held_out["loss"]
    record["kaplan_joint"] = {"predicted": guess, "error": error,
                              "validation_error": validation_error(base, kaplan_joint)}  # fmt: skip
    print(f"\nKaplan's joint form on the sweep: predicted {guess:.4f}, error {100 * error:.1f}%, "
          f"validation error {100 * record['kaplan_joint']['validation_error']:.1f}%")  # fmt: skip
    print("\nthe sweep's fit with E fixed (how flat the objective is in E):")
    print(markdown_table(["E", "Huber objective", "alpha", "beta", "predicted", "error"], rows))
    out = Path("docs/experiments/scaling_levers.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
