"""genlab's DDPM and DDIM schedulers under diffusers' own names: built from one config, they
match diffusers' schedulers, and a sampling loop written for diffusers runs unchanged on them."""

import json

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler
from genlab.methods.diffusion.schedule import NoiseSchedule
from references import require

diffusers = require("diffusers")

PREDICTION_TYPES = ["epsilon", "v_prediction", "sample"]
BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
PAIRS = {"DDPM": (DDPMScheduler, "DDPMScheduler"), "DDIM": (DDIMScheduler, "DDIMScheduler")}


def config(beta_schedule: str = "linear", prediction_type: str = "epsilon", **kw) -> dict:
    """A diffusers scheduler config, as a pipeline's ``scheduler_config.json`` holds one."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": beta_schedule,
        "prediction_type": prediction_type,
        "clip_sample": False,
        **kw,
    }


def both(kind: str, cfg: dict):
    """(diffusers', genlab's) scheduler of ``kind`` built from ``cfg`` with the same call."""
    ours, theirs = PAIRS[kind]
    return getattr(diffusers, theirs)(**cfg), ours(**cfg)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def model(x, t):
    """A stand-in network whose output depends on the sample and the timestep."""
    return 0.3 * x + 0.002 * t


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_same_config_gives_the_same_schedule_and_timesteps(kind, beta_schedule, spacing):
    ref, ours = both(kind, config(beta_schedule, timestep_spacing=spacing))
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    for n in (10, 50):
        ref.set_timesteps(n)
        ours.set_timesteps(n)
        assert torch.equal(ours.timesteps, ref.timesteps)
    assert ours.init_noise_sigma == ref.init_noise_sigma
    x = randn(1, 2, 3, 3)
    assert torch.equal(ours.scale_model_input(x, 5), ref.scale_model_input(x, 5))


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddpm_step_matches_under_diffusers_arguments(prediction_type, clip_sample):
    ref, ours = both("DDPM", config("scaled_linear", prediction_type, clip_sample=clip_sample))
    ref.set_timesteps(20)
    ours.set_timesteps(20)
    sample, out = randn(2, 3, 4, 4, seed=1), randn(2, 3, 4, 4, seed=2)
    for t in ours.timesteps[[0, 10, -1]]:
        a = ref.step(out, t, sample, generator=torch.Generator().manual_seed(7))
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            b.pred_original_sample, a.pred_original_sample, rtol=0, atol=1e-5
        )
        prev, x0 = ours.step(
            out, t, sample, generator=torch.Generator().manual_seed(7), return_dict=False
        )
        assert torch.equal(prev, b.prev_sample) and torch.equal(x0, b.pred_original_sample)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("use_clipped_model_output", [False, True])
def test_ddim_step_matches_under_diffusers_arguments(
    prediction_type, eta, use_clipped_model_output
):
    cfg = config("squaredcos_cap_v2", prediction_type, clip_sample=True, set_alpha_to_one=False)
    ref, ours = both("DDIM", cfg)
    ref.set_timesteps(25)
    ours.set_timesteps(25)
    sample, out = randn(2, 3, 4, 4, seed=3), 2 * randn(2, 3, 4, 4, seed=4)
    kw = {"eta": eta, "use_clipped_model_output": use_clipped_model_output}
    for t in ours.timesteps[[0, 12, -1]]:
        a = ref.step(out, t, sample, generator=torch.Generator().manual_seed(9), **kw)
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(9), **kw)
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            b.pred_original_sample, a.pred_original_sample, rtol=0, atol=1e-5
        )
        noise = randn(2, 3, 4, 4, seed=5)  # diffusers' variance_noise replaces the draw
        a = ref.step(out, t, sample, eta=eta, variance_noise=noise, return_dict=False)
        b = ours.step(out, t, sample, eta=eta, variance_noise=noise, return_dict=False)
        torch.testing.assert_close(b[0], a[0], rtol=0, atol=1e-5)


def docs_loop(scheduler, x, n):
    """diffusers' sampling loop, written as its documentation writes it."""
    scheduler.set_timesteps(n)
    for t in scheduler.timesteps:
        noise_pred = model(x, t)
        x = scheduler.step(noise_pred, t, x).prev_sample
    return x


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_a_diffusers_sampling_loop_runs_unchanged_on_genlab(kind, prediction_type):
    ref, ours = both(kind, config("linear", prediction_type, timestep_spacing="trailing"))
    x = randn(1, 3, 8, 8, seed=6)
    torch.manual_seed(0)  # DDPM draws its noise from the global generator here
    expected = docs_loop(ref, x, 30)
    torch.manual_seed(0)
    got = docs_loop(ours, x, 30)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
def test_configs_travel_both_ways_and_through_a_saved_folder(kind, tmp_path):
    ours_cls, theirs = PAIRS[kind]
    ref_cls = getattr(diffusers, theirs)
    ref = ref_cls(**config("squaredcos_cap_v2", "v_prediction", timestep_spacing="trailing"))
    # diffusers -> genlab: a scheduler object, its config, or the folder it saved
    ref.save_config(tmp_path / "scheduler")
    for source in (ref, ref.config, dict(ref.config), tmp_path, tmp_path / "scheduler"):
        ours = ours_cls.from_diffusers(source)
        assert ours.prediction == "v" and ours.schedule == "cosine"
        assert ours.timestep_spacing == "trailing"
        torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    # genlab -> diffusers and back: the config speaks diffusers' names
    ours = ours_cls.from_config(ref.config, prediction_type="sample")
    assert (
        ours.config.prediction_type == "sample"
        and ours.config["beta_schedule"] == "squaredcos_cap_v2"
    )
    back = ref_cls.from_config(json.loads(json.dumps(ours.config)))
    assert back.config.prediction_type == "sample"
    torch.testing.assert_close(back.alphas_cumprod, ours.alphas_cumprod, rtol=0, atol=0)
    again = ours_cls.from_config(ours.config)
    assert again.config == ours.config
    # a DDPM config opens as DDIM (diffusers' scheduler swap), the other's settings ignored
    swapped = DDIMScheduler.from_config(diffusers.DDPMScheduler(variance_type="fixed_large").config)
    assert swapped.config["_class_name"] == "DDIMScheduler"


def test_trained_betas_and_genlab_names_still_work():
    betas = torch.linspace(1e-4, 0.02, 50)
    a = DDIMScheduler(trained_betas=betas.tolist(), prediction_type="v_prediction")
    b = DDIMScheduler("linear", 50, prediction="v")
    torch.testing.assert_close(a.alphas_cumprod, b.alphas_cumprod)
    assert a.prediction == b.prediction == "v" and b.prediction_type == "v_prediction"
    assert DDIMScheduler.from_config(a.config).trained_betas.tolist() == a.trained_betas.tolist()
    assert NoiseSchedule(beta_schedule="squaredcos_cap_v2").schedule == "cosine"
    # either library's value under either name
    assert DDPMScheduler(prediction="epsilon").prediction == "eps"
    assert DDPMScheduler("squaredcos_cap_v2").beta_schedule == "squaredcos_cap_v2"


def test_what_genlab_does_not_do_is_refused_in_one_line(tmp_path):
    with pytest.raises(GenlabError, match="thresholding"):
        DDPMScheduler.from_config(config(thresholding=True))
    with pytest.raises(GenlabError, match="rescale_betas_zero_snr"):
        DDIMScheduler.from_config(config(rescale_betas_zero_snr=True))
    with pytest.raises(GenlabError, match="noise schedule 'sigmoid'"):
        DDPMScheduler.from_config(config("sigmoid"))
    with pytest.raises(GenlabError, match="variance type"):
        DDPMScheduler.from_config(config(variance_type="learned_range"))
    with pytest.raises(GenlabError, match="prediction type given twice"):
        DDPMScheduler(prediction="v", prediction_type="epsilon")
    with pytest.raises(GenlabError, match="betas given twice"):
        DDPMScheduler(betas=torch.ones(3) / 10, trained_betas=[0.1] * 3)
    assert DDPMScheduler(prediction="v", prediction_type="v_prediction").prediction == "v"
    with pytest.raises(GenlabError, match="scheduler_config.json"):
        DDIMScheduler.from_diffusers(tmp_path)
    ddim = DDIMScheduler()
    ddim.set_timesteps(10)
    x = torch.zeros(1, 2)
    with pytest.raises(GenlabError, match="not both"):
        ddim.step(x, 900, x, eta=1.0, generator=torch.Generator(), variance_noise=x)
    with pytest.raises(GenlabError, match="eta"):
        ddim.step(x, 900, x, eta=2.0)
