"""The sweep runner: grids, stable folder names, finished points skipped, failed ones retried,
parallel processes giving what one process gives, and the results table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.errors import GenlabError
from genlab.core.sweep import collect, grid, point_dir, run_sweep

FN = "sweep_toy:measure"
FIXED = {"seed": 7, "scale": 0.5}


@pytest.fixture(autouse=True)
def _toy_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def calls(out: Path, point: dict) -> int:
    path = point_dir(out, FN, point, FIXED) / "calls.txt"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_grid_is_the_cartesian_product_last_axis_fastest():
    assert grid(a=[1, 2], b=["x", "y"]) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert grid(a=[1], b=[]) == []
    assert grid(a=[1]) + grid(a=[5], b=[0]) == [{"a": 1}, {"a": 5, "b": 0}]


def test_folder_names_are_readable_and_stable(tmp_path):
    name = point_dir(tmp_path, FN, {"x": 1, "run": "runs/a b"}, FIXED).name
    assert name == "run=runs_a_b,x=1-634d926e"  # a new name would orphan every finished run
    assert point_dir(tmp_path, FN, {"run": "runs/a b", "x": 1}, dict(FIXED)).name == name
    others = {
        point_dir(tmp_path, FN, {"x": 1, "run": "runs/a b"}, {**FIXED, "seed": 8}),
        point_dir(tmp_path, "sweep_toy:other", {"x": 1, "run": "runs/a b"}, FIXED),
        point_dir(tmp_path, FN, {"x": 1.0, "run": "runs/a b"}, FIXED),
    }
    assert len(others) == 3 and name not in {p.name for p in others}
    with pytest.raises(GenlabError, match="seed given both fixed and per point"):
        point_dir(tmp_path, FN, {"seed": 1}, FIXED)


def test_finished_points_are_skipped(tmp_path, capsys):
    points = grid(x=[1, 2, 3])
    rows = run_sweep(FN, points, tmp_path, FIXED)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("3 points, 0 already done, 3 to run (1 at a time)")
    assert [line.split()[0] for line in lines[1:]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert [r["x"] for r in rows] == [1, 2, 3] and rows[0]["label"] == "x is 1"
    again = run_sweep(FN, points + [{"x": 4}], tmp_path, FIXED)
    assert "4 points, 3 already done, 1 to run" in capsys.readouterr().out
    assert [calls(tmp_path, p) for p in points + [{"x": 4}]] == [1, 1, 1, 1]
    assert again[:3] == rows
    saved = json.loads((point_dir(tmp_path, FN, {"x": 2}, FIXED) / "point.json").read_text())
    assert saved == {"fn": FN, "fixed": FIXED, "point": {"x": 2}}


def test_a_failed_point_does_not_stop_the_others_and_runs_again(tmp_path):
    points = grid(x=[1, 2, 3])
    bad = point_dir(tmp_path, FN, {"x": 2}, FIXED)
    bad.mkdir(parents=True)
    (bad / "FAIL").touch()
    with pytest.raises(GenlabError) as e:
        run_sweep(FN, points, tmp_path, FIXED)
    message = str(e.value)
    assert "\n" not in message and "1 of 3 sweep points failed" in message
    assert "ValueError: told to fail" in message and str(bad) in message
    error = json.loads((bad / "error.json").read_text())
    assert error["error"] == "ValueError: told to fail" and "Traceback" in error["traceback"]
    assert not (bad / "result.json").exists()
    assert [r["x"] for r in collect(tmp_path)] == [1, 3]  # folder-name order

    (bad / "FAIL").unlink()
    rows = run_sweep(FN, points, tmp_path, FIXED)
    assert [r["x"] for r in rows] == [1, 2, 3]
    assert [calls(tmp_path, p) for p in points] == [1, 2, 1]
    assert not (bad / "error.json").exists()


def test_parallel_processes_give_what_one_process_gives(tmp_path):
    points = grid(x=[1, 2])
    alone = run_sweep(FN, points, tmp_path / "one", FIXED)
    crash = point_dir(tmp_path / "two", FN, {"x": 3}, FIXED)
    crash.mkdir(parents=True)
    (crash / "DIE").touch()  # a process that dies must not take the others with it
    with pytest.raises(GenlabError, match=r"1 of 3 sweep points failed \(first: its process"):
        run_sweep(FN, points + [{"x": 3}], tmp_path / "two", FIXED, parallel=2)
    assert "exited with code 3" in json.loads((crash / "error.json").read_text())["error"]
    assert collect(tmp_path / "two") == alone
    for p in points:
        one, two = (point_dir(tmp_path / d, FN, p, FIXED) / "result.json" for d in ("one", "two"))
        assert one.read_bytes() == two.read_bytes()
        assert (point_dir(tmp_path / "two", FN, p, FIXED) / "log.txt").is_file()


def test_results_table_has_settings_then_metrics(tmp_path):
    points = [{"x": 1}, {"x": 2, "note": "b"}]
    rows = run_sweep(FN, points, tmp_path, FIXED)
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert list(rows[1]) == ["x", "note", "y", "label"]
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert lines[:2] == ["| x | note | y | label |", "|---|---|---|---|"]
    assert lines[2] == f"| 1 |  | {rows[0]['y']:.4g} | x is 1 |"
    assert lines[3] == f"| 2 | b | {rows[1]['y']:.4g} | x is 2 |"


@pytest.mark.parametrize(
    "fn, words",
    [
        ("no_colon", "is named 'package.module:function'"),
        ("no_such_module:fn", "cannot import the sweep's function 'no_such_module:fn'"),
        ("sweep_toy:missing", "does not exist: sweep_toy has no missing"),
    ],
)
def test_a_bad_function_name_is_one_line_before_any_folder(tmp_path, fn, words):
    with pytest.raises(GenlabError, match=words) as e:
        run_sweep(fn, grid(x=[1]), tmp_path / "out", FIXED)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_ray_tasks_give_what_one_process_gives(tmp_path):
    """A local Ray instance (started by the test, two CPUs) runs the points; a failing point
    and a worker that dies are recorded as processes' are."""
    from references import require

    require("ray")
    import ray

    points = grid(x=[1, 2])
    alone = run_sweep(FN, points, tmp_path / "one", FIXED)
    failing = point_dir(tmp_path / "ray", FN, {"x": 3}, FIXED)
    failing.mkdir(parents=True)
    (failing / "FAIL").touch()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(GenlabError, match=r"1 of 3 sweep points failed \(first: ValueError"):
            run_sweep(FN, [*points, {"x": 3}], tmp_path / "ray", FIXED, launcher="ray")
    finally:
        ray.shutdown()
    assert collect(tmp_path / "ray") == alone
    for p in points:
        one, two = (point_dir(tmp_path / d, FN, p, FIXED) / "result.json" for d in ("one", "ray"))
        assert one.read_bytes() == two.read_bytes()
    with pytest.raises(GenlabError, match="unknown launcher 'slurm'"):
        run_sweep(FN, points, tmp_path / "x", FIXED, launcher="slurm")
