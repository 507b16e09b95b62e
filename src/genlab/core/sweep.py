"""Sweeps: run one function at many settings, one run folder per point, and one results table.

Experiments and scaling studies are all "run this at each of these settings"; the loop lives here
once, so each of them can be resumed, run in parallel processes and tabulated alike.

A point is a dict of JSON values (``grid`` expands a cartesian product). Its run folder is named
from its settings, readable words and a hash of the function and every setting, so running the
same sweep again finds it: a point whose ``result.json`` exists is skipped, one that failed left
``error.json`` and runs again. The function is named by a dotted path, ``"package.module:fn"``,
rather than passed as an object, so that a fresh process can import it. It is called as
``fn(settings, run_dir)`` and returns its metrics, a dict of numbers and strings. It must depend
on its settings alone (seed everything from them), so that a point gives the same result whether
it runs alone or beside others.

    rows = run_sweep("mypkg.train:point", grid(lr=[1e-3, 3e-3], depth=[2, 4]), "runs/lr-depth",
                     fixed={"steps": 1000}, parallel=2)

``python -m genlab.core.sweep RUN_DIR`` runs one point by hand, as the parallel sweep does.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json, read_json

POINT_FILE = "point.json"  # {"fn": ..., "fixed": {...}, "point": {...}}
LAUNCHERS = ("local", "ray")  # processes on this machine, or tasks on a Ray cluster
RESULT_FILE = "result.json"  # the metrics: the point is done
ERROR_FILE = "error.json"  # {"error": one line, "traceback": ...}: the point runs again
LOG_FILE = "log.txt"  # a point's output when it runs in its own process
TABLE_JSON, TABLE_MD = "results.json", "results.md"
SLUG_CHARS = 80  # of a folder name's readable part; the hash keeps longer ones apart

Point = dict[str, Any]
Metrics = dict[str, float | str]
RunFunction = Callable[[Point, Path], Metrics]


def grid(**axes: Sequence[Any]) -> list[Point]:
    """Every combination of the axes' values, the last axis varying fastest:
    ``grid(a=[1, 2], b=["x", "y"])`` is a=1 b=x, a=1 b=y, a=2 b=x, a=2 b=y. Lists of points
    add up (``grid(...) + grid(...)``) for what one product cannot express."""
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise GenlabError(f"sweep settings must be JSON values (str, number, bool): {e}") from e


def _settings(point: Point, fixed: Point) -> Point:
    both = sorted(set(point) & set(fixed))
    if both:
        raise GenlabError(f"sweep setting(s) {', '.join(both)} given both fixed and per point")
    return {**fixed, **point}


def point_dir(out: str | os.PathLike, fn: str, point: Point, fixed: Point | None = None) -> Path:
    """The run folder of ``point``: its settings in words (sorted, so the order of the keys does
    not matter) and a hash of the function and every setting, fixed ones included, so that a
    change to any of them makes a new point."""
    identity = _canonical({"fn": fn, "settings": _settings(point, fixed or {})})
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    words = ",".join(f"{k}={v}" for k, v in sorted(point.items()))
    slug = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", words)[:SLUG_CHARS]
    return Path(out) / (f"{slug}-{digest}" if slug else digest)


def load_function(path: str) -> RunFunction:
    """The function named ``"package.module:function"``, or a one-line ``GenlabError``."""
    module, _, name = path.partition(":")
    if not module or not name.isidentifier():
        raise GenlabError(f"a sweep's function is named 'package.module:function', got '{path}'")
    try:
        fn = getattr(importlib.import_module(module), name, None)
    except ImportError as e:
        raise GenlabError(f"cannot import the sweep's function '{path}': {e}") from e
    if not callable(fn):
        raise GenlabError(f"the sweep's function '{path}' does not exist: {module} has no {name}")
    return fn


def _write_json(path: Path, obj: Any) -> None:
    """JSON in the order it was built (settings as given, metrics as returned), atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def run_point(run_dir: str | os.PathLike) -> str | None:
    """Run the point stored in ``run_dir`` in this process. On success its metrics go to
    ``result.json``; on failure ``error.json`` gets the error in one line (returned) and the
    traceback."""
    run_dir = Path(run_dir)
    spec = read_json(run_dir / POINT_FILE, what="sweep point")
    settings = {**spec["fixed"], **spec["point"]}
    if int(os.environ.get("RANK", "0")) != 0:  # a torchrun point: every rank trains, rank 0 writes
        load_function(spec["fn"])(settings, run_dir)
        return None
    try:
        metrics = load_function(spec["fn"])(settings, run_dir)
        if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float | str) for k, v in metrics.items()
        ):
            raise GenlabError(f"returned {metrics!r:.80}, not a dict of numbers and strings")
        clash = sorted(set(metrics) & set(spec["point"]))
        if clash:
            raise GenlabError(f"returned metric(s) named like settings: {', '.join(clash)}")
    except Exception as e:  # any failure is the point's own; the sweep goes on
        error = _one_line(e)
        atomic_write_json(
            run_dir / ERROR_FILE, {"error": error, "traceback": traceback.format_exc()}
        )
        return error
    _write_json(run_dir / RESULT_FILE, metrics)
    return None


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use, not the machine's
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _in_processes(
    todo: list[Path], parallel: int, threads: int, nproc: int = 1
) -> Iterator[tuple[Path, str | None, float]]:
    """Each point in a fresh ``python -m genlab.core.sweep RUN_DIR``, ``parallel`` at a time;
    yields each as it finishes. With ``nproc`` > 1 a point is a ``torchrun --standalone
    --nproc_per_node NPROC`` job instead (data-parallel training, one process per GPU; rank 0
    writes the result). The child sees this process's import path, so any function this
    process can import works; a child that dies without an error file (killed, crashed) is
    recorded as failed. Children still running when the sweep stops are killed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": str(threads)}
    launch = [sys.executable, "-m"]
    if nproc > 1:
        launch += ["torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"]
    waiting = list(todo)
    running: dict[subprocess.Popen[bytes], tuple[Path, float]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                run_dir = waiting.pop(0)
                with open(run_dir / LOG_FILE, "wb") as log:
                    child = subprocess.Popen(
                        [*launch, "genlab.core.sweep", str(run_dir)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                running[child] = (run_dir, time.perf_counter())
            time.sleep(0.05)
            for child in [c for c in running if c.poll() is not None]:
                run_dir, start = running.pop(child)
                error = None
                if child.returncode != 0:
                    if not (run_dir / ERROR_FILE).is_file():
                        message = f"its process exited with code {child.returncode}"
                        atomic_write_json(run_dir / ERROR_FILE, {"error": message})
                    error = read_json(run_dir / ERROR_FILE)["error"]
                    error += f" (output in {run_dir / LOG_FILE})"
                yield run_dir, error, time.perf_counter() - start
    finally:
        for child in running:
            child.kill()
            child.wait()


def _in_this_process(todo: list[Path]) -> Iterator[tuple[Path, str | None, float]]:
    for run_dir in todo:
        start = time.perf_counter()
        error = run_point(run_dir)
        yield run_dir, error, time.perf_counter() - start


def _on_ray(
    todo: list[Path], address: str | None, threads: int
) -> Iterator[tuple[Path, str | None, float]]:
    """Each point as a Ray task of ``threads`` CPUs, on the cluster at ``address`` (``None``:
    a Ray instance on this machine, started if none runs); yields each as it finishes. The
    run folders must be visible at the same path on every node (a shared file system): a task
    reads its point and writes its result there, as a local process does."""
    try:
        import ray
    except ImportError:
        raise GenlabError("--launcher ray needs Ray: pip install 'genlab[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address)
    # the worker imports what this process can (its path) and uses the threads it was given
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(sys.path)}
    task = ray.remote(run_point).options(num_cpus=threads, runtime_env={"env_vars": env})
    pending = {task.remote(str(run_dir)): (run_dir, time.perf_counter()) for run_dir in todo}
    try:
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            run_dir, start = pending.pop(ready)
            try:
                error = ray.get(ready)
            except ray.exceptions.RayError as e:  # the worker died: no error file was written
                error = _one_line(e)
                atomic_write_json(run_dir / ERROR_FILE, {"error": error})
            yield run_dir, error, time.perf_counter() - start
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def run_sweep(
    fn: str,
    points: Sequence[Point],
    out: str | os.PathLike,
    fixed: Point | None = None,
    parallel: int = 1,
    threads: int | None = None,
    launcher: str = "local",
    address: str | None = None,
    nproc_per_point: int = 1,
) -> list[dict[str, Any]]:
    """Run ``fn`` at every point not finished yet and return one row per point, in the order
    given: its settings, then its metrics. The rows are also written as ``OUT/results.json``
    and ``OUT/results.md``. ``fixed`` settings are shared by every point: they reach ``fn`` and
    the folder's hash, not its name or the table.

    ``parallel=1`` runs the points in this process, one after the other (so a debugger works
    as usual); ``parallel=N`` runs N at a time, each in a fresh process with ``threads`` threads
    (``OMP_NUM_THREADS``, which torch follows; default: this process's cores shared out) and
    its output in ``RUN_DIR/log.txt``.
    CPU results can depend on the thread count in the last bits: give ``threads`` to compare.
    ``launcher="ray"`` runs every point as a Ray task instead (``address``: the cluster; none:
    this machine), ``threads`` CPUs each (default 1), as many at once as the cluster fits.
    ``nproc_per_point=N`` makes each local point a ``torchrun`` job of N processes (one per
    GPU: ``fn`` must train data-parallel under torchrun, as genlab's trainer does).
    A failing point does not stop the others; at the end a ``GenlabError`` names how many
    failed, the first error and where the error files are."""
    if parallel < 1:
        raise GenlabError(f"a sweep runs at least 1 point at a time, got parallel={parallel}")
    if launcher not in LAUNCHERS:
        raise GenlabError(f"unknown launcher {launcher!r}; choose from: {', '.join(LAUNCHERS)}")
    if nproc_per_point < 1 or (nproc_per_point > 1 and launcher != "local"):
        raise GenlabError(
            f"nproc_per_point={nproc_per_point}: torchrun points need at least 1 process and "
            "the local launcher (on Ray, give each point its GPUs' node instead)"
        )
    load_function(fn)  # a wrong name fails now, once, before any folder is made
    fixed = dict(fixed or {})
    dirs: list[Path] = []
    for point in points:
        run_dir = point_dir(out, fn, point, fixed)
        if run_dir in dirs:
            raise GenlabError(f"the sweep lists the point {point} twice")
        _write_json(run_dir / POINT_FILE, {"fn": fn, "fixed": fixed, "point": point})
        dirs.append(run_dir)
    todo = [d for d in dirs if not (d / RESULT_FILE).is_file()]
    for run_dir in todo:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    where = "on Ray" if launcher == "ray" else f"{parallel} at a time"
    print(
        f"sweep {out}: {len(dirs)} points, {len(dirs) - len(todo)} already done, "
        f"{len(todo)} to run ({where})",
        flush=True,
    )
    if launcher == "ray":
        finished = _on_ray(todo, address, threads or 1)
    elif parallel == 1 and nproc_per_point == 1:
        finished = _in_this_process(todo)
    else:
        share = threads or max(1, _cores() // (parallel * nproc_per_point))
        finished = _in_processes(todo, parallel, share, nproc_per_point)
    errors: dict[Path, str] = {}
    for count, (run_dir, error, seconds) in enumerate(finished, 1):
        if error:
            errors[run_dir] = error
            outcome = f"FAILED {error}"
        else:
            outcome = ", ".join(
                f"{k} {_cell(v)}" for k, v in read_json(run_dir / RESULT_FILE).items()
            )
        print(f"[{count}/{len(todo)}] {run_dir.name} ({seconds:.1f} s): {outcome}", flush=True)
    rows = [_row(d) for d in dirs if d not in errors]
    settings = dict.fromkeys(k for p in points for k in p)
    metrics = dict.fromkeys(k for row in rows for k in row if k not in settings)
    write_table(out, rows, [*settings, *metrics])
    if errors:
        first = next(iter(errors.values()))
        where = ", ".join(str(d) for d in list(errors)[:3]) + (", ..." if len(errors) > 3 else "")
        raise GenlabError(
            f"{len(errors)} of {len(dirs)} sweep points failed (first: {first}); see error.json "
            f"in {where}; run the sweep again to retry them"
        )
    return rows


def _row(run_dir: Path) -> dict[str, Any]:
    point = read_json(run_dir / POINT_FILE, what="sweep point")["point"]
    return {**point, **read_json(run_dir / RESULT_FILE, what="sweep result")}


def collect(out: str | os.PathLike) -> list[dict[str, Any]]:
    """One row (settings, then metrics) per finished point under ``out``, in folder-name order:
    what an analysis reads back without running anything. Fixed settings stay in each
    folder's ``point.json``."""
    return [_row(path.parent) for path in sorted(Path(out).glob(f"*/{RESULT_FILE}"))]


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats to 4 significant digits (whole numbers from 1000 up)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_table(
    out: str | os.PathLike, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """``OUT/results.json`` (the rows) and ``OUT/results.md`` (one column per name in
    ``columns``, by default every key in first-seen order; a missing value is left blank)."""
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    _write_json(Path(out) / TABLE_JSON, list(rows))
    table = markdown_table(columns, [[row.get(c, "") for c in columns] for row in rows])
    atomic_write_bytes(Path(out) / TABLE_MD, (table + "\n").encode())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m genlab.core.sweep RUN_DIR  (a folder holding point.json)")
    sys.exit(0 if run_point(sys.argv[1]) is None else 1)
