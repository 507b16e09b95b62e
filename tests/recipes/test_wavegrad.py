"""``genlab audio`` and ``genlab experiment wavegrad-steps`` end to end on a tiny WaveGrad:
training on synthetic audio and on a folder, vocoding a file, the schedule search, the page;
bad input is one line naming the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data.audio.io import read_audio, write_audio
from genlab.data.audio.synth import SynthConfig, synth_speech
from genlab.methods.diffusion.vocoder import VocoderBatchSource, load_vocoder, read_schedules
from genlab.recipes.wavegrad import AudioTrainConfig, evaluate_schedule

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # pystoi warns (and returns 1e-5) on clips shorter than its 384 ms analysis window
    pytest.mark.filterwarnings("ignore:Not enough STFT frames"),
]
RATE = 8000
# a hop of 16 samples (factors 4, 4), 16 mels, clips of 0.128 s (64 frames)
NET = [
    "--sample-rate", str(RATE), "--n-mels", "16", "--n-fft", "128", "--factors", "4,4",
    "--mel-channels", "16", "--up-channels", "16,8", "--down-channels", "4,8",
]  # fmt: skip
TINY = [
    *NET, "--n-clips", "6", "--clip-seconds", "0.128", "--n-val", "2", "--segment-frames", "8",
    "--sample-steps", "3", "--max-steps", "6", "--batch-size", "4", "--eval-every", "3",
    "--checkpoint-every", "0", "--eval-batches", "1", "--no-progress", "--no-tensorboard",
    "--no-plots", "--device", "cpu", "--seed", "1",
]  # fmt: skip


def one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wavegrad") / "run"
    main(["audio", "train", "--out", str(out), *TINY])
    return out


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    audio = synth_speech(0.301, 5, SynthConfig(sample_rate=RATE))  # 2408: not whole frames
    return write_audio(tmp_path / "in.wav", audio, RATE)


def test_training_writes_a_run_the_registry_opens(run: Path) -> None:
    loaded = genlab.load(run)
    assert loaded.kind == "wavegrad"
    assert loaded.config.mel.sample_rate == RATE and loaded.config.net.hop_length == 16
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6 and "eval_loss" in {k for r in records for k in r}
    for name in ("clip0.png", "clip0_reference.wav", "clip0_wavegrad3.wav", "clip1.png"):
        assert (run / "samples" / name).is_file()
    reference = read_audio(run / "samples" / "clip0_reference.wav", RATE)
    assert len(read_audio(run / "samples" / "clip0_wavegrad3.wav", RATE)) == len(reference)


def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    """40 steps of the recipe's loss and network on one repeated batch bring the loss well
    below where it starts."""
    from genlab.methods.diffusion.noise_level import NoiseLevelLoss
    from genlab.methods.diffusion.vocoder import Vocoder

    cfg = AudioTrainConfig(
        sample_rate=RATE, n_mels=16, n_fft=128, factors=(4, 4), mel_channels=16,
        up_channels=(16, 8), down_channels=(4, 8),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Vocoder(cfg.vocoder_config())
    clips = [torch.from_numpy(synth_speech(0.128, [7, i], SynthConfig(RATE))) for i in range(4)]
    batch = VocoderBatchSource(clips, model, 8, seed=0).get_batch(0, 0, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = NoiseLevelLoss()(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_batches_are_a_function_of_seed_and_step(run: Path) -> None:
    model = load_vocoder(run)
    clips = [torch.from_numpy(synth_speech(0.128, [3, i], SynthConfig(RATE))) for i in range(3)]
    source = VocoderBatchSource(clips, model, 8, seed=4)
    whole = source.get_batch(5, 0, 4, 4)
    halves = [source.get_batch(5, 0, 2, 4), source.get_batch(5, 2, 4, 4)]
    for key, value in whole.items():
        assert torch.equal(value, torch.cat([h[key] for h in halves])), key
    assert whole["sample"].shape == (4, 128) and whole["mel"].shape == (4, 16, 8)
    assert not torch.equal(whole["noise"], source.get_batch(6, 0, 4, 4)["noise"])
    # a crop's frames are the whole clip's frames at that place
    audio, mel = whole["sample"][0], whole["mel"][0]
    for c in source.clips:
        for frame in range(len(c) // 16 - 8 + 1):
            if torch.equal(c[frame * 16 :][:128], audio):
                assert torch.equal(model.features(c)[0][:, frame : frame + 8], mel)
                return
    raise AssertionError("the crop is not a piece of any clip")


def test_vocode_writes_audio_and_spectrograms_reproducibly(
    run: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / f"{name}.wav"
        main(["audio", "vocode", str(run), "--wav", str(clip), "--out", str(out), "--steps",
              "3", "--seed", seed, "--device", "cpu"])  # fmt: skip
        assert "log-spectral distance" in capsys.readouterr().out
        assert out.with_suffix(".png").is_file()
        outs.append(read_audio(out, RATE))
    assert len(outs[0]) == len(read_audio(clip, RATE))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_the_search_keeps_the_best_schedule_for_vocode(
    run: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["audio", "search", str(run), "--steps", "2", "--grid", "0.01,0.3,0.7",
          "--n-clips", "1", "--device", "cpu"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("LSD")]) == 3  # C(3, 2) schedules
    betas = read_schedules(run)[2]
    assert len(betas) == 2 and betas[0] < betas[1] and set(betas) <= {0.01, 0.3, 0.7}
    assert f"{betas[0]:g}, {betas[1]:g}" in lines[0]  # the best is listed first and kept
    out = tmp_path / "searched.wav"
    main(["audio", "vocode", str(run), "--wav", str(clip), "--out", str(out), "--steps", "2",
          "--schedule", "searched", "--device", "cpu"])  # fmt: skip
    assert out.is_file()
    err = one_line_error(
        ["audio", "vocode", str(run), "--wav", str(clip), "--out", str(out), "--steps", "5",
         "--schedule", "searched"], capsys,
    )  # fmt: skip
    assert "no searched 5-step schedule; run: genlab audio search" in err


def test_sample_draws_and_vocodes_an_utterance(run: Path, tmp_path: Path) -> None:
    main(["audio", "sample", str(run), "--out", str(tmp_path), "--seconds", "0.2", "--steps",
          "2", "--schedule", "linear", "--device", "cpu"])  # fmt: skip
    for name in ("reference.wav", "wavegrad.wav", "wavegrad.png"):
        assert (tmp_path / name).is_file()


def test_the_oracle_scores_zero_and_noise_scores_badly(run: Path) -> None:
    """evaluate_schedule scores what the sampler returns against the clips: a perfect answer
    (the reference itself, through the metrics) is 0 dB, the untrained run far from it."""
    from genlab.metrics.audio import log_spectral_distance

    model = load_vocoder(run)
    clips = torch.stack(
        [torch.from_numpy(synth_speech(0.128, [9, i], SynthConfig(RATE))) for i in range(2)]
    )
    assert log_spectral_distance(clips, clips, model.config.mel).abs().max() == 0
    result = evaluate_schedule(model, clips, model.scheduler(2), seed=0)
    assert len(result["lsd"]) == 2 and min(result["lsd"]) > 1.0
    assert result["audio"].shape == clips.shape and result["rtf"] > 0


def test_training_on_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "audio"
    for i in range(3):
        write_audio(folder / f"{i}.flac", synth_speech(0.2, [1, i], SynthConfig(RATE)), RATE)
    main(["audio", "train", "--out", str(tmp_path / "run"), *TINY, "--data", str(folder)])
    assert (tmp_path / "run" / "model.safetensors").is_file()
    (folder / "1.flac").unlink()
    (folder / "2.flac").unlink()
    err = one_line_error(
        ["audio", "train", "--out", str(tmp_path / "r2"), *TINY, "--data", str(folder)], capsys
    )
    assert "holds one audio file; give two or more" in err


def test_bad_audio_input_is_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "clip.wav"
    text.write_text("not audio")
    out = str(tmp_path / "out.wav")
    cases = [
        (["audio", "vocode", str(run), "--wav", str(text), "--out", out], "clip.wav"),
        (["audio", "vocode", str(run), "--wav", str(tmp_path / "gone.wav"), "--out", out],
         "gone.wav"),
        (["audio", "vocode", str(run), "--wav", str(text), "--out", out, "--schedule", "cubic"],
         "unknown schedule 'cubic'"),
        (["audio", "vocode", str(tmp_path), "--wav", str(text), "--out", out],
         "is not a genlab checkpoint"),
        (["audio", "train", "--out", out, *TINY, "--data", str(tmp_path / "none")],
         "give 'synth' or a folder"),
        (["audio", "train", "--out", out, *TINY, "--up-channels", "8"], "as many up_channels"),
    ]  # fmt: skip
    for args, message in cases:
        assert message in one_line_error(args, capsys)


def test_the_experiment_writes_its_page(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    main(["experiment", "wavegrad-steps", "--run", str(run), "--steps", "8,2",
          "--search-steps", "2", "--grid", "0.01,0.3,0.7", "--n-val", "1", "--n-test", "2",
          "--clip-seconds", "0.128", "--rtf-repeats", "1", "--griffin-lim-iterations", "4",
          "--out-dir", str(out)])  # fmt: skip
    results = json.loads((out / "wavegrad_steps.json").read_text())
    rows = results["rows"]
    assert [(r["schedule"], r["steps"]) for r in rows] == [
        ("linear", 8), ("linear", 2), ("searched", 2), ("griffin-lim", 4)
    ]  # fmt: skip
    assert rows[0]["lsd_ratio"]["mean"] == pytest.approx(1.0)
    assert all(len(r["lsd"]) == 2 and r["rtf_batch1"] > 0 for r in rows)
    assert results["search"]["candidates"] == 3
    assert read_schedules(run)[2] == results["search"]["best"][0]["betas"]
    page = (out / "wavegrad_steps.md").read_text()
    assert "| searched | 2 |" in page and "genlab experiment wavegrad-steps" in page
    for name in ("wavegrad_steps.png", "wavegrad_steps_spectrograms.png"):
        assert (out / name).stat().st_size > 1000
    assert sorted(p.name for p in (out / "wavegrad_steps_audio").iterdir()) == [
        "griffin-lim4.wav", "linear2.wav", "linear8.wav", "reference.wav", "searched2.wav"
    ]  # fmt: skip


def test_a_fresh_process_opens_the_run_with_genlab_load(run: Path) -> None:
    """genlab.load imports the kind's module itself: nothing else need be imported first."""
    code = f"import genlab; print(genlab.load({str(run)!r}).kind)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "wavegrad", done.stderr
