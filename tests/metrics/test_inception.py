"""The FID Inception-v3 against torch-fidelity's, FID and KID with its features, and the CLI.

The weights are made here: torch-fidelity's own module with a seeded random initialisation,
its state dict saved as the standard file is (``torch.save`` of the tensors), then read by both
implementations. Random convolutions scaled for ReLU (He et al.) and random batch-norm
statistics keep the 2048-d features of order one, so a wrong layer shows. Each Inception pass
is ~0.4 s per image on one CPU thread (everything is resized to 299x299), so the module reads
few, small images and computes the reference's features once.

torch-fidelity is read by file path from ``$VENV/torch-fidelity`` (``scripts/bootstrap.sh
test`` installs it there without dependencies: its package ``__init__`` imports torchvision),
so only torch is imported.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from genlab.cli import app
from genlab.cli import metrics as cli_metrics
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.data.images import ShapesConfig, ShapesDataset, export_images, from_uint8
from genlab.metrics import inception_features as inception_features_module
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.metrics.inception_features import inception_features, inception_fid
from genlab.metrics.kid import kid
from genlab.nets.inception import (
    WEIGHTS_FILE,
    FIDInceptionV3,
    load_fid_inception,
    tf1_resize_bilinear,
)
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion
from references import require, unavailable

_compute_fid = require("torchmetrics.image.fid")._compute_fid
KernelInceptionDistance = require("torchmetrics.image.kid").KernelInceptionDistance

TORCH_FIDELITY = Path(sys.prefix) / "torch-fidelity" / "torch_fidelity"
# A Fréchet distance between 2048-d Gaussians takes about a minute on one CPU thread (scipy's
# square root of a 2048x2048 matrix): FID is compared on the first DIMS features, and the full
# pipelines are followed up to the statistics they give the distance (which test_fid.py checks
# against torchmetrics).
DIMS = 64
INSTALL = "scripts/bootstrap.sh test (torch-fidelity==0.4.0 --no-deps into $VENV/torch-fidelity)"


def torch_fidelity_inception() -> types.ModuleType:
    """torch-fidelity's ``feature_extractor_inceptionv3`` module, loaded by file path under a
    stand-in package (its ``__init__`` is never run) that is removed again afterwards."""
    path = TORCH_FIDELITY / "feature_extractor_inceptionv3.py"
    if not path.is_file():
        unavailable("reference library torch-fidelity", INSTALL, f"no {path}")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "torch_fidelity"}
    package = types.ModuleType("torch_fidelity")
    package.__path__ = [str(TORCH_FIDELITY)]
    sys.modules["torch_fidelity"] = package
    try:
        name = "torch_fidelity.feature_extractor_inceptionv3"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == "torch_fidelity"]:
            del sys.modules[k]
        sys.modules.update(saved)


def _record_distance(monkeypatch, module) -> list[tuple]:
    """Replace ``module``'s Fréchet distance by one that records its arguments and says -1."""
    seen: list[tuple] = []
    monkeypatch.setattr(module, "frechet_distance", lambda *args: seen.append(args) or -1.0)
    return seen


def _assert_statistics_of(seen: list[tuple], features: list[torch.Tensor]) -> None:
    """One distance was asked for, between the statistics of these two feature sets."""
    assert len(seen) == 1
    expected = [*feature_statistics(features[0]), *feature_statistics(features[1])]
    for got, want in zip(seen[0], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(threads):
    return torch_fidelity_inception()


@pytest.fixture(scope="module")
def weights(reference, tmp_path_factory) -> Path:
    """torch-fidelity's network with its own seeded random init, saved as the standard file."""
    fresh: dict = {}
    reference.load_state_dict_from_url = lambda *a, **k: fresh  # never download

    class Fresh(reference.FeatureExtractorInceptionV3):
        def load_state_dict(self, state, *args, **kwargs):
            if state is fresh:
                return None  # keep the initialisation
            return super().load_state_dict(state, *args, **kwargs)

    torch.manual_seed(0)
    net = Fresh("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5
    torch.nn.init.normal_(net.fc.weight, std=0.02, generator=g)
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scenes() -> tuple[ShapesDataset, ShapesDataset]:
    """Two sets of 2 one-shape scenes, 32x32."""
    one = ShapesConfig(two_shape_fraction=0.0)
    return ShapesDataset(2, 32, 5, one), ShapesDataset(2, 32, 6, one)


@pytest.fixture(scope="module")
def images(scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Their uint8 pixels (2, 3, 32, 32)."""
    return scenes[0].pixels, scenes[1].pixels


@pytest.fixture(scope="module")
def features(reference, weights, images):
    """The reference's features of both sets (uint8 input) and genlab's (the second set given
    as [-1, 1] floats, which are quantised back to the same pixels)."""
    ref = reference.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
    )
    with torch.no_grad():
        theirs = [ref(x)[0].double() for x in images]
    net = load_fid_inception(weights)
    ours = [inception_features(net, images[0]), inception_features(net, from_uint8(images[1]))]
    return [o.double() for o in ours], theirs


def test_features_match_torch_fidelity(features):
    ours, theirs = features
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == (2, 2048)
        assert b.std() > 0.05  # features of order one: a wrong layer would show
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert (ours[0] - ours[1]).abs().max() > 0.01  # different images, different features


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # 2 images: singular
def test_fid_and_kid_match_the_reference_pipeline(features, weights, images, monkeypatch):
    ours, theirs = features
    part = [feature_statistics(t[:, :DIMS]) for t in theirs]
    expected = _compute_fid(*(torch.from_numpy(a) for a in (*part[0], *part[1]))).item()
    got = frechet_distance(
        *feature_statistics(ours[0][:, :DIMS]), *feature_statistics(ours[1][:, :DIMS])
    )
    assert expected > 0 and got == pytest.approx(expected, rel=1e-4)
    # the API from the weights file, uint8 and float images: the reference's statistics go to the
    # distance, in full
    seen = _record_distance(monkeypatch, inception_features_module)
    assert inception_fid(images[0], from_uint8(images[1]), weights, batch_size=1) == -1.0
    _assert_statistics_of(seen, theirs)
    score = kid(ours[0], ours[1], subsets=5, seed=3)
    assert score.subset_size == 2 and score.subsets == 5
    assert score.mean == pytest.approx(kid(theirs[0], theirs[1], subsets=5, seed=3).mean, rel=1e-6)


def test_a_safetensors_copy_without_counters_loads_the_same(weights, tmp_path):
    # with or without batch norm's num_batches_tracked, as a .pth or a .safetensors file
    state = torch.load(weights, weights_only=True)
    plain = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(plain) < len(state)
    save_file(plain, tmp_path / "inception.safetensors")
    net = load_fid_inception(tmp_path / "inception.safetensors")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in plain.items())


def test_tf1_resize_reads_source_pixel_i_times_in_over_out():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    out = tf1_resize_bilinear(x, 8)  # source position i / 2: 0, 0.5, 1, ..., 3, 3.5 -> clamped
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.0]))
    same = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(tf1_resize_bilinear(same, 5), same)


def test_bad_weight_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")
    cases = {
        tmp_path / "missing.pth": "not found",
        tmp_path / "junk.pth": "not a plain file of tensors",
        tmp_path / "pickled.pth": "not a plain file of tensors",
        tmp_path / "other.pth": "lacks weight '.*' \\(472 missing in all\\)",
    }
    for path, message in cases.items():
        with pytest.raises(GenlabError, match=message) as e:
            load_fid_inception(path)
        assert "\n" not in str(e.value)
    with pytest.raises(GenlabError, match="RGB images"):
        FIDInceptionV3()(torch.zeros(1, 1, 8, 8))


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_cli_reports_inception_fid_and_kid(features, weights, scenes, tmp_path, monkeypatch):
    _, theirs = features
    for name, data in zip(("samples", "real"), scenes, strict=True):
        export_images(data, tmp_path / name)  # PNGs read back as the same pixels
    out = tmp_path / "fid.json"
    args = ["metrics", "fid", str(tmp_path / "samples"), "--ref", str(tmp_path / "real")]
    args += ["--n", "2", "--device", "cpu", "--features", "inception", "--json", str(out)]
    seen = _record_distance(monkeypatch, cli_metrics)
    result = CliRunner().invoke(app, [*args, "--inception-weights", str(weights)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("FID with Inception-v3 features: ")
    assert lines[1].startswith("KID with Inception-v3 features: ")
    figures = json.loads(out.read_text())
    assert figures["fid"] == -1.0
    _assert_statistics_of(seen, theirs)
    # KID against torchmetrics on the reference's features, with the same subset draws
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=100, subset_size=2)
    metric.update(theirs[0], real=True)
    metric.update(theirs[1], real=False)
    torch.manual_seed(0)
    mean, std = metric.compute()
    assert figures["kid"] == pytest.approx(mean.item(), rel=1e-4)
    assert figures["kid_std"] == pytest.approx(std.item(), rel=1e-4)
    assert figures["metric"] == "FID with Inception-v3 features" and figures["n"] == 2
    assert figures["inception_weights_sha256"] and np.isfinite(figures["kid"])


def test_cli_names_the_weights_flag_when_it_is_missing_or_wrong(tmp_path, scenes):
    export_images(scenes[0], tmp_path / "samples")
    base = ["metrics", "fid", str(tmp_path / "samples"), "--ref", "shapes", "--device", "cpu"]
    base += ["--features", "inception"]
    (tmp_path / "junk.pth").write_bytes(b"junk")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    for extra in ([], ["--inception-weights", str(tmp_path / "junk.pth")]) + (
        ["--inception-weights", str(tmp_path / "other.pth")],
        ["--inception-weights", str(tmp_path / "missing.pth")],
    ):
        result = CliRunner().invoke(app, [*base, *extra])
        assert isinstance(result.exception, GenlabError), result.output
        assert "--inception-weights" in str(result.exception)
        assert "\n" not in str(result.exception)


def test_cli_measures_a_runs_samples_with_inception_features(weights, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train = TrainConfig(
        max_steps=1, batch_size=4, device="cpu", progress=False, tensorboard=False, plots=False
    )
    data = DataSpec(data="shapes", size=16, n_images=8)
    config = ImageTrainConfig(out=str(run), data=data, preset="tiny", grid_sampler_steps=1)
    train_diffusion(replace(config, unet_overrides={"base_channels": 8}, text_dim=8, train=train))
    out = tmp_path / "fid.json"
    args = ["metrics", "fid", str(run), "--n", "2", "--steps", "1", "--device", "cpu"]
    args += ["--features", "inception", "--inception-weights", str(weights), "--json", str(out)]
    seen = _record_distance(monkeypatch, cli_metrics)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("FID with Inception-v3 features: ") and len(seen) == 1
    assert "sampling: " in result.output and "caption adherence" not in result.output
    figures = json.loads(out.read_text())
    assert figures["n"] == figures["n_reference"] == 2 and figures["seconds_per_image"] > 0
    assert figures["fid"] == -1.0 and figures["kid_subset_size"] == 2
