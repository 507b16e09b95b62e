"""The trained baseline detector: logistic regression over hashed token uni- and bigrams separates
two token distributions, fits what scikit-learn fits on the same features, and its folder opens
through ``genlab.load`` with the same scores."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.core.errors import GenlabError
from genlab.research.ngram_detector import (
    NgramDetector,
    NgramDetectorConfig,
    load_ngram_detector,
    save_ngram_detector,
    train_ngram_detector,
)
from references import require

VOCAB = 64


def texts(n: int, machine: bool, seed: int) -> list[list[int]]:
    """'Human' texts draw tokens uniformly; 'machine' texts favour a few bigrams (each even token
    followed by the next odd one) as a model's repetitive text does."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(10, 40, (1,), generator=g))
        tokens = torch.randint(VOCAB, (length,), generator=g)
        if machine:
            follow = torch.rand(length, generator=g) < 0.5
            for t in range(1, length):
                if follow[t] and tokens[t - 1] % 2 == 0:
                    tokens[t] = tokens[t - 1] + 1
        out.append(tokens.tolist())
    return out


@pytest.fixture(scope="module")
def data() -> dict[str, list[list[int]]]:
    return {
        "human": texts(200, False, 0),
        "machine": texts(200, True, 1),
        "human_test": texts(100, False, 2),
        "machine_test": texts(100, True, 3),
    }


@pytest.fixture(scope="module")
def detector(data) -> NgramDetector:
    return train_ngram_detector(data["human"], data["machine"], NgramDetectorConfig(), seed=0)


def test_it_separates_two_distributions_it_did_not_see(detector, data):
    human, machine = detector.score(data["human_test"]), detector.score(data["machine_test"])
    assert human.shape == (100,) and machine.shape == (100,)
    # AUROC: the share of (machine, human) pairs ordered right
    auc = (machine[:, None] > human[None, :]).float().mean().item()
    assert auc > 0.95
    assert ((machine > 0).float().mean() + (human < 0).float().mean()) / 2 > 0.85  # accuracy


def test_unigrams_alone_cannot_see_a_bigram_difference(data):
    """The two distributions differ in bigrams; their unigram shares barely differ."""
    cfg = NgramDetectorConfig(bigrams=False)
    uni = train_ngram_detector(data["human"], data["machine"], cfg, seed=0)
    human, machine = uni.score(data["human_test"]), uni.score(data["machine_test"])
    auc = (machine[:, None] > human[None, :]).float().mean().item()
    assert auc < 0.8


def test_save_and_load_give_the_same_scores(detector, data, tmp_path):
    save_ngram_detector(tmp_path / "det", detector)
    loaded = genlab.load(tmp_path / "det")
    assert loaded.kind == "ngram-detector" and isinstance(loaded.model, NgramDetector)
    assert loaded.config == detector.config
    probe = data["human_test"][:10] + data["machine_test"][:10] + [[]]
    assert torch.equal(loaded.model.score(probe), detector.score(probe))
    assert torch.equal(load_ngram_detector(tmp_path / "det").idf, detector.idf)


def test_the_fit_is_scikit_learns_logistic_regression(data):
    sklearn_lm = require("sklearn.linear_model")
    cfg = NgramDetectorConfig(n_features=256, l2=1e-2, max_iter=500)
    det = train_ngram_detector(data["human"], data["machine"], cfg, seed=0)
    x = det.features(data["human"] + data["machine"]).double().numpy()
    y = [0] * len(data["human"]) + [1] * len(data["machine"])
    # scikit-learn minimises |w|^2 / 2 + C * sum(log-loss); ours (l2 / 2) |w|^2 + mean(log-loss)
    ref = sklearn_lm.LogisticRegression(C=1.0 / (cfg.l2 * len(y)), tol=1e-10, max_iter=10_000)
    ref.fit(x, y)
    w = det.linear.weight.detach().double().flatten()
    assert torch.allclose(w, torch.from_numpy(ref.coef_[0]), atol=2e-3)
    assert det.linear.bias.item() == pytest.approx(ref.intercept_[0], abs=2e-3)
    probe = data["human_test"] + data["machine_test"]
    ours = torch.sigmoid(det.score(probe)).double()
    theirs = torch.from_numpy(ref.predict_proba(det.features(probe).double().numpy())[:, 1])
    assert (ours - theirs).abs().max().item() < 1e-3


def test_another_seed_reaches_the_same_fit(data):
    cfg = NgramDetectorConfig(n_features=256)
    a = train_ngram_detector(data["human"], data["machine"], cfg, seed=0)
    b = train_ngram_detector(data["human"], data["machine"], cfg, seed=1)
    assert torch.allclose(a.score(data["human_test"]), b.score(data["human_test"]), atol=1e-3)


def test_features_count_hashed_unigrams_and_bigrams():
    det = NgramDetector(NgramDetectorConfig(n_features=1 << 16))
    counts = det.counts([[5, 6, 5, 6], [], [7]])
    assert counts.shape == (3, 1 << 16)
    assert counts.sum(1).tolist() == [4 + 3, 0, 1]  # unigrams + bigrams
    assert sorted(counts[0][counts[0] > 0].tolist()) == [1, 2, 2, 2]  # 5, 6, (5,6) twice; (6,5)
    assert torch.allclose(det.features([[5, 6, 5, 6]]).norm(), torch.tensor(1.0))


@pytest.mark.parametrize(
    "human, machine, cfg, says",
    [
        ([], [[1, 2]], None, "both"),
        ([[1, 2]], [], None, "both"),
        ([[1, -2]], [[1, 2]], None, ">= 0"),
        ([[1]], [[2]], {"n_features": 0}, "n_features"),
        ([[1]], [[2]], {"l2": -1.0}, "l2"),
    ],
)
def test_bad_input_is_a_one_line_error(human, machine, cfg, says):
    with pytest.raises(GenlabError, match=says):
        train_ngram_detector(human, machine, cfg and NgramDetectorConfig(**cfg), seed=0)
