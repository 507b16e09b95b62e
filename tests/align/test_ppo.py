"""RLHF with PPO: GAE, the clipped losses and the KL penalty by hand; rollouts; a PPO run that
learns a toy reward; exact resume; the CLI on a reward model folder."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from genlab.align.policy import PolicyValue, answer_logprobs
from genlab.align.ppo import ppo
from genlab.align.ppo_config import PPOConfig
from genlab.align.ppo_losses import (
    KLController,
    RunningMoments,
    gae,
    kl_penalty,
    ppo_losses,
    token_rewards,
)
from genlab.align.reward import RewardModel, save_reward_model
from genlab.align.rollout import collect_rollout, make_queries
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.data.record_sources import PromptData
from genlab.data.records import read_prompts
from genlab.data.tinyworld import World, make_examples
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt, save_gpt
from genlab.nets.gpt import GPT, GPTConfig
from ppo_toy import HELDOUT, says_e, shuns_e, toy_settings


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["hello world. say yes or no, please."] * 20, vocab_size=256)


def tiny_gpt(tok: Tokenizer, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    return GPT(config)


@pytest.fixture
def sft(tmp_path, tok):
    """A GPT folder standing for the SFT run, and a prompt file."""
    save_gpt(tmp_path / "sft", tiny_gpt(tok), tok)
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"prompt": f"say yes {i}"}) for i in range(12)]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    lines += [json.dumps({"messages": chat})]  # an SFT record: its answer is dropped
    prompts.write_text("\n".join(lines) + "\n")
    return tmp_path / "sft", prompts


def toy_config(tmp_path, sft, **kw) -> PPOConfig:
    policy, _ = sft
    settings = {"rollout_size": 32, "sample_every": 4, **kw}
    return PPOConfig(**toy_settings(str(policy), str(tmp_path / "run"), **settings))


def run_toy(cfg: PPOConfig, sft, resume: bool = False) -> dict[str, float]:
    prompts = read_prompts(sft[1])
    return ppo(
        cfg, prompts, resume=resume, reward_fn=says_e, heldout_prompts=HELDOUT, gold_fn=shuns_e
    )


def rollout_log(run) -> list[dict]:
    """The per-iteration records (rollout statistics) of a PPO run's metrics.jsonl."""
    return [json.loads(line) for line in (run / "metrics.jsonl").open() if '"reward"' in line]


# The pieces, by hand ----------------------------------------------------------------------------


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, -1.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: deltas (0, 0, 0.5); A2 = 0.5, A1 = 0 + 0.5 * 0.5, A0 = 0 + 0.5 * 0.25
    # row 1 ends after two tokens: delta1 = -1 + 0 - 2 = -3; delta0 = 0.5 + 2 - 1 = 1.5;
    #   A1 = -3, A0 = 1.5 + 0.5 * (-3) = 0
    assert advantages.tolist() == [[0.125, 0.25, 0.5], [0.0, -3.0, 0.0]]
    assert returns.tolist() == [[0.625, 0.75, 1.0], [1.0, -1.0, 0.0]]
    # gamma discounts the next value and the next advantage
    adv, _ = gae(rewards[:1], values[:1], mask[:1], gamma=0.5, lam=1.0)
    # deltas: 0 + 0.25 - 0.5 = -0.25, -0.25, 1 - 0.5 = 0.5; A2 = .5, A1 = -.25 + .25, A0 = -.25
    assert adv.tolist() == [[-0.25, 0.0, 0.5]]


def test_clipped_losses_match_hand_computation():
    old = torch.zeros(1, 4)
    # ratios e^0.1 (inside [0.8, 1.2]) and e^0.5, e^-0.5, e^0.5 (outside)
    new = torch.tensor([[0.1, 0.5, -0.5, 0.5]])
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    values = torch.tensor([[0.0, 1.0, 0.1, 0.0]])
    old_values = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    policy_loss, value_loss, stats = ppo_losses(
        new, old, values, old_values, adv, returns, mask, clip_range=0.2, value_clip_range=0.2
    )
    r = [math.exp(0.1), math.exp(0.5), math.exp(-0.5), math.exp(0.5)]
    expected = [
        -r[0],  # inside the clip: the plain surrogate
        -1.2,  # A > 0, ratio above 1 + eps: clipped, no incentive to push further
        -r[2],  # A > 0, ratio below 1 - eps: the unclipped (pessimistic) term
        r[3],  # A < 0, ratio above: the unclipped term keeps the full penalty
    ]
    assert policy_loss.item() == pytest.approx(sum(expected) / 4, rel=1e-6)
    # values: the second moved by 1 from 0, clipped to 0.2 -> (0.2 - 2)^2 > (1 - 2)^2 is taken
    errors = [max(1.0, 1.0), max(1.0, 1.8**2), max(0.01, 0.01), 0.0]
    assert value_loss.item() == pytest.approx(0.5 * sum(errors) / 4, rel=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(0.75)
    assert stats["value_clip_frac"].item() == pytest.approx(0.25)
    k3 = [(x - 1) - math.log(x) for x in r]
    assert stats["approx_kl"].item() == pytest.approx(sum(k3) / 4, rel=1e-5)
    # masked positions count for nothing
    mask2 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    pl, _, _ = ppo_losses(new, old, values, old_values, adv, returns, mask2)
    assert pl.item() == pytest.approx(-r[0], rel=1e-6)


def test_kl_penalty_is_zero_when_policy_equals_reference(tok):
    policy = tiny_gpt(tok)
    reference = copy.deepcopy(policy)
    ids = torch.randint(0, tok.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    attention[0, :4] = 0  # a left-padded prompt
    with torch.no_grad():
        lp, entropy, _ = answer_logprobs(policy, ids, attention, start=6)
        ref, _, _ = answer_logprobs(reference, ids, attention, start=6)
    mask = torch.ones(3, 6)
    assert torch.equal(kl_penalty(lp, ref, mask), torch.zeros(3, 6))
    assert bool((entropy > 0).all()) and bool((lp < 0).all())
    # a different policy has a positive KL in expectation; its per-token estimate is not zero
    other = tiny_gpt(tok, seed=1)
    with torch.no_grad():
        lp2, _, _ = answer_logprobs(other, ids, attention, start=6)
    assert kl_penalty(lp2, ref, mask).abs().sum() > 0
    # the score is added at each answer's last token, the KL penalty everywhere
    kl = torch.full((2, 3), 0.5)
    rewards = token_rewards(torch.tensor([1.0, 2.0]), kl, 0.1, torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.05, 0.95], [1.95, 0.0, 0.0]]))


def test_adaptive_kl_and_running_moments():
    fixed = KLController(0.1)
    fixed.update(100.0, 64)
    assert fixed.value == 0.1
    ctl = KLController(0.1, target=6.0, horizon=100)
    ctl.update(12.0, 10)  # twice the target: error clipped at +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl.update(5.4, 10)  # 10% under: beta shrinks by 1%
    assert ctl.value == pytest.approx(0.1 * 1.02 * (1 - 0.1 * 10 / 100))

    moments = RunningMoments()
    batches = [torch.randn(7) * 3 + 1, torch.randn(5), torch.randn(1) + 4]
    for b in batches:
        moments.update(b)
    everything = torch.cat(batches).double()
    assert moments.mean == pytest.approx(everything.mean().item())
    assert moments.std == pytest.approx(everything.std(unbiased=False).item())
    assert moments.count == 13


def test_rollout_keeps_sampler_logprobs_and_recomputes_them(tok):
    policy = tiny_gpt(tok)
    reference = copy.deepcopy(policy)
    queries = make_queries(
        tok, ["say yes", "hello there, world", [{"role": "user", "content": "no"}]]
    )
    rollout = collect_rollout(
        PolicyValue.from_gpt(policy),
        reference,
        tok,
        queries,
        says_e,
        max_new_tokens=6,
        samples_per_prompt=2,
        seed=3,
    )
    assert len(rollout) == 6 and rollout.prompts[0] == rollout.prompts[1] == "say yes"
    assert rollout.prompts[4] == [{"role": "user", "content": "no"}]
    lengths = rollout.mask.sum(1).long()
    for i in range(6):
        q = queries[i // 2].ids
        assert rollout.ids[i, rollout.start - len(q) : rollout.start].tolist() == list(q)
        assert rollout.attention_mask[i].sum() == len(q) + lengths[i]
    # the full forward agrees with the sampler's cached, left-padded decoding
    assert torch.allclose(rollout.logprobs, rollout.sample_logprobs, atol=1e-5)
    assert torch.equal(rollout.ref_logprobs, rollout.logprobs)  # reference == policy
    assert torch.equal(rollout.values, torch.zeros_like(rollout.values))  # the head starts at 0
    assert rollout.scores.tolist() == says_e(None, rollout.responses)
    with pytest.raises(GenlabError, match="one finite score per answer"):
        collect_rollout(PolicyValue.from_gpt(policy), reference, tok, queries, lambda p, r: [1.0])


def test_prompts_come_from_the_policys_tinyworld_families_or_a_file(tmp_path, sft):
    policy, prompts = sft
    (policy / "tinyworld.json").write_text(json.dumps({"world_seed": 0, "families": ["max_list"]}))
    data = PromptData(prompts="tinyworld", prompts_per_family=5)
    assert data.resolve(policy) == (0, ("max_list",))
    pool, files = data.load(str(policy), seed=0)
    assert len(pool) == 5 and all(any(c.isdigit() for c in p) for p in pool)
    assert json.loads(files["tinyworld.json"]) == {"world_seed": 0, "families": ["max_list"]}
    from_file, kept = PromptData(prompts=str(prompts)).load(str(policy), seed=0)
    assert from_file[0] == "say yes 0" and from_file[-1] == [{"role": "user", "content": "hi"}]
    assert kept == {"tinyworld.json": (policy / "tinyworld.json").read_bytes()}
    # held out: the validation split, scored by the judge; a user's file, without a gold score
    held, gold = PromptData(heldout_per_family=3).heldout(str(policy), seed=0)
    examples = make_examples(World(0), "max_list", 3, "validation", 0)
    assert held == [e.prompt for e in examples] and not set(held) & set(pool)
    right = gold(held, [f"The answer is {e.answer}." for e in examples])
    assert all(0 <= g <= 1 for g in right) and sum(right) > sum(gold(held, ["ugh"] * 3))
    assert PromptData(prompts=str(prompts)).heldout(str(policy), 0) == ([], None)
    listed = PromptData(prompts=str(prompts), heldout_prompts=str(prompts))
    assert listed.heldout(str(policy), 0) == (from_file, None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt here"}\n')
    with pytest.raises(GenlabError, match=r"bad.jsonl:1 holds neither"):
        read_prompts(bad)


# The run ----------------------------------------------------------------------------------------


def test_ppo_raises_a_toy_reward(tmp_path, sft, tok):
    cfg = toy_config(tmp_path, sft)
    metrics = run_toy(cfg, sft)
    run = tmp_path / "run"
    log = rollout_log(run)
    steps = cfg.steps_per_iteration  # 4 epochs x 4 minibatches
    assert [r["iteration"] for r in log] == list(range(1, 9))
    assert [r["step"] for r in log] == [steps * i for i in range(1, 9)]
    first, last = log[0]["reward"], sum(r["reward"] for r in log[-3:]) / 3
    assert first < 0.2 and last > first + 0.4  # it learned to say e
    assert metrics["reward"] == log[-1]["reward"] and metrics["step"] == 8
    for key in ("kl", "entropy", "value_mean"):
        assert all(math.isfinite(r[key]) for r in log), key
    updates = [json.loads(line) for line in (run / "metrics.jsonl").open() if "clip_frac" in line]
    assert len(updates) == 8
    for key in ("clip_frac", "value_loss", "approx_kl", "policy_loss", "grad_norm"):
        assert all(math.isfinite(r[key]) for r in updates), key
    assert log[-1]["entropy"] < log[0]["entropy"]  # the policy narrows onto the rewarded tokens
    assert log[-1]["kl"] > 0  # and drifts away from the reference
    assert log[0]["logprob_gap"] < 1e-4
    samples = [json.loads(line) for line in (run / "samples.jsonl").open()]
    assert sorted({s["step"] for s in samples}) == [1, 4, 8]
    assert {"prompt", "response", "score", "kl"} <= set(samples[0])
    # one model of kind ppo holds the policy and its value head; generate/chat open the policy
    saved = load_tensors(run / "model.safetensors")
    assert "value_head.proj.weight" in saved and "policy.wte.weight" in saved
    assert json.loads((run / "config.json").read_text())["kind"] == "ppo"
    model, loaded_tok = load_gpt(run)
    assert loaded_tok.vocab_size == tok.vocab_size
    start, _ = load_gpt(sft[0])
    assert not torch.equal(model.wte.weight, start.wte.weight)


def test_kl_penalty_holds_the_policy_near_the_reference(tmp_path, sft):
    free = run_toy(toy_config(tmp_path / "a", sft), sft)
    leashed = run_toy(toy_config(tmp_path / "b", sft, kl_coef=1.0), sft)
    assert leashed["kl"] < free["kl"]


def test_resume_continues_the_run_exactly(tmp_path, sft):
    settings = dict(adaptive_kl=True, kl_coef=0.05, checkpoint_every=1, eval_every=1)
    run_toy(toy_config(tmp_path / "a", sft, iterations=4, **settings), sft)
    part = toy_config(tmp_path / "b", sft, iterations=2, **settings)
    run_toy(part, sft)
    with pytest.raises(GenlabError, match="resume it"):
        run_toy(part, sft)
    with pytest.raises(GenlabError, match="cannot resume"):
        run_toy(toy_config(tmp_path / "b", sft, iterations=4, seed=1, **settings), sft, True)
    with pytest.raises(GenlabError, match="cannot resume"):
        run_toy(toy_config(tmp_path / "b", sft, iterations=4, ppo_epochs=2, **settings), sft, True)
    run_toy(toy_config(tmp_path / "b", sft, iterations=4, **settings), sft, True)

    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for name in ("model.safetensors", "optimizer.safetensors"):
        wa, wb = load_tensors(a / name), load_tensors(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    drop = ("time_s", "samples_per_s", "tokens_per_s")
    la = [json.loads(x) for x in (a / "metrics.jsonl").open()]
    lb = [json.loads(x) for x in (b / "metrics.jsonl").open()]
    assert [r["step"] for r in lb] == [r["step"] for r in la]
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == [
        {k: v for k, v in r.items() if k not in drop} for r in lb
    ]
    assert rollout_log(b)[-1]["kl_coef"] != 0.05  # the adaptive coefficient moved, restored
    assert [r["iteration"] for r in lb if "heldout_kl" in r] == [0, 1, 2, 3, 4]
    for name in ("heldout.jsonl", "guard.json"):
        assert (a / name).read_text() == (b / name).read_text(), name
    state = json.loads((b / "state.json").read_text())
    assert state["callbacks"]["ppo"]["reward_moments"]["count"] == 4 * 32
    assert state["callbacks"]["ppo_monitor"]["best"]["iteration"] >= 0


def test_cli_runs_a_tiny_job_against_a_reward_model(tmp_path, sft, tok, capsys):
    from genlab.cli import main

    policy, prompts = sft
    gpt, _ = load_gpt(policy)
    torch.manual_seed(0)
    save_reward_model(tmp_path / "rm", RewardModel.from_gpt(gpt), tok)
    out = tmp_path / "ppo"
    args = [
        "ppo",
        "--policy", str(policy),
        "--reward", str(tmp_path / "rm"),
        "--out", str(out),
        "--prompts", str(prompts),
        "--iterations", "2",
        "--rollout-size", "8",
        "--minibatch-size", "4",
        "--ppo-epochs", "2",
        "--max-new-tokens", "6",
        "--adaptive-kl",
        "--device", "cpu",
        "--seed", "3",
    ]  # fmt: skip
    main(args)
    printed = capsys.readouterr().out
    assert "done: 2 iterations" in printed and f"genlab chat {out}" in printed
    log = rollout_log(out)
    assert len(log) == 2 and all(math.isfinite(r["reward"]) for r in log)
    assert json.loads((out / "config.json").read_text())["kind"] == "ppo"
    assert json.loads((out / "ppo.json").read_text())["adaptive_kl"] is True
    load_gpt(out)
    with pytest.raises(SystemExit) as e:
        main([*args[:-2], "--seed", "4", "--resume"])
    assert e.value.code == 2 and "cannot resume" in capsys.readouterr().err
