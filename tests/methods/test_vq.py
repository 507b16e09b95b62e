"""The VQ-VAE and its EMA codebook: the update against a hand computation, dead-code restarts,
straight-through gradients, training on shapes, encode/decode, and a save/load round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.data.images import ShapesDataset, from_uint8
from genlab.methods.vae.vq import (
    KIND,
    VQVAE,
    VQConfig,
    VQLoss,
    codebook_usage,
    decode,
    encode,
)
from genlab.nets.vector_quantizer import VectorQuantizer


def _config(size: int = 8, **overrides: object) -> VQConfig:
    net = dict(image_size=size, base_channels=8, channel_mults=(1, 2), latent_channels=8)
    return VQConfig(**{**net, "num_codes": 32, **overrides})


def _quantizer(codes: list[list[float]], decay: float = 0.5, **kw: float) -> VectorQuantizer:
    vq = VectorQuantizer(len(codes), 2, decay=decay, **kw)
    e = torch.tensor(codes)
    vq.embedding.copy_(e)
    vq.embed_sum.copy_(e)
    return vq


def _encodings(points: list[list[float]]) -> torch.Tensor:
    """Points (N, 2) as encodings (1, 2, 1, N)."""
    return torch.tensor(points).T[None, :, None, :]


def test_the_ema_update_equals_a_hand_computation() -> None:
    vq = _quantizer([[0, 0], [1, 0], [0, 1]], decay=0.5, eps=1e-5)
    z = _encodings([[0.1, 0.1], [0.9, 0.2], [1.2, -0.1]])
    out = vq(z)
    assert out.codes.tolist() == [[[0, 1, 1]]]
    # commitment: the mean over elements of (z - e)^2 with the codes before the update
    sq = [0.1**2, 0.1**2, 0.1**2, 0.2**2, 0.2**2, 0.1**2]
    assert out.commitment.item() == pytest.approx(sum(sq) / 6, rel=1e-5)
    p = [1 / 3, 2 / 3]
    assert out.perplexity.item() == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)))
    assert out.usage.item() == pytest.approx(2 / 3)
    # N <- 0.5 N + 0.5 n with N = 1 at the start; m <- 0.5 m + 0.5 (sum of assigned encodings)
    size = [1.0, 1.5, 0.5]
    sums = [[0.05, 0.05], [0.5 + 1.05, 0.05], [0.0, 0.5]]
    assert vq.cluster_size.tolist() == pytest.approx(size)
    assert vq.embed_sum.flatten().tolist() == pytest.approx(sum(sums, []))
    total, eps = 3.0, 1e-5
    smoothed = [(n + eps) / (total + 3 * eps) * total for n in size]
    expected = [[m / s for m in row] for row, s in zip(sums, smoothed, strict=True)]
    torch.testing.assert_close(vq.embedding, torch.tensor(expected))
    # without smoothing's rounding: the means of the averaged assignments
    torch.testing.assert_close(
        vq.embedding,
        torch.tensor([[0.05, 0.05], [1.55 / 1.5, 0.05 / 1.5], [0.0, 1.0]]),
        atol=1e-4,
        rtol=0,
    )


def test_eval_mode_and_nearest_leave_the_codebook_alone() -> None:
    vq = _quantizer([[0, 0], [1, 0], [0, 1]]).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    z = _encodings([[0.1, 0.1], [0.9, 0.2]])
    assert vq(z).codes.tolist() == vq.nearest(z).tolist() == [[[0, 1]]]
    assert set(before) == {"embedding", "cluster_size", "embed_sum"}  # checkpoints carry them
    for key, value in vq.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_dead_codes_restart_on_the_worst_served_encodings() -> None:
    vq = _quantizer([[0, 0], [1, 0], [0, 1], [5, 5]], decay=0.5, restart_below=0.8)
    z = _encodings([[0.1, 0.0], [0.9, 0.0], [0.1, 0.9], [3.0, -3.0]])
    assert vq(z).codes.tolist() == [[[0, 1, 2, 1]]]
    # code 3 went unused: N = 0.5 < 0.8, so it moves onto (3, -3), the farthest from its code
    assert vq.embedding[3].tolist() == [3.0, -3.0]
    assert vq.embed_sum[3].tolist() == [3.0, -3.0]
    assert vq.cluster_size.tolist() == pytest.approx([1.0, 1.5, 1.0, 1.0])
    assert vq.nearest(_encodings([[3.0, -3.0]])).item() == 3


def test_straight_through_gradients_reach_the_encoder() -> None:
    vq = _quantizer([[0, 0], [1, 0], [0, 1]])
    z = _encodings([[0.1, 0.1], [0.9, 0.2]]).requires_grad_()
    weights = torch.randn(1, 2, 1, 2)
    (vq(z).quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # the quantization passes gradients unchanged

    torch.manual_seed(0)
    model = VQVAE(_config())
    loss, _ = VQLoss(commitment=0.0)(model, (torch.rand(2, 3, 8, 8) * 2 - 1, None))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.pre_quant.weight.grad.abs().sum() > 0


def _shapes(n: int, size: int) -> torch.Tensor:
    return from_uint8(ShapesDataset(n, size, seed=0).pixels)


def _train(model: VQVAE, images: torch.Tensor, steps: int, batch: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        rows = torch.arange(step * batch, (step + 1) * batch) % len(images)
        loss, _ = VQLoss()(model, (images[rows], None))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_lowers_the_loss_and_uses_the_codebook() -> None:
    torch.manual_seed(0)
    images = _shapes(64, 16)
    model = VQVAE(_config(16))
    losses = _train(model, images, steps=40, batch=16)
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    usage = codebook_usage(model, images, batch_size=20)
    assert usage["usage"] >= 0.25  # at least 8 of the 32 codes
    assert 3.0 < usage["perplexity"] <= 32
    recon = decode(model, encode(model, images))
    mean_image = (images - images.mean(0)).pow(2).mean()  # 0.088: the best constant guess
    assert (recon - images).pow(2).mean() < 0.75 * mean_image  # 0.051 measured


def test_encode_decode_shapes_and_parity_with_forward() -> None:
    torch.manual_seed(0)
    model = VQVAE(_config(16)).eval()
    assert model.grid == (8, 8) and model.config.num_codes == 32
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    codes = encode(model, images)
    assert codes.shape == (3, 8, 8) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 32
    out = decode(model, codes)
    assert out.shape == (3, 3, 16, 16) and out.min() >= -1 and out.max() <= 1
    with torch.no_grad():
        forward = model(images)
    assert torch.equal(forward.codes, codes)
    torch.testing.assert_close(forward.recon.clamp(-1, 1), out)
    with pytest.raises(GenlabError, match="expected codes"):
        decode(model, codes[:, :4])
    with pytest.raises(GenlabError, match="codebook's size"):
        decode(model, codes + 32)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = _shapes(16, 16)
    model = VQVAE(_config(16, restart_below=0.9))
    _train(model, images, steps=3, batch=8)
    save(tmp_path / "vq", model, KIND, model.config)
    loaded = load(tmp_path / "vq")
    assert loaded.kind == KIND and loaded.config == model.config
    model.eval()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    codes = encode(model, images)
    assert torch.equal(encode(loaded.model, images), codes)
    assert torch.equal(decode(loaded.model, codes), decode(model, codes))


def test_config_round_trip_and_checks() -> None:
    cfg = _config(restart_below=0.5)
    assert VQConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GenlabError, match="at least 2 codes"):
        _config(num_codes=1)
    with pytest.raises(GenlabError, match="decay"):
        _config(decay=1.0)
    with pytest.raises(GenlabError, match="norm groups"):
        _config(base_channels=4)  # the autoencoder's own checks
    with pytest.raises(GenlabError, match="unknown autoencoder setting 'kl_weight'"):
        VQConfig.from_dict({**cfg.to_dict(), "kl_weight": 1.0})
