import json

import pytest

from genlab.core.errors import GenlabError
from genlab.core.logging import MetricsLogger, ProgressBar, read_metrics
from references import require


def test_writes_records_and_drops_those_past_a_resumed_step(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (10, 20, 30):
        logger.log(step, {"loss": 1.0 / step, "lr": 0.1})
    logger.log(30, {"eval_loss": float("nan")})
    logger.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [10, 20, 30, 30]
    assert records[0] == {"step": 10, "loss": 0.1, "lr": 0.1}
    assert records[-1]["eval_loss"] is None  # JSON has no NaN
    # a killed run leaves a half-written line: skipped, then dropped on resume
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 40, "lo')
    assert len(read_metrics(tmp_path)) == 4
    logger = MetricsLogger(tmp_path, tensorboard=False, resume_step=20)
    logger.log(25, {"loss": 0.5})
    logger.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 25]


def test_disabled_logger_writes_nothing(tmp_path):
    logger = MetricsLogger(tmp_path / "run", enabled=False)
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert not (tmp_path / "run").exists()


def test_corrupt_or_missing_metrics_say_so(tmp_path):
    with pytest.raises(GenlabError, match="no metrics found"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(GenlabError, match="line 2 is not valid JSON"):
        read_metrics(tmp_path)


def test_tensorboard_receives_the_same_scalars(tmp_path):
    require("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path)
    logger.log(5, {"loss": 2.0})
    logger.log(10, {"loss": 1.5, "eval_loss": 1.7})
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(5, 2.0), (10, 1.5)]
    assert [(e.step, e.value) for e in events.Scalars("eval_loss")] == [(10, pytest.approx(1.7))]


def test_progress_bar_shows_loss_and_rate(capsys):
    bar = ProgressBar(total=4, initial=2)
    bar.update(1, loss=1.25, **{"tok/s": "1000"})
    bar.close()
    err = capsys.readouterr().err
    assert "3/4" in err and "loss=1.25" in err and "tok/s=1000" in err
    silent = ProgressBar(total=4, enabled=False)
    silent.update(1, loss=1.0)
    silent.close()
    assert capsys.readouterr().err == ""


def test_records_are_single_json_lines(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log(1, {"loss": 1})
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 1, "loss": 1.0}]
