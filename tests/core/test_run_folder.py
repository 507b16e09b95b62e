"""Run folders written piece by piece, as a GAN or PPO loop would, and every way loading fails."""

import json
import os
import shutil

import pytest
import torch
from torch import nn

from genlab.core.checkpoint import load_model_weights, read_model_config
from genlab.core.errors import GenlabError
from genlab.core.optim import build_adamw
from genlab.core.optimizer_state import optimizer_tensors
from genlab.core.run import RunFolder, latest_checkpoint, load_checkpoint, verify_checkpoint


def _gan(width: int = 4) -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict(
        {"generator": nn.Linear(2, width), "discriminator": nn.Sequential(nn.Linear(width, 1))}
    )


def _optimizers(gan: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
    return {
        "g": build_adamw(gan["generator"], lr=1e-2),
        "d": build_adamw(gan["discriminator"], lr=2e-2, betas=(0.5, 0.9)),
    }


def _train(gan: nn.ModuleDict, opts, steps: int) -> None:
    for _ in range(steps):
        fake = gan["generator"](torch.randn(8, 2))
        d_loss = gan["discriminator"](fake.detach()).mean()
        opts["d"].zero_grad()
        d_loss.backward()
        opts["d"].step()
        g_loss = -gan["discriminator"](fake).mean()
        opts["g"].zero_grad()
        g_loss.backward()
        opts["g"].step()


def _saved(tmp_path, steps=(1,), keep_last=2):
    gan = _gan()
    opts = _optimizers(gan)
    folder = RunFolder(tmp_path / "run", "gan", config={"width": 4}, keep_last=keep_last)
    folder.write_config()
    for step in steps:
        _train(gan, opts, 1)
        folder.save(step, gan, opts, {"note": "hi"})
    return folder, gan, opts


def test_two_modules_two_optimizers_round_trip_and_continue_identically(tmp_path):
    folder, gan, opts = _saved(tmp_path, steps=(1, 2))
    gan2 = _gan()
    opts2 = _optimizers(gan2)
    state = folder.load(gan2, opts2)
    assert state["step"] == 2 and state["note"] == "hi" and state["world_size"] == 1
    for k, v in gan.state_dict().items():
        assert torch.equal(v, gan2.state_dict()[k])
    assert tuple(opts2["d"].param_groups[0]["betas"]) == (0.5, 0.9)
    torch.manual_seed(1)
    _train(gan, opts, 2)
    torch.manual_seed(1)
    _train(gan2, opts2, 2)
    for k, v in gan.state_dict().items():
        assert torch.equal(v, gan2.state_dict()[k]), k


def test_optimizer_state_is_safetensors_named_by_parameter(tmp_path):
    folder, gan, opts = _saved(tmp_path)
    tensors, meta = optimizer_tensors(gan, opts)
    assert "g/generator.weight/exp_avg" in tensors
    assert "d/discriminator.0.bias/exp_avg_sq" in tensors
    groups = json.loads(meta)["d"]["param_groups"]
    assert [g["params"] for g in groups] == [["discriminator.0.weight"], ["discriminator.0.bias"]]
    # the file is plain safetensors: no pickle anywhere in the run folder
    for path in (tmp_path / "run").rglob("*"):
        assert path.suffix in {".json", ".safetensors", ""}, path


def test_keeps_last_k_and_mirrors_the_newest_at_the_top(tmp_path):
    folder, gan, _ = _saved(tmp_path, steps=(1, 2, 3, 4, 5), keep_last=2)
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000004", "step_000005"]
    assert json.loads((run / "state.json").read_text())["step"] == 5
    newest = run / "checkpoints" / "step_000005"
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        assert (run / name).read_bytes() == (newest / name).read_bytes()
    # the top level and each step folder are model folders the generic readers accept
    assert read_model_config(run, "gan")["config"] == {"width": 4}
    fresh = _gan(4)
    load_model_weights(newest, fresh)
    assert torch.equal(fresh["generator"].weight, gan["generator"].weight)


def test_resume_picks_the_newest_complete_checkpoint(tmp_path, caplog):
    _saved(tmp_path, steps=(1, 2, 3), keep_last=3)
    ckpts = tmp_path / "run" / "checkpoints"
    # a kill while writing leaves only a hidden temporary folder: ignored
    (ckpts / ".step_000004.tmp").mkdir()
    assert latest_checkpoint(tmp_path / "run").name == "step_000003"
    # files of two steps in one folder are refused, and resume falls back to the previous one
    shutil.copy(ckpts / "step_000002" / "model.safetensors", ckpts / "step_000003")
    with pytest.raises(GenlabError, match="mixed checkpoint.*step 2.*step 3"):
        verify_checkpoint(ckpts / "step_000003")
    assert latest_checkpoint(tmp_path / "run").name == "step_000002"
    assert caplog.messages[-1].startswith(f"skipping checkpoint {ckpts / 'step_000003'}: mixed")
    # a folder without state.json (state.json is written last) is incomplete
    (ckpts / "step_000002" / "state.json").unlink()
    assert latest_checkpoint(tmp_path / "run").name == "step_000001"
    assert "step_000002 has no state.json" in caplog.messages[-1]


def _one_line_error(fn, match: str) -> str:
    with pytest.raises(GenlabError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_not_a_run_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _one_line_error(lambda: load_checkpoint(tmp_path, _gan()), "not a genlab run folder")
    _one_line_error(lambda: load_checkpoint(tmp_path / "nope", _gan()), "not found")
    (tmp_path / "config.json").write_text(json.dumps({"kind": "gan", "config": {}}))
    _one_line_error(lambda: load_checkpoint(tmp_path, _gan()), "holds no checkpoint yet")


def test_truncated_checkpoint(tmp_path):
    _saved(tmp_path)
    path = tmp_path / "run" / "checkpoints" / "step_000001" / "model.safetensors"
    data = path.read_bytes()
    os.unlink(path)  # the top-level file is a hard link to the same data: break it first
    path.write_bytes(data[: len(data) // 2])
    _one_line_error(lambda: load_checkpoint(tmp_path / "run", _gan()), "truncated")
    state = tmp_path / "run" / "checkpoints" / "step_000001" / "state.json"
    state.write_text(state.read_text()[:50])
    _one_line_error(lambda: verify_checkpoint(state.parent), "not valid JSON")


def test_mismatched_shapes_wrong_kind_and_missing_optimizer(tmp_path):
    _saved(tmp_path)
    run = tmp_path / "run"
    msg = _one_line_error(lambda: load_checkpoint(run, _gan(width=6)), "has shape")
    assert "'discriminator.0.weight' has shape (1, 4) but the config needs (1, 6)" in msg
    _one_line_error(lambda: load_checkpoint(run, _gan(), kind="gpt"), "'gan' model")
    gan = _gan()
    _one_line_error(
        lambda: load_checkpoint(run, gan, {"critic": build_adamw(gan, lr=1.0)}),
        "no state for optimizer 'critic'",
    )
    other = nn.ModuleDict({"generator": nn.Linear(2, 4), "critic": nn.Linear(4, 1)})
    _one_line_error(lambda: load_checkpoint(run, other), "lacks weight 'critic.bias'")


def test_saving_an_earlier_step_drops_the_later_ones(tmp_path):
    folder, gan, opts = _saved(tmp_path, steps=(1, 2, 3), keep_last=5)
    folder.save(2, gan, opts)  # a resumed run redoing step 2 onwards
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step_000001", "step_000002"]
