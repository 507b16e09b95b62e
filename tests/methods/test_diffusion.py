"""The text-conditioned diffusion model: caption tokenizer and encoder, batches, the loss on any
sample shape, training and sampling."""

from __future__ import annotations

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import ShapesConfig, ShapesDataset
from genlab.methods.diffusion.guidance import cfg_combine
from genlab.methods.diffusion.loss import DiffusionLoss
from genlab.methods.diffusion.samplers import sample_loop
from genlab.methods.diffusion.schedule import NoiseSchedule
from genlab.methods.diffusion.text_conditioned import (
    DiffusionBatchSource,
    DiffusionConfig,
    DiffusionModel,
    generate,
    generate_captions,
)
from genlab.nets.text_encoder import TextEncoder, TextEncoderConfig
from genlab.nets.unet import UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")


CAPTIONS = ["a small red circle on the left", "a large blue star at the top", "a blue circle"]


def tiny_config(vocab: int = 20, max_length: int = 8, prediction: str = "eps") -> DiffusionConfig:
    unet = UNetConfig(
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attn_levels=(1,),
        norm_groups=8,
        num_heads=2,
        context_dim=16,
    )
    text = TextEncoderConfig(vocab_size=vocab, max_length=max_length, dim=16, num_heads=2)
    return DiffusionConfig(unet=unet, text=text, image_size=16, prediction=prediction)


def test_tokenizer_vocabulary_ids_and_masks():
    tok = CaptionTokenizer.from_captions(CAPTIONS)
    assert tok.vocab[:3] == ["<pad>", "<cls>", "<unk>"]
    assert tok.max_length == 8  # seven words and <cls>
    ids, mask = tok.encode(["A Blue circle!", ""])
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0, :4].tolist() == [1, tok.index["a"], tok.index["blue"], tok.index["circle"]]
    assert mask[0].tolist() == [True] * 4 + [False] * 4
    assert mask[1].tolist() == [True] + [False] * 7  # an empty caption is <cls> alone
    assert tok.unknown_words("a pink circle") == ["pink"]
    assert tok.encode(["a pink circle"])[0][0, 2] == tok.index["<unk>"]
    with pytest.raises(GenlabError, match="at most 7"):
        tok.encode(["a b c d e f g h"])
    again = CaptionTokenizer.from_json(tok.to_json())
    assert again.vocab == tok.vocab and again.max_length == tok.max_length


def test_text_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(vocab_size=12, max_length=6, dim=16, num_heads=2)).eval()
    ids = torch.tensor([[1, 5, 6, 0, 0, 0]])
    mask = ids != 0
    out = enc(ids, mask)
    assert out.shape == (1, 6, 16)
    other = ids.clone()
    other[0, 3:] = torch.tensor([7, 8, 9])  # different ids at padded positions
    torch.testing.assert_close(enc(other, mask)[:, :3], out[:, :3])


def test_config_round_trip_and_checks():
    cfg = tiny_config()
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GenlabError, match="cross-attends"):
        DiffusionConfig(unet=cfg.unet, text=TextEncoderConfig(vocab_size=5, max_length=4, dim=8))
    with pytest.raises(GenlabError, match="multiple of 2"):
        DiffusionConfig(unet=cfg.unet, text=cfg.text, image_size=15)
    with pytest.raises(GenlabError, match="prediction"):
        DiffusionConfig(unet=cfg.unet, text=cfg.text, prediction="noise")


def _source(n: int = 40, cond_drop: float = 0.5, seed: int = 3) -> DiffusionBatchSource:
    ds = ShapesDataset(n, 16, seed=0, config=ShapesConfig(two_shape_fraction=0.0))
    tok = CaptionTokenizer.from_captions(s.caption for s in ds.scenes)
    ids, mask = tok.encode([s.caption for s in ds.scenes])
    return DiffusionBatchSource(ds.pixels, ids, mask, 1000, cond_drop, seed)


def test_batches_depend_on_seed_and_step_only_and_split_exactly():
    src = _source()
    whole = src.get_batch(5, 0, 8, 8)
    again = _source().get_batch(5, 0, 8, 8)
    parts = [src.get_batch(5, a, a + 2, 8) for a in range(0, 8, 2)]
    for key, value in whole.items():
        assert torch.equal(value, again[key]), key
        assert torch.equal(value, torch.cat([p[key] for p in parts])), key
    assert set(whole) == {"sample", "noise", "t", "tokens", "token_mask", "drop_cond"}
    assert whole["sample"].min() >= -1 and whole["sample"].max() <= 1
    assert whole["t"].min() >= 0 and whole["t"].max() < 1000
    other = src.get_batch(6, 0, 8, 8)
    assert not torch.equal(other["noise"], whole["noise"])
    drops = torch.cat([src.get_batch(s, 0, 8, 8)["drop_cond"] for s in range(100)])
    assert 0.4 < drops.float().mean() < 0.6


def test_loss_is_mse_to_the_schedules_target():
    torch.manual_seed(0)
    src = _source()
    batch = src.get_batch(0, 0, 4, 4)
    for prediction in ("eps", "x0", "v"):
        model = DiffusionModel(
            tiny_config(
                vocab=len(src.rows.tensors[1].unique()) + 40,
                max_length=src.rows.tensors[1].shape[1],
                prediction=prediction,
            )
        )
        schedule = model.noise_schedule()
        loss, metrics = DiffusionLoss(schedule)(model, batch)
        x_t = schedule.add_noise(batch["sample"], batch["noise"], batch["t"])
        pred = model(x_t, batch["t"], batch["tokens"], batch["token_mask"], batch["drop_cond"])
        target = {"eps": batch["noise"], "x0": batch["sample"]}.get(
            prediction, schedule.get_velocity(batch["sample"], batch["noise"], batch["t"])
        )
        torch.testing.assert_close(loss, ((pred - target) ** 2).mean())
        assert metrics["samples"] == 4
        # Min-SNR-gamma: the same errors, each row weighted by its step's weight
        weighted, _ = DiffusionLoss(schedule, snr_gamma=5.0)(model, batch)
        weight = schedule.min_snr_weight(batch["t"], 5.0)
        per_row = ((pred - target) ** 2).flatten(1).mean(1)
        torch.testing.assert_close(weighted, (weight * per_row).mean())
    with pytest.raises(GenlabError, match="snr_gamma"):
        DiffusionLoss(schedule, snr_gamma=0.0)
    with pytest.raises(GenlabError, match="snr_floor"):
        DiffusionLoss(schedule, snr_gamma=None, snr_floor=0.1)


class Scaled(torch.nn.Module):
    """A denoiser for samples of any shape: ``scale * x_t + shift[label]``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.shift = torch.nn.Parameter(torch.tensor([0.1, -0.2]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.shift[label].reshape(-1, *[1] * (x.ndim - 1))


@pytest.mark.parametrize("shape", [(6,), (6, 16), (6, 1, 32), (6, 2, 4, 4, 4)])
def test_loss_takes_samples_of_any_rank_and_passes_other_keys_as_conditions(shape):
    """Audio (B, C, L), a vector (B,) or a video (B, C, T, H, W): the same loss, Min-SNR
    weighting each row by its step, and every key but sample/noise/t goes to the network."""
    g = torch.Generator().manual_seed(0)
    batch = {
        "sample": torch.randn(shape, generator=g),
        "noise": torch.randn(shape, generator=g),
        "t": torch.tensor([0, 10, 200, 500, 800, 999]),
        "label": torch.tensor([0, 1, 0, 1, 1, 0]),
    }
    schedule, model = NoiseSchedule(prediction="v"), Scaled()
    x_t = schedule.add_noise(batch["sample"], batch["noise"], batch["t"])
    target = schedule.training_target(batch["sample"], batch["noise"], batch["t"])
    errors = (model(x_t, batch["t"], batch["label"]) - target) ** 2
    plain, metrics = DiffusionLoss(schedule)(model, batch)
    torch.testing.assert_close(plain, errors.mean())
    assert metrics["samples"] == 6
    weighted, _ = DiffusionLoss(schedule, snr_gamma=5.0)(model, batch)
    per_row = errors.reshape(6, -1).mean(1)
    torch.testing.assert_close(
        weighted, (schedule.min_snr_weight(batch["t"], 5.0) * per_row).mean()
    )
    weighted.backward()
    assert model.shift.grad is not None and model.shift.grad.abs().sum() > 0


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    src = _source(n=64, cond_drop=0.1)
    tokens = src.rows.tensors[1]
    model = DiffusionModel(tiny_config(vocab=int(tokens.max()) + 1, max_length=tokens.shape[1]))
    loss_fn = DiffusionLoss(model.noise_schedule())
    held_out = src.get_batch(10_000, 0, 32, 32)  # fixed images, steps and noise

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model, held_out)[0])

    before = held_out_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(25):
        loss, _ = loss_fn(model, src.get_batch(step, 0, 16, 16))
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = held_out_loss()
    assert before == pytest.approx(1.0, abs=0.1)  # the zero-initialised output predicts no noise
    assert after < 0.6 * before


def _model_and_tokens():
    torch.manual_seed(0)
    tok = CaptionTokenizer.from_captions(CAPTIONS)
    model = DiffusionModel(tiny_config(vocab=tok.vocab_size, max_length=tok.max_length))
    with torch.no_grad():  # a non-trivial network: the zero-initialised output layers get weights
        for p in model.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, 0.05)
    return model, tok


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_generation_shapes_range_and_seed_determinism(sampler):
    model, tok = _model_and_tokens()
    sched = model.scheduler(sampler, eta=0.5)
    sched.set_timesteps(5)
    a = generate_captions(model, tok, CAPTIONS, sched, guidance=2.0, seed=1, batch_size=2)
    b = generate_captions(model, tok, CAPTIONS, sched, guidance=2.0, seed=1, batch_size=2)
    c = generate_captions(model, tok, CAPTIONS, sched, guidance=2.0, seed=2, batch_size=2)
    assert a.shape == (3, 3, 16, 16)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_guided_generation_combines_conditional_and_unconditional_passes():
    """One deterministic DDIM step from the same noise, recomputed by hand (at t = 0, where the
    step does not amplify float differences between a batch of 2B and two of B)."""
    model, tok = _model_and_tokens()
    model.eval()
    ids, mask = tok.encode(CAPTIONS[:2])
    sched = model.scheduler("ddim", spacing="leading")
    sched.set_timesteps(1)
    assert sched.timesteps.tolist() == [0]
    out = generate(
        model, ids, mask, sched, guidance=4.0, generator=torch.Generator().manual_seed(0)
    )
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    t = sched.timesteps[0]
    with torch.no_grad():
        cond = model(noise, t, ids, mask)
        uncond = model(noise, t, ids, mask, drop_cond=torch.ones(2, dtype=torch.bool))
        expected = sched.step(cfg_combine(uncond, cond, 4.0), t, noise).prev_sample.clamp(-1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_unknown_sampler_is_refused():
    model, _ = _model_and_tokens()
    with pytest.raises(GenlabError, match="unknown sampler"):
        model.scheduler("euler")


def test_strong_guidance_moves_ddim_samples_towards_the_condition():
    """With exact denoisers (the conditional one knows the image is A, the unconditional one
    only that it is A or B), s = 5 overshoots x_0 far outside [-1, 1]. The model's DDIM sampler
    must still end near A; clipping x_0 without re-deriving the noise would push it to B."""
    model, _ = _model_and_tokens()
    g = torch.Generator().manual_seed(0)
    a_img = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    b_img = -a_img
    sched = model.scheduler("ddim")
    sched.set_timesteps(20)
    abar = sched.alphas_cumprod

    def eps_from_x0(x0: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[int(t)]
        return (x - a.sqrt() * x0) / (1 - a).sqrt()  # the model predicts the noise

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[int(t)]
        # posterior mean of x0 over {A, B} given x_t (equal priors)
        logits = torch.stack(
            [-((x - a.sqrt() * img) ** 2).sum() / (2 * (1 - a)) for img in (a_img, b_img)]
        )
        w = torch.softmax(logits, 0)
        uncond = eps_from_x0(w[0] * a_img + w[1] * b_img, x, t)
        return cfg_combine(uncond, eps_from_x0(a_img, x, t), 5.0)

    assert model.config.prediction == "eps"
    out = sample_loop(guided, sched, torch.randn(1, 3, 16, 16, generator=g)).clamp(-1, 1)
    assert ((out - a_img) ** 2).mean() < ((out - b_img) ** 2).mean()
    assert torch.nn.functional.cosine_similarity(out.flatten(), a_img.flatten(), dim=0) > 0.9
