"""Noise schedules, the forward process and the DDPM/DDIM samplers, checked against diffusers."""

import diffusers
import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.samplers import (
    DDIMScheduler,
    DDPMScheduler,
    inference_timesteps,
    sample_loop,
)
from genlab.methods.diffusion.schedule import NoiseSchedule, make_betas

DIFFUSERS_SCHEDULE = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "scaled_linear": "scaled_linear",
}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def ref_ddpm(schedule="linear", prediction="eps", **kw):
    return diffusers.DDPMScheduler(
        beta_schedule=DIFFUSERS_SCHEDULE[schedule],
        prediction_type=DIFFUSERS_PREDICTION[prediction],
        **kw,
    )


def ref_ddim(schedule="linear", prediction="eps", **kw):
    return diffusers.DDIMScheduler(
        beta_schedule=DIFFUSERS_SCHEDULE[schedule],
        prediction_type=DIFFUSERS_PREDICTION[prediction],
        **kw,
    )


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def dummy_model(x, t):
    return 0.1 * x + 0.01 * t


@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled_linear"])
def test_betas_match_diffusers(schedule):
    ref = diffusers.DDPMScheduler(
        beta_schedule=DIFFUSERS_SCHEDULE[schedule], beta_start=0.00085, beta_end=0.012
    )
    ours = make_betas(schedule, 1000, 0.00085, 0.012)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref.betas, rtol=0, atol=0)


def test_linear_and_cosine_schedules_have_their_published_shape():
    linear = NoiseSchedule("linear")
    assert linear.betas[0].item() == pytest.approx(1e-4)
    assert linear.betas[-1].item() == pytest.approx(0.02)
    cosine = NoiseSchedule("cosine")
    # abar follows cos^2((t/T + s)/(1 + s) pi/2): at the midpoint it is about one half
    assert cosine.alphas_cumprod[499].item() == pytest.approx(0.5, abs=0.01)
    assert cosine.betas.max().item() == pytest.approx(0.999)  # the clip on the last step
    for s in (linear, cosine):
        assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])  # noise only grows


@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled_linear"])
def test_add_noise_velocity_and_targets_match_diffusers(schedule):
    ref = ref_ddpm(schedule)
    ours = NoiseSchedule(schedule)
    x0, noise = randn(6, 3, 8, 8, seed=1), randn(6, 3, 8, 8, seed=2)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(
        ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=1e-5
    )
    v = ours.get_velocity(x0, noise, t)
    torch.testing.assert_close(v, ref.get_velocity(x0, noise, t), rtol=0, atol=1e-5)
    assert ours.training_target(x0, noise, t, "eps") is noise
    assert ours.training_target(x0, noise, t, "x0") is x0
    torch.testing.assert_close(ours.training_target(x0, noise, t, "v"), v)
    # a scalar step applies to the whole batch
    torch.testing.assert_close(
        ours.add_noise(x0, noise, 300), ref.add_noise(x0, noise, torch.full((6,), 300))
    )


def test_v_target_recovers_image_and_noise():
    s = NoiseSchedule("cosine")
    x0, noise = randn(4, 2, 4, 4, seed=3), randn(4, 2, 4, 4, seed=4)
    t = torch.tensor([10, 200, 600, 900])
    xt, v = s.add_noise(x0, noise, t), s.get_velocity(x0, noise, t)
    a = s.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    b = (1 - s.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(a * xt - b * v, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(b * xt + a * v, noise, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 7, 10, 50, 333, 1000])
def test_inference_timesteps_match_diffusers(spacing, n):
    ref = diffusers.DDIMScheduler(timestep_spacing=spacing)
    ref.set_timesteps(n)
    np.testing.assert_array_equal(inference_timesteps(1000, n, spacing), ref.timesteps.numpy())


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_ddpm_step_matches_diffusers(variance_type, prediction, clip_sample):
    kw = {"variance_type": variance_type, "clip_sample": clip_sample}
    ref = ref_ddpm("linear", prediction, **kw)
    ours = DDPMScheduler("linear", prediction=prediction, **kw)
    sample, out = randn(2, 3, 4, 4, seed=5), randn(2, 3, 4, 4, seed=6)
    for t in (999, 500, 1, 0):
        g_ref, g_ours = torch.Generator().manual_seed(t), torch.Generator().manual_seed(t)
        a = ref.step(out, t, sample, generator=g_ref)
        b = ours.step(out, t, sample, generator=g_ours)
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            b.pred_original_sample, a.pred_original_sample, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddpm_with_fewer_steps_matches_diffusers(spacing):
    ref = ref_ddpm("cosine", "v", timestep_spacing=spacing)
    ours = DDPMScheduler("cosine", prediction="v", timestep_spacing=spacing)
    ref.set_timesteps(20)
    ours.set_timesteps(20)
    assert torch.equal(ours.timesteps, ref.timesteps)
    sample, out = randn(2, 3, 4, 4, seed=7), randn(2, 3, 4, 4, seed=8)
    for t in ours.timesteps[[0, 9, -1]]:
        a = ref.step(out, t, sample, generator=torch.Generator().manual_seed(1)).prev_sample
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(1)).prev_sample
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("n", [7, 10, 50])
def test_ddim_step_matches_diffusers(spacing, eta, n):
    ref = ref_ddim("linear", "eps", timestep_spacing=spacing)
    ours = DDIMScheduler("linear", eta=eta, timestep_spacing=spacing)
    ref.set_timesteps(n)
    ours.set_timesteps(n)
    assert torch.equal(ours.timesteps, ref.timesteps)
    sample, out = randn(2, 3, 4, 4, seed=9), randn(2, 3, 4, 4, seed=10)
    for t in ours.timesteps[[0, n // 2, -1]]:
        g_ref, g_ours = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a = ref.step(out, t, sample, eta=eta, generator=g_ref)
        b = ours.step(out, t, sample, generator=g_ours)
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            b.pred_original_sample, a.pred_original_sample, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled_linear"])
def test_ddim_predictions_and_final_alpha_match_diffusers(prediction, set_alpha_to_one, schedule):
    kw = {"set_alpha_to_one": set_alpha_to_one, "clip_sample": False}
    ref = ref_ddim(schedule, prediction, **kw)
    ours = DDIMScheduler(schedule, prediction=prediction, eta=1.0, **kw)
    ref.set_timesteps(25)
    ours.set_timesteps(25)
    sample, out = randn(2, 3, 4, 4, seed=11), randn(2, 3, 4, 4, seed=12)
    for t in ours.timesteps[[0, 12, -1]]:  # the last step uses the final alpha
        a = ref.step(out, t, sample, eta=1.0, generator=torch.Generator().manual_seed(5))
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_full_ddpm_loop_matches_diffusers(variance_type):
    ref = ref_ddpm("linear", "eps", variance_type=variance_type)
    ours = DDPMScheduler("linear", variance_type=variance_type)
    assert len(ours.timesteps) == 1000
    x = randn(1, 2, 4, 4, seed=13)
    g = torch.Generator().manual_seed(0)
    expected = x
    for t in ref.timesteps:
        expected = ref.step(dummy_model(expected, t), t, expected, generator=g).prev_sample
    got = sample_loop(dummy_model, ours, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_full_ddim_loop_matches_diffusers(eta, prediction):
    ref = ref_ddim("cosine", prediction)
    ours = DDIMScheduler("cosine", prediction=prediction, eta=eta)
    ref.set_timesteps(50)
    ours.set_timesteps(50)
    x = randn(1, 2, 4, 4, seed=14)
    g = torch.Generator().manual_seed(0)
    expected = x
    for t in ref.timesteps:
        out = dummy_model(expected, t)
        expected = ref.step(out, t, expected, eta=eta, generator=g).prev_sample
    steps = []
    got = sample_loop(
        dummy_model,
        ours,
        x,
        generator=torch.Generator().manual_seed(0),
        callback=lambda i, t, out: steps.append((i, int(t))),
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert steps == list(enumerate(ours.timesteps.tolist()))


def _draws(step, shape):
    """How many randn(shape) draws a call to ``step(generator)`` consumed."""
    g = torch.Generator().manual_seed(0)
    step(g)
    for n in range(3):
        probe = torch.Generator().manual_seed(0)
        for _ in range(n):
            torch.randn(shape, generator=probe)
        if torch.equal(probe.get_state(), g.get_state()):
            return n
    raise AssertionError("the step drew something else than randn of the sample's shape")


def test_each_stochastic_step_draws_one_randn_of_the_sample_shape():
    shape = (2, 3, 4, 4)
    sample, out = randn(*shape, seed=15), randn(*shape, seed=16)
    ddpm = DDPMScheduler()
    assert _draws(lambda g: ddpm.step(out, 10, sample, generator=g), shape) == 1
    assert _draws(lambda g: ddpm.step(out, 0, sample, generator=g), shape) == 0
    for eta, n in ((0.0, 0), (0.3, 1)):
        ddim = DDIMScheduler(eta=eta)
        ddim.set_timesteps(10)
        assert _draws(lambda g, d=ddim: d.step(out, 900, sample, generator=g), shape) == n


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize(
    "make",
    [
        lambda p: DDPMScheduler("cosine", prediction=p),
        lambda p: DDIMScheduler("linear", prediction=p, eta=0.0),
        lambda p: DDIMScheduler("linear", prediction=p, eta=1.0, timestep_spacing="trailing"),
    ],
)
def test_an_oracle_denoiser_leads_back_to_the_clean_image(prediction, make):
    """With a network that knows x0, every sampler ends exactly on x0, whatever it predicts."""
    scheduler = make(prediction)
    scheduler.set_timesteps(20)
    x0 = randn(2, 1, 4, 4, seed=17).clamp(-1, 1)

    def oracle(xt, t):
        abar = scheduler.alphas_cumprod[int(t)]
        eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
        return scheduler.training_target(x0, eps, t)

    noise = randn(2, 1, 4, 4, seed=18)
    out = sample_loop(oracle, scheduler, noise, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(GenlabError, match="noise schedule"):
        NoiseSchedule("sigmoid")
    with pytest.raises(GenlabError, match="prediction type"):
        DDPMScheduler(prediction="noise")
    with pytest.raises(GenlabError, match="eta"):
        DDIMScheduler(eta=1.5)
    with pytest.raises(GenlabError, match="set_timesteps"):
        DDIMScheduler().step(torch.zeros(1), 999, torch.zeros(1))
    with pytest.raises(GenlabError, match="sampling steps"):
        DDIMScheduler().set_timesteps(1001)
    with pytest.raises(GenlabError, match="steps_offset"):
        DDPMScheduler(steps_offset=1)
    ddpm = DDPMScheduler()
    ddpm.set_timesteps(10)
    with pytest.raises(GenlabError, match="not one of"):
        ddpm.step(torch.zeros(1), 999, torch.zeros(1))
    with pytest.raises(GenlabError, match="timesteps must lie"):
        NoiseSchedule().add_noise(torch.zeros(2), torch.zeros(2), torch.tensor([0, 1000]))


def test_snr_matches_diffusers_compute_snr():
    from diffusers.training_utils import compute_snr

    t = torch.tensor([0, 10, 250, 500, 999])
    for schedule in ("linear", "cosine"):
        ours = NoiseSchedule(schedule).snr(t)
        torch.testing.assert_close(ours, compute_snr(ref_ddpm(schedule), t), rtol=1e-5, atol=0)


@pytest.mark.parametrize("gamma,floor", [(1.0, 0.0), (5.0, 0.0), (5.0, 0.05)])
def test_min_snr_weight_is_the_same_x0_weighting_in_every_parametrisation(gamma, floor):
    """Hang et al.'s weight makes each parametrisation's weighted error equal to
    min(SNR, gamma) times the squared error of the implied x_0 estimate (clamp(SNR, floor,
    gamma) with a floor, which lifts only the noisiest steps)."""
    t = torch.tensor([5, 100, 400, 700, 990])
    x0, noise = randn(5, 3, 4, 4, seed=1), randn(5, 3, 4, 4, seed=2)
    x0_hat = x0 + 0.1 * randn(5, 3, 4, 4, seed=3)  # an estimate of x_0 ...
    sched = NoiseSchedule("linear")
    x_t = sched.add_noise(x0, noise, t)
    a, s = sched._coefficients(x_t, t)
    eps_hat = (x_t - a * x0_hat) / s  # ... and the noise and velocity it implies
    outputs = {"x0": x0_hat, "eps": eps_hat, "v": a * eps_hat - s * x0_hat}
    snr = sched.snr(t)
    expected = snr.clamp(min=floor, max=gamma) * (x0_hat - x0).pow(2).flatten(1).sum(1)
    for prediction, out in outputs.items():
        err = (out - sched.training_target(x0, noise, t, prediction)).pow(2).flatten(1).sum(1)
        weighted = sched.min_snr_weight(t, gamma, prediction, floor=floor) * err
        torch.testing.assert_close(weighted, expected, rtol=1e-3, atol=1e-6)
    if floor:  # only the steps noisier than the floor gain weight
        lifted = sched.min_snr_weight(t, gamma, "v", floor) > sched.min_snr_weight(t, gamma, "v")
        assert lifted.tolist() == (snr < floor).tolist()


def test_ddim_can_rederive_the_noise_from_the_clipped_image():
    sched = DDIMScheduler(prediction="eps", clip_sample=True, rederive_noise=True)
    sched.set_timesteps(10)
    t = int(sched.timesteps[0])
    x, out = randn(1, 3, 4, 4), 5 * randn(1, 3, 4, 4, seed=1)  # x_0 estimate far outside [-1, 1]
    res = sched.step(out, t, x)
    x0 = res.pred_original_sample
    assert x0.abs().max() <= 1
    abar, abar_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[t - 100]
    eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise that agrees with the clipped x_0
    torch.testing.assert_close(
        res.prev_sample, abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    )
    plain = DDIMScheduler(prediction="eps", clip_sample=True)  # diffusers: the unclipped noise
    plain.set_timesteps(10)
    assert not torch.allclose(plain.step(out, t, x).prev_sample, res.prev_sample)
