"""GAN training and sampling: the losses and R1 against hand computations, each phase stepping
only its own network, a short real run on shapes, exact resume of both optimizers, the
registry round trip and sampling (captions, determinism, truncation)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genlab.core.batches import TensorBatchSource
from genlab.core.ema import EMA_FILE, EMACallback
from genlab.core.errors import GenlabError
from genlab.core.logging import read_metrics
from genlab.core.registry import load, registered, save
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import ShapesDataset
from genlab.data.images.common import from_uint8
from genlab.methods.gan.gan import (
    KIND,
    DiscriminatorLoss,
    discriminator_loss,
    gan_phases,
    generator_loss,
    latents,
    r1_penalty,
    sample,
)
from genlab.nets.gan import GAN, Discriminator, GANConfig

pytestmark = pytest.mark.usefixtures("one_thread")

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.3, 1.5])


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_hinge_losses_by_hand() -> None:
    # D: mean(relu(1 - real)) = (0 + 0.5 + 2) / 3; mean(relu(1 + fake)) = (0 + 1.3 + 2.5) / 3
    d = discriminator_loss(REAL, FAKE, "hinge")
    assert d.item() == pytest.approx(2.5 / 3 + 3.8 / 3, abs=1e-6)
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(-(-2.0 + 0.3 + 1.5) / 3)


def test_non_saturating_losses_by_hand() -> None:
    real_term = sum(softplus(-r) for r in REAL.tolist()) / 3  # -log sigmoid(D(x))
    fake_term = sum(softplus(f) for f in FAKE.tolist()) / 3  # -log(1 - sigmoid(D(G(z))))
    d = discriminator_loss(REAL, FAKE, "non-saturating")
    assert d.item() == pytest.approx(real_term + fake_term, abs=1e-6)
    g = generator_loss(FAKE, "non-saturating")  # -log sigmoid(D(G(z)))
    assert g.item() == pytest.approx(sum(softplus(-f) for f in FAKE.tolist()) / 3, abs=1e-6)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(GenlabError, match="unknown GAN loss 'wasserstein'"):
        gan_phases("wasserstein")
    with pytest.raises(GenlabError, match="r1_gamma"):
        gan_phases(r1_gamma=-1.0)


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm() -> None:
    """D(x) = <w, x> + b has gradient w everywhere: R1 = ||w||^2, and d R1 / dw = 2 w reaches
    the weights through the double backward."""
    torch.manual_seed(0)
    d = nn.Linear(12, 1)
    x = torch.randn(5, 12, requires_grad=True)
    r1 = r1_penalty(d(x)[:, 0], x)
    assert r1.item() == pytest.approx(d.weight.pow(2).sum().item(), rel=1e-6)
    r1.backward()
    torch.testing.assert_close(d.weight.grad, 2 * d.weight.detach())


def test_r1_equals_finite_differences_on_a_tiny_discriminator() -> None:
    torch.manual_seed(0)
    d = Discriminator(GANConfig(image_channels=1, image_size=8, base_channels=2)).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    eps, squared = 1e-6, []
    for row in x:
        flat = row.flatten()
        grad = []
        for i in range(flat.numel()):
            step = torch.zeros_like(flat)
            step[i] = eps
            up, down = d((flat + step).view(1, 1, 8, 8)), d((flat - step).view(1, 1, 8, 8))
            grad.append(((up - down) / (2 * eps)).item())
        squared.append(sum(g * g for g in grad))
    x.requires_grad_(True)
    r1 = r1_penalty(d(x), x)
    assert r1.item() == pytest.approx(sum(squared) / 2, rel=1e-5)


def tiny_config(vocab: int = 0, **kw) -> GANConfig:
    return GANConfig(
        **{"image_size": 16, "base_channels": 8, "z_dim": 16, "cond_vocab": vocab, **kw}
    )


def shapes(n: int = 64, size: int = 16) -> tuple[TensorBatchSource, CaptionTokenizer]:
    data = ShapesDataset(n, size, seed=0)
    texts = [scene.caption for scene in data.scenes]
    tokenizer = CaptionTokenizer.from_captions(texts)
    ids, _ = tokenizer.encode(texts)
    return TensorBatchSource((from_uint8(data.pixels), ids), seed=0), tokenizer


def test_the_discriminator_loss_adds_half_gamma_r1() -> None:
    torch.manual_seed(0)
    source, tokenizer = shapes(8)
    gan = GAN(tiny_config(tokenizer.vocab_size))
    batch = source.get_batch(0, 0, 8, 8)
    losses = {}
    for gamma in (0.0, 4.0):
        torch.manual_seed(1)  # the same latents
        losses[gamma] = DiscriminatorLoss("hinge", gamma)(gan, batch)
    (plain, m0), (penalised, m4) = losses[0.0], losses[4.0]
    assert m0["r1"].item() == 0 and m4["r1"].item() > 0
    assert m4["real"].item() == pytest.approx(m0["real"].item())
    assert penalised.item() == pytest.approx(plain.item() + 2.0 * m4["r1"].item(), rel=1e-6)
    torch.manual_seed(1)
    z = torch.randn(8, 16)
    out = gan(z, batch[1], batch[0])
    expected = discriminator_loss(out.real_logits, out.fake_logits)
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6)


def test_instance_noise_reaches_every_image_the_discriminator_sees() -> None:
    """With noise std s, D scores ``image + s * eps`` for fakes and reals alike, eps drawn from
    the global generator after the generator's pass; the generator's own output is clean."""
    torch.manual_seed(0)
    source, tokenizer = shapes(8)
    gan = GAN(tiny_config(tokenizer.vocab_size))
    images, captions = source.get_batch(0, 0, 8, 8)
    z = torch.randn(8, 16)
    torch.manual_seed(3)
    noisy = gan(z, captions, images, instance_noise=0.5)
    torch.manual_seed(3)
    clean = gan(z, captions, images)
    eps = torch.randn(16, *images.shape[1:])  # drawn after the generator's pass, as forward does
    by_hand = gan.discriminator(
        torch.cat([clean.fake, images]) + 0.5 * eps, torch.cat([captions, captions])
    )
    torch.testing.assert_close(noisy.fake, clean.fake)
    torch.testing.assert_close(torch.cat([noisy.fake_logits, noisy.real_logits]), by_hand)
    assert not torch.allclose(noisy.real_logits, clean.real_logits, atol=1e-3)
    torch.manual_seed(3)
    alone = gan(z, captions, instance_noise=0.5)  # the generator's phase: fakes only
    torch.manual_seed(3)
    gan.generator(z, captions)
    eps = torch.randn_like(clean.fake)
    torch.testing.assert_close(
        alone.fake_logits, gan.discriminator(clean.fake + 0.5 * eps, captions)
    )
    with pytest.raises(GenlabError, match="instance noise"):
        gan_phases(instance_noise=-0.1)
    with pytest.raises(GenlabError, match="instance noise"):
        gan_phases(instance_noise=float("nan"))


def settings(**kw) -> TrainConfig:
    values = dict(
        max_steps=6,
        batch_size=16,
        lr=2e-3,
        betas=(0.5, 0.999),
        warmup_steps=0,
        eval_every=0,
        checkpoint_every=3,
        log_every=1,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    return TrainConfig(**{**values, **kw})


def gan_trainer(
    run, config, source, phases=None, resume=False, callbacks=(), loss="hinge", **kw
) -> Trainer:
    torch.manual_seed(0)
    steps, optimizers = gan_phases(loss, r1_gamma=1.0, d_lr=4e-3)
    return Trainer(
        GAN(config),
        steps if phases is None else [steps[i] for i in phases],
        source,
        settings(**kw),
        run,
        model_kind=KIND,
        model_config=config.to_dict(),
        callbacks=callbacks,
        optimizers=optimizers,
        resume=resume,
    )


@pytest.mark.parametrize(
    "phase, moves, stays", [(0, "discriminator", "generator"), (1, "generator", "discriminator")]
)
def test_each_phase_steps_only_its_network(tmp_path, phase, moves, stays) -> None:
    source, tokenizer = shapes(16)
    trainer = gan_trainer(tmp_path / "run", tiny_config(tokenizer.vocab_size), source, [phase])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step(0)
    after = trainer.model.state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        if not name.startswith(moves):
            assert not changed, name  # nothing of the other network, buffers included
        elif before[name].ndim >= 2:
            assert changed, name  # every matrix of its own (a bias or null vector may rest)
    assert trainer.optimizers[moves].state and not trainer.optimizers[stays].state


# the discriminator's loss at logits near 0: hinge 1 + 1, logistic 2 log 2
@pytest.mark.parametrize("loss, start", [("hinge", 2.0), ("non-saturating", 2 * math.log(2))])
def test_a_short_run_on_shapes_trains_both_networks(tmp_path, loss, start) -> None:
    source, tokenizer = shapes(64)
    config = tiny_config(tokenizer.vocab_size)
    run = tmp_path / "run"
    ema = EMACallback(0.9)
    gan_trainer(
        run, config, source, max_steps=40, checkpoint_every=0, callbacks=[ema], loss=loss
    ).fit()
    records = [r for r in read_metrics(run) if "d_loss" in r]
    assert len(records) == 40
    assert {"d_loss", "d_real", "d_fake", "d_r1", "g_loss", "g_fake"} <= set(records[-1])
    assert records[0]["d_loss"] == pytest.approx(start, abs=0.05)
    first = sum(r["d_loss"] for r in records[:5]) / 5
    last = sum(r["d_loss"] for r in records[-5:]) / 5
    assert last < 0.8 * first and last < 0.6 * start
    assert records[-1]["d_real"] > records[-1]["d_fake"]
    # the EMA of the whole model opens through the registry and samples
    loaded = load(run, KIND, weights=EMA_FILE)
    ids, _ = tokenizer.encode([tokenizer.vocab[-1]] * 4)
    images = sample(loaded.model, 4, ids, torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 16, 16) and images.abs().max() <= 1


def test_both_optimizers_checkpoint_and_resume_exactly(tmp_path) -> None:
    """Batch norm and spectral norm buffers too, and the EMA of the whole model."""
    source, tokenizer = shapes(32)
    config = tiny_config(tokenizer.vocab_size, norm="batch", spectral_norm=True)
    gan_trainer(tmp_path / "straight", config, source, callbacks=[EMACallback(0.9)]).fit()
    part = gan_trainer(tmp_path / "resumed", config, source, callbacks=[EMACallback(0.9)])
    part.fit(until=3)
    part.close()
    resumed = gan_trainer(
        tmp_path / "resumed", config, source, resume=True, callbacks=[EMACallback(0.9)]
    )
    assert resumed.step == 3
    resumed.fit()
    for name in ("model.safetensors", "optimizer.safetensors", EMA_FILE):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    optimizer_keys = load_file(str(tmp_path / "straight" / "optimizer.safetensors")).keys()
    assert any("generator" in k for k in optimizer_keys)
    assert any("discriminator" in k for k in optimizer_keys)


def test_save_and_load_through_the_registry(tmp_path) -> None:
    assert KIND in registered()
    torch.manual_seed(0)
    config = tiny_config(9, norm="batch", spectral_norm=True)
    gan = GAN(config)
    gan.discriminator(torch.randn(2, 3, 16, 16))  # move the power-iteration buffers
    save(tmp_path / "gan", gan, KIND, config)
    loaded = load(tmp_path / "gan", KIND)
    assert loaded.config == config and not loaded.model.training
    state = gan.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.model.state_dict().items())
    ids = torch.randint(1, 9, (3, 4))
    a = sample(gan, 3, ids, torch.Generator().manual_seed(5))
    b = sample(loaded.model, 3, ids, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_sampling_is_seeded_conditional_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    gan = GAN(tiny_config(9, norm="batch")).train()
    buffers = {k: v.clone() for k, v in gan.state_dict().items()}
    ids = torch.randint(2, 9, (4, 3))
    ids[:, 0] = 1
    first = sample(gan, 4, ids, torch.Generator().manual_seed(3))
    assert first.shape == (4, 3, 16, 16) and first.abs().max() <= 1
    assert torch.equal(first, sample(gan, 4, ids, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, sample(gan, 4, ids, torch.Generator().manual_seed(4)))
    other = torch.cat([ids[:, :1], (ids[:, 1:] - 1) % 7 + 2], dim=1)
    assert not torch.allclose(first, sample(gan, 4, other, torch.Generator().manual_seed(3)))
    assert gan.training and all(torch.equal(v, buffers[k]) for k, v in gan.state_dict().items())
    with pytest.raises(GenlabError, match="one caption per sample"):
        sample(gan, 3, ids, torch.Generator())


def test_truncation_redraws_the_latents_beyond_the_threshold() -> None:
    plain = latents(64, 16, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(64, 16, generator=torch.Generator().manual_seed(0)))
    cut = latents(64, 16, torch.Generator().manual_seed(0), truncation=0.5)
    assert cut.abs().max() <= 0.5 and plain.abs().max() > 0.5
    inside = plain.abs() <= 0.5
    assert torch.equal(cut[inside], plain[inside])  # only the outliers are drawn again
    assert torch.equal(cut, latents(64, 16, torch.Generator().manual_seed(0), truncation=0.5))
    with pytest.raises(GenlabError, match="truncation"):
        latents(2, 2, torch.Generator(), truncation=0.0)
