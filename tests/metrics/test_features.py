"""The feature network, FID with its features, and caption adherence."""

from __future__ import annotations

import pytest
import torch

from genlab.cli import main
from genlab.core.checkpoint import save_model_folder
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.data.images import ShapesConfig, ShapesDataset, export_images, from_uint8
from genlab.metrics.adherence import caption_adherence, caption_attributes
from genlab.metrics.features import (
    ACCURACY_FILE,
    KIND,
    FeatureNet,
    FeatureNetConfig,
    data_attributes,
    feature_fid,
    labelled_images,
    load_feature_net,
    train_feature_net,
)

pytestmark = pytest.mark.usefixtures("one_thread")


SHAPES = data_attributes("shapes")


def test_caption_attributes():
    assert caption_attributes("a large red circle on the left", SHAPES) == {
        "kind": "circle",
        "color": "red",
        "size": "large",
        "position": "left",
    }
    assert caption_attributes("A red circle.", SHAPES) == {"kind": "circle", "color": "red"}
    assert caption_attributes("a small red star above a large blue square", SHAPES) is None
    assert caption_attributes("a cat", SHAPES) == {}
    assert caption_attributes("a handwritten seven", data_attributes("digits")) == {
        "digit": "seven"
    }


def test_labels_follow_the_scenes():
    data = labelled_images("shapes", 32, n=20, seed=3)
    assert data.pixels.shape == (20, 3, 32, 32) and data.labels.shape == (20, 4)
    for caption, row in zip(data.captions, data.labels, strict=True):
        named = caption_attributes(caption, data.attributes)
        assert named == {
            a: data.attributes[a][int(v)] for a, v in zip(data.attributes, row, strict=True)
        }


def test_network_shapes_resizing_and_grey_input():
    torch.manual_seed(0)
    net = FeatureNet(FeatureNetConfig(width=8, feature_dim=12)).eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    assert net.features(x).shape == (5, 12)
    logits = net(x)
    assert {k: v.shape[1] for k, v in logits.items()} == {
        "kind": 6,
        "color": 7,
        "size": 2,
        "position": 5,
    }
    assert net.extract(torch.rand(3, 3, 64, 64)).shape == (3, 12)  # resized to 32
    assert net.extract(torch.rand(3, 1, 32, 32)).shape == (3, 12)  # grey read as RGB
    read = net.read(x, batch_size=2)
    for name, value in read.items():
        assert torch.equal(value, logits[name].argmax(-1))
    with pytest.raises(GenlabError, match="multiple of 8"):
        FeatureNetConfig(image_size=20)


def _untrained_net_folder(tmp_path):
    torch.manual_seed(0)
    config = FeatureNetConfig(width=8, feature_dim=8)
    folder = tmp_path / "net"
    save_model_folder(folder, FeatureNet(config), KIND, config.to_dict())
    return folder


def test_fid_of_a_folder_against_itself_is_zero(tmp_path, capsys):
    net = _untrained_net_folder(tmp_path)
    shapes = ShapesDataset(48, 32, seed=1, config=ShapesConfig(two_shape_fraction=0.0))
    export_images(shapes, tmp_path / "real")
    main(
        [
            "metrics",
            "fid",
            str(tmp_path / "real"),
            "--ref",
            str(tmp_path / "real"),
            "--features",
            str(net),
            "--n",
            "48",
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "fid.json"),
        ]
    )
    out = capsys.readouterr().out
    assert out.startswith("FID with genlab shapes features: ")
    value = float(out.split(": ")[1].split()[0])
    assert abs(value) < 1e-3
    # a different set is far away, even under untrained features
    loaded = load_feature_net(net)
    images = from_uint8(shapes.pixels)
    assert feature_fid(loaded, torch.rand_like(images) * 2 - 1, images) > 100 * abs(value) + 0.05


def test_fid_refuses_a_mismatched_reference(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "metrics",
                "fid",
                str(tmp_path),
                "--ref",
                "shapes",
                "--features",
                str(tmp_path / "missing"),
            ]
        )
    assert e.value.code == 2
    assert "train-features" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_reader_scores_real_images_high_and_noise_low(tmp_path):
    train = TrainConfig(
        max_steps=500,
        batch_size=64,
        lr=2e-3,
        warmup_steps=20,
        weight_decay=0.01,
        eval_every=500,
        eval_batches=1,
        checkpoint_every=500,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    acc = train_feature_net(tmp_path / "net", "shapes", 32, n_images=4000, train=train, width=16)
    assert (tmp_path / "net" / ACCURACY_FILE).is_file()
    net = load_feature_net(tmp_path / "net")
    real = labelled_images("shapes", 32, n=300, seed=7)
    images = from_uint8(real.pixels)
    result = caption_adherence(net, images, real.captions)
    assert result.adherence > 0.9, (result, acc)
    assert result.scored == 300 and result.unscored == 0
    noise = caption_adherence(net, torch.rand_like(images) * 2 - 1, real.captions)
    assert noise.adherence < 0.1
    # the reader checks each caption against its own image: shuffled captions fail
    shuffled = caption_adherence(net, images, real.captions[1:] + real.captions[:1])
    assert shuffled.adherence < 0.1
