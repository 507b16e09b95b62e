"""The conditional UNet: shapes, conditioning, the null condition, step embedding, training."""

import json

import pytest
import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.schedule import NoiseSchedule
from genlab.nets.unet import PRESETS, UNet, UNetConfig
from genlab.nets.unet_blocks import timestep_embedding

CTX = 12


def make(seed=0, randomize=True, **overrides) -> UNet:
    """A tiny UNet; ``randomize`` gives the zero-initialised output layers random weights, so
    that every input (and condition) shows in the output, as after some training."""
    torch.manual_seed(seed)
    model = UNet(UNetConfig.preset("tiny", **overrides)).eval()
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0.0, 0.05)
    return model


def inputs(B=2, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g), torch.randint(0, 1000, (B,), generator=g)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("mode", ["none", "class", "context", "both"])
def test_output_has_the_input_shape(size, mode):
    kw = {
        "none": {},
        "class": {"num_classes": 5},
        "context": {"context_dim": CTX},
        "both": {"num_classes": 5, "context_dim": CTX},
    }[mode]
    model = make(**kw)
    x, t = inputs(size=size)
    cond = {}
    if "num_classes" in kw:
        cond["class_labels"] = torch.tensor([0, 4])
    if "context_dim" in kw:
        cond["context"] = torch.randn(2, 7, CTX)
        cond["context_mask"] = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    with torch.no_grad():
        y = model(x, t, **cond)
        assert y.shape == x.shape and torch.isfinite(y).all()
        # an integer step means the same step for every image
        torch.testing.assert_close(
            model(x, 123, **cond), model(x, torch.tensor([123, 123]), **cond)
        )


def test_fresh_model_predicts_zero_and_depends_on_input_and_step_once_trained():
    x, t = inputs()
    with torch.no_grad():
        assert torch.count_nonzero(make(randomize=False)(x, t)) == 0  # zero-initialised output
        model = make()
        y = model(x, t)
        assert not torch.allclose(y, model(x, t + 1), atol=1e-6)
        assert not torch.allclose(y, model(x * 0.5, t), atol=1e-6)


@torch.no_grad()
def test_class_label_changes_the_output_and_dropping_it_gives_the_null_class():
    model = make(num_classes=4)
    x, t = inputs(B=3)
    labels = torch.tensor([0, 1, 2])
    y = model(x, t, class_labels=labels)
    assert not torch.allclose(y, model(x, t, class_labels=torch.tensor([3, 1, 2])), atol=1e-6)
    null = model(x, t)  # no label: the learned null class
    assert not torch.allclose(y, null, atol=1e-6)
    dropped = model(x, t, class_labels=labels, drop_cond=torch.tensor([True, False, True]))
    torch.testing.assert_close(dropped[[0, 2]], null[[0, 2]], rtol=0, atol=1e-5)
    torch.testing.assert_close(dropped[1], y[1], rtol=0, atol=1e-5)


@torch.no_grad()
def test_context_and_its_mask_change_the_output_and_dropping_gives_the_null_context():
    model = make(context_dim=CTX)
    x, t = inputs(B=3)
    ctx = torch.randn(3, 6, CTX, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 6, dtype=torch.bool)
    y = model(x, t, context=ctx, context_mask=mask)
    assert not torch.allclose(y, model(x, t, context=ctx.flip(1).roll(1, 0)), atol=1e-6)
    shorter = mask.clone()
    shorter[:, 3:] = False
    y_short = model(x, t, context=ctx, context_mask=shorter)
    assert not torch.allclose(y, y_short, atol=1e-6)
    # masked positions are ignored: any content there gives the same output
    torch.testing.assert_close(
        model(
            x, t, context=torch.cat([ctx[:, :3], torch.randn(3, 3, CTX)], 1), context_mask=shorter
        ),
        y_short,
    )
    null = model(x, t)  # no context: the zeroed sequence
    assert not torch.allclose(y, null, atol=1e-6)
    torch.testing.assert_close(model(x, t, context=torch.zeros(3, 9, CTX)), null, rtol=0, atol=1e-5)
    drop = torch.tensor([True, False, True])
    dropped = model(x, t, context=ctx, context_mask=shorter, drop_cond=drop)
    torch.testing.assert_close(dropped[drop], null[drop], rtol=0, atol=1e-5)
    torch.testing.assert_close(dropped[1], y_short[1], rtol=0, atol=1e-5)


def test_step_embedding_matches_the_transformer_sinusoids_of_diffusers():
    t = torch.tensor([0, 1, 10, 999])
    emb = timestep_embedding(t, 32)
    assert emb.shape == (4, 32)
    assert emb.abs().max() <= 1.0
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(16), torch.zeros(16)]))
    ref = get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(emb, ref)
    with pytest.raises(GenlabError, match="even"):
        timestep_embedding(t, 31)


def test_layer_names_are_stable_for_adapters():
    model = make(randomize=False, num_classes=3, context_dim=CTX)
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for block in ("down.1.attentions.0", "mid.attention", "up.0.attentions.1"):
        for proj in ("to_q", "to_k", "to_v", "to_out"):
            assert f"{block}.attn.{proj}" in linears
            assert f"{block}.cross_attn.{proj}" in linears
    # the full-resolution level of the tiny preset has no attention
    assert not any(n.startswith("down.0.attentions") for n in linears)
    assert model.class_embed.num_embeddings == 4  # three classes and the null class


def test_presets_grow_and_count_their_parameters():
    counts = {name: UNet(cfg).num_params() for name, cfg in PRESETS.items()}
    assert counts["tiny"] < counts["small"] < counts["base"]
    assert counts["tiny"] < 1_000_000
    # "base" has the layout of DDPM's CIFAR-10 model (35.7M parameters in Ho et al.)
    assert 34e6 < counts["base"] < 37e6
    model = make(randomize=False)
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_config_round_trips_through_json_and_checks_its_numbers():
    cfg = UNetConfig.preset("small", num_classes=10, context_dim=64)
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(GenlabError, match="norm groups"):
        UNetConfig(base_channels=20, norm_groups=8)
    with pytest.raises(GenlabError, match="attention level 3"):
        UNetConfig(channel_mults=(1, 2), attn_levels=(3,))
    with pytest.raises(GenlabError, match="unknown UNet preset"):
        UNetConfig.preset("huge")
    with pytest.raises(GenlabError, match="unknown UNet config field"):
        UNetConfig.from_dict({"n_layer": 2})


def test_bad_inputs_say_what_is_wrong():
    model = make(randomize=False)
    x, t = inputs(size=17)
    with pytest.raises(GenlabError, match="multiple of 2"):
        model(x, t)
    x, t = inputs()
    with pytest.raises(GenlabError, match="one step or 2 steps"):
        model(x, torch.tensor([1, 2, 3]))
    with pytest.raises(GenlabError, match="without classes"):
        model(x, t, class_labels=torch.tensor([0, 1]))
    with pytest.raises(GenlabError, match="without cross-attention"):
        model(x, t, context=torch.zeros(2, 3, CTX))
    cond = make(randomize=False, num_classes=3, context_dim=CTX)
    with pytest.raises(GenlabError, match=r"in \[0, 3\)"):
        cond(x, t, class_labels=torch.tensor([0, 3]))
    with pytest.raises(GenlabError, match="context has shape"):
        cond(x, t, context=torch.zeros(2, 3, CTX + 1))
    with pytest.raises(GenlabError, match="masks every position"):
        cond(x, t, context=torch.zeros(2, 3, CTX), context_mask=torch.zeros(2, 3, dtype=bool))


def test_a_few_training_steps_reduce_the_denoising_loss():
    """The tiny preset learns on a fixed batch within seconds (class-conditional, eps target)."""
    torch.manual_seed(0)
    model = UNet(UNetConfig.preset("tiny", num_classes=2)).train()
    schedule = NoiseSchedule("cosine")
    g = torch.Generator().manual_seed(0)
    # two classes of 16x16 images: a bright left half or a bright top half
    x0 = -torch.ones(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 0, 1])
    x0[labels == 0, :, :, :8] = 1.0
    x0[labels == 1, :, :8, :] = 1.0
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (4,), generator=g)
    xt = schedule.add_noise(x0, noise, t)
    target = schedule.training_target(x0, noise, t, "eps")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn():
        return torch.nn.functional.mse_loss(model(xt, t, class_labels=labels), target)

    first = loss_fn().item()
    for _ in range(10):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = loss_fn().item()
    assert first == pytest.approx(1.0, abs=0.2)  # zero prediction: the noise's variance
    assert last < 0.6 * first


def test_pooled_context_carries_the_caption_without_cross_attention():
    """With every cross-attention silenced, only the pooled caption in the step embedding can
    carry the condition: it does when ``pool_context`` is on, and nothing does when it is off."""
    x, t = inputs(B=2)
    ctx = torch.randn(2, 5, CTX, generator=torch.Generator().manual_seed(3))
    for pool in (True, False):
        model = make(context_dim=CTX, pool_context=pool)
        assert ("context_embed.weight" in model.state_dict()) is pool
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "cross_attn.to_out" in name:
                    p.zero_()
        y = model(x, t, context=ctx)
        changed = not torch.allclose(y, model(x, t, context=ctx.roll(1, 0)), atol=1e-6)
        assert changed is pool


def test_coordinate_channels_give_the_first_conv_each_pixels_place():
    from genlab.nets.unet import _coordinates

    grid = _coordinates(torch.zeros(2, 3, 4, 6))
    assert grid.shape == (2, 2, 4, 6)
    torch.testing.assert_close(grid[0, 0, 0], torch.linspace(-1, 1, 6))  # x: left to right
    torch.testing.assert_close(grid[0, 1, :, 0], torch.linspace(-1, 1, 4))  # y: top to bottom
    with_coords, without = make(), make(coord_channels=False)
    assert with_coords.conv_in.in_channels == 5 and without.conv_in.in_channels == 3
    x, t = inputs()
    y = with_coords(x, t)
    with torch.no_grad():
        with_coords.conv_in.weight[:, 3:] = 0  # blind the layer to the coordinates
    assert not torch.allclose(y, with_coords(x, t), atol=1e-6)


def test_a_config_saved_before_pooling_and_coordinates_loads_without_them():
    old = UNetConfig(context_dim=CTX).to_dict()
    del old["pool_context"], old["coord_channels"]
    config = UNetConfig.from_dict(old)
    assert not config.pool_context and not config.coord_channels
    assert UNetConfig.from_dict(UNetConfig(context_dim=CTX).to_dict()).coord_channels
