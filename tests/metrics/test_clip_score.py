"""CLIP score as torchmetrics defines it, for any encoder pair; parity with torchmetrics'
``CLIPScore`` on a tiny Hugging Face CLIP saved to a local folder (nothing is downloaded)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.registry import save
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8
from genlab.methods.contrastive import CAPTION_TOKENIZER_FILE, KIND
from genlab.metrics.clip_score import (
    HFCLIP,
    CaptionedCLIP,
    clip_score,
    load_clip,
    open_clip,
    pair_scores,
)
from genlab.nets.clip import CLIP, CLIPConfig
from genlab.nets.text_encoder import TextEncoderConfig
from references import require

pytestmark = pytest.mark.usefixtures("one_thread")


class Fixed:
    """Image i embeds as ``images[i]``'s first pixel row; a caption as its entry in ``texts``."""

    def __init__(self, texts: dict[str, list[float]]) -> None:
        self.texts = texts

    def encode_image(self, images: Tensor) -> Tensor:
        return images[:, 0, 0, :]

    def encode_text(self, captions: Sequence[str]) -> Tensor:
        return torch.tensor([self.texts[c] for c in captions])


def embedded(*rows: list[float]) -> Tensor:
    images = torch.zeros(len(rows), 1, 1, len(rows[0]))
    images[:, 0, 0] = torch.tensor(rows)
    return images


def test_identical_orthogonal_and_opposite_embeddings():
    model = Fixed({"x": [1.0, 0.0], "y": [0.0, 2.0], "-x": [-3.0, 0.0]})
    images = embedded([0.5, 0.0], [0.5, 0.0])
    assert clip_score(model, images, ["x", "x"]) == pytest.approx(100.0)
    assert clip_score(model, images, ["y", "y"]) == pytest.approx(0.0, abs=1e-5)
    assert clip_score(model, images, ["-x", "-x"]) == 0.0  # clipped at 0, never negative
    assert pair_scores(model, images, ["-x", "y"]).tolist() == pytest.approx([-100.0, 0.0])
    # torchmetrics clamps the mean, not each pair (Hessel et al. clamp each): 100 and -100 give 0
    assert clip_score(model, images, ["x", "-x"]) == pytest.approx(0.0, abs=1e-4)
    tilted = embedded([1.0, 1.0])
    assert clip_score(model, tilted, ["x"]) == pytest.approx(100 / 2**0.5)


def test_batches_do_not_change_the_score_and_mismatches_are_one_line():
    model = Fixed({"x": [1.0, 0.0], "y": [0.0, 1.0]})
    images = embedded([1.0, 0.2], [0.3, 1.0], [1.0, 1.0])
    captions = ["x", "y", "x"]
    assert clip_score(model, images, captions, batch_size=1) == pytest.approx(
        clip_score(model, images, captions)
    )
    with pytest.raises(GenlabError, match="2 images but 3 captions"):
        clip_score(model, images[:2], captions)
    with pytest.raises(GenlabError, match="no images"):
        clip_score(model, images[:0], [])


def tiny_genlab_clip(folder: Path) -> Path:
    torch.manual_seed(0)
    captions = ["a red circle", "a blue square", "a small red square"]
    tokenizer = CaptionTokenizer.from_captions(captions)
    text = TextEncoderConfig(tokenizer.vocab_size, tokenizer.max_length, 16, 1, 2)
    net = CLIP(CLIPConfig(text, image_size=16, width=8, image_dim=16, embed_dim=8))
    save(folder, net, KIND, net.config, {CAPTION_TOKENIZER_FILE: tokenizer.to_json().encode()})
    return folder


def test_genlab_clip_folder_scores_as_its_cosines(tmp_path):
    model = load_clip(tiny_genlab_clip(tmp_path / "clip"))
    assert isinstance(open_clip(tmp_path / "clip"), CaptionedCLIP)
    pixels = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    captions = ["a red circle", "a blue square", "a small red square"]
    img = model.net.encode_image(from_uint8(pixels))
    ids, mask = model.tokenizer.encode(captions)
    cos = (img * model.net.encode_text(ids, mask)).sum(-1)
    torch.testing.assert_close(pair_scores(model, pixels, captions), 100 * cos)
    # uint8 pixels and [-1, 1] floats are the same images
    assert clip_score(model, pixels, captions) == pytest.approx(
        clip_score(model, from_uint8(pixels), captions)
    )
    with pytest.raises(GenlabError, match="never read the words cat"):
        clip_score(model, pixels[:1], ["a red cat"])
    with pytest.raises(GenlabError, match="train-clip"):
        load_clip(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"kind": "gpt"}))
    with pytest.raises(GenlabError, match="neither a genlab CLIP nor a Hugging Face CLIP"):
        open_clip(tmp_path / "other")


# ---------------------------------------------------------------------------------------------
# Parity with torchmetrics on a tiny transformers.CLIPModel


def tiny_hf_clip(folder: Path) -> Path:
    """A randomly initialised 1-layer CLIP, its image processor and a character-level CLIP BPE
    tokenizer (vocab.json + an empty merges.txt), written with ``save_pretrained``."""
    transformers = require("transformers")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    end, start = vocab["<|endoftext|>"], vocab["<|startoftext|>"]
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 40,
            "bos_token_id": start,
            "eos_token_id": end,
            "pad_token_id": end,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    images = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tensor_features(transformers):
    """``CLIPModel`` whose ``get_*_features`` return the projected embeddings as a tensor:
    transformers < 5 did, and torchmetrics (1.9) divides them by their norm directly, so with
    transformers >= 5 (which returns an output whose ``pooler_output`` they are) its
    ``CLIPScore`` needs this to run at all; the features are the same numbers either way."""

    class TensorFeatures(transformers.CLIPModel):
        def get_image_features(self, *args, **kwargs):
            out = super().get_image_features(*args, **kwargs)
            return out if isinstance(out, Tensor) else out.pooler_output

        def get_text_features(self, *args, **kwargs):
            out = super().get_text_features(*args, **kwargs)
            return out if isinstance(out, Tensor) else out.pooler_output

    return TensorFeatures


def test_parity_with_torchmetrics_clip_score(tmp_path):
    transformers = require("transformers")
    metric_module = require("torchmetrics.multimodal.clip_score")
    functional = require("torchmetrics.functional.multimodal")
    folder = tiny_hf_clip(tmp_path / "hf-clip")
    model_class = tensor_features(transformers)

    def load():  # torchmetrics' API for a model of your own: a callable giving (model, processor)
        return model_class.from_pretrained(folder), transformers.CLIPProcessor.from_pretrained(
            folder
        )

    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    pixels[3:] = torch.randint(0, 256, (2, 3, 1, 1), generator=g, dtype=torch.uint8)  # flat
    captions = [
        "a red circle",
        "a large blue square on the left",
        "star",
        "a small green triangle above a large purple cross",
        "red",
    ]
    metric = metric_module.CLIPScore(model_name_or_path=load)
    metric.update(pixels[:2], captions[:2])
    with pytest.warns(UserWarning, match="longer than max_position_embeddings"):
        metric.update(pixels[2:], captions[2:])  # caption 3 is cut at 40 tokens, by both
    expected = metric.compute().item()
    ours = HFCLIP.from_pretrained(folder)
    assert isinstance(open_clip(folder), HFCLIP)
    assert clip_score(ours, pixels, captions) == pytest.approx(expected, abs=1e-4)
    assert clip_score(ours, pixels, captions, batch_size=2) == pytest.approx(expected, abs=1e-4)
    assert clip_score(ours, from_uint8(pixels), captions) == pytest.approx(expected, abs=1e-4)
    one = functional.clip_score(pixels[1], captions[1], model_name_or_path=load).item()
    assert clip_score(ours, pixels[1:2], captions[1:2]) == pytest.approx(one, abs=1e-4)
    # and the per-pair figures are CLIP's own cosines: HF's logits_per_image / its scale * 100
    processor = transformers.CLIPProcessor.from_pretrained(folder)
    hf = transformers.CLIPModel.from_pretrained(folder).eval()
    inputs = processor(text=captions, images=list(pixels), return_tensors="pt", padding=True)
    limit = hf.config.text_config.max_position_embeddings  # torchmetrics cuts captions here
    inputs["input_ids"], inputs["attention_mask"] = (
        inputs["input_ids"][:, :limit],
        inputs["attention_mask"][:, :limit],
    )
    with torch.no_grad():
        out = hf(**inputs)
    cosines = out.logits_per_image.diagonal() / hf.logit_scale.exp()
    torch.testing.assert_close(pair_scores(ours, pixels, captions), 100 * cosines)
    assert expected > 0  # the tiny model's mean cosine is positive: the clamp is not all it shows
    # the caption tower negated: every cosine flips sign, and both clamp the mean at 0
    flipped = tmp_path / "flipped"
    with torch.no_grad():
        hf.text_projection.weight.neg_()
    hf.save_pretrained(flipped)
    processor.save_pretrained(flipped)
    negative = HFCLIP.from_pretrained(flipped)
    torch.testing.assert_close(pair_scores(negative, pixels, captions), -100 * cosines)
    metric = metric_module.CLIPScore(
        model_name_or_path=lambda: (
            model_class.from_pretrained(flipped),
            transformers.CLIPProcessor.from_pretrained(flipped),
        )
    )
    with pytest.warns(UserWarning, match="longer than max_position_embeddings"):
        assert metric(pixels, captions).item() == 0.0 == clip_score(negative, pixels, captions)
