import json

import pytest
from matplotlib.image import imread

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.core.plot import plot_run


def _write_run(run, steps=40):
    run.mkdir()
    lines = []
    for step in range(5, steps + 1, 5):
        lines.append(
            {
                "step": step,
                "loss": 3 / step**0.5,
                "lr": 1e-3,
                "grad_norm": 1.0 / step,
                "tokens_per_s": 1000.0 + step,
                "samples_per_s": 10.0,
            }
        )
        if step % 10 == 0:
            lines.append({"step": step, "eval_loss": 3.2 / step**0.5})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_plots_every_curve_as_png(tmp_path):
    _write_run(tmp_path / "run")
    paths = plot_run(tmp_path / "run")
    assert [p.name for p in paths] == ["loss.png", "lr.png", "throughput.png", "grad_norm.png"]
    for path in paths:
        assert path.parent == tmp_path / "run" / "plots"
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 600  # 7x4 in at 120 dpi
        assert image[..., :3].std() > 0.01  # something was drawn


def test_cli_writes_to_out_and_reports_bad_runs(tmp_path, capsys):
    _write_run(tmp_path / "run")
    main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "pngs")])
    out = capsys.readouterr().out.split()
    assert out == [
        str(tmp_path / "pngs" / n)
        for n in ("loss.png", "lr.png", "throughput.png", "grad_norm.png")
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run folder not found" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(GenlabError, match="no records yet"):
        plot_run(tmp_path / "empty")
    (tmp_path / "bare").mkdir()
    with pytest.raises(GenlabError, match="no metrics found"):
        plot_run(tmp_path / "bare")
