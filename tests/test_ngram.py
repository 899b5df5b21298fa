"""Tests of the interpolated modified Kneser-Ney character baseline."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from deepngrams.lm.ngram import (
    best_baseline,
    check_distributions,
    distribution,
    estimate_discounts,
    fit_kneser_ney,
    log_perplexity,
    prob,
)

WORDS = "the cat sat on a mat and then it ran off to see the big dog, who was not at home".split()


def _sample_text(n_words: int, seed: int) -> str:
    """Word salad with punctuation, newlines and tabs: enough repeats for counts of 1..4+."""
    rng = random.Random(seed)
    parts = []
    for _ in range(n_words):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice([" ", " ", " ", "\n", "\t", ". "]))
    return "".join(parts)


TRAIN = _sample_text(400, seed=0)
EVAL = _sample_text(60, seed=1) + "Zq!"  # ends with characters never seen in training


# ------------------------------------------------------------ a slow, obvious reference


class ReferenceKN:
    """Dict-of-strings interpolated modified KN, written straight from the formulas."""

    def __init__(self, text: str, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.counts: dict[tuple[int, str], Counter[str]] = {}
        for n in range(1, order + 1):
            raw: Counter[str] = Counter()
            left: defaultdict[str, set[str | None]] = defaultdict(set)
            for i in range(len(text) - n + 1):
                gram = text[i : i + n]
                raw[gram] += 1
                left[gram].add(text[i - 1] if i > 0 else None)  # None: start of text
            self.counts[(n, "raw")] = raw
            self.counts[(n, "cont")] = Counter({g: len(s) for g, s in left.items()})

    def discounts(self, n: int, kind: str) -> np.ndarray:
        values = Counter(self.counts[(n, kind)].values())
        return estimate_discounts([values[r] for r in (1, 2, 3, 4)])

    def prob(self, context: str, char: str) -> float:
        h = context[len(context) - min(len(context), self.order - 1) :]
        p = 1.0 / self.vocab_size
        for n in range(1, len(h) + 2):
            ctx = h[len(h) - (n - 1) :]
            kind = "raw" if n == len(h) + 1 else "cont"
            d = self.discounts(n, kind)
            children = [c for g, c in self.counts[(n, kind)].items() if g[:-1] == ctx]
            total = sum(children)
            if total == 0:
                continue
            gamma = sum(d[min(c, 3)] for c in children)
            c = self.counts[(n, kind)].get(ctx + char, 0)
            p = (c - d[min(c, 3)] + gamma * p) / total
        return p


# ------------------------------------------------------------ tests


def test_estimate_discounts_modified_and_fallback():
    # Y = 10 / (10 + 2*5) = 0.5
    assert estimate_discounts([10, 5, 3, 2]) == pytest.approx([0, 0.5, 2 - 0.9, 3 - 4 / 3])
    # n3 == 0 -> one plain-KN discount Y = 2 / (2 + 2) for every count
    assert estimate_discounts([2, 1, 0, 0]) == pytest.approx([0, 0.5, 0.5, 0.5])
    assert estimate_discounts([3, 0, 0, 0]) == pytest.approx([0, 0.5, 0.5, 0.5])


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8])
def test_distributions_sum_to_one(order):
    model = fit_kneser_ney(TRAIN, order, extra_vocab=EVAL)
    contexts = ["", "t", "the c", "at\n", "\tthe big dog, ", "zzz", "Zq", TRAIN[-40:], "x" * 20]
    assert check_distributions(model, contexts) <= 1e-9
    for context in contexts:
        dist = distribution(model, context)
        assert len(dist) == len(set(TRAIN) | set(EVAL)) + 1  # vocabulary + unknown slot
        assert (dist > 0).all()
        assert abs(dist.sum() - 1) <= 1e-9


def test_hand_computed_bigram():
    # Training "abac", vocabulary {a, b, c} + unknown -> uniform 1/4.
    # Unigram continuation counts: a=2 (after b, and the text start), b=1, c=1;
    # n1=2, n2=1, n3=0 -> plain discount Y = 2/(2+2) = 0.5.
    #   p1(c) = (1 - 0.5)/4 + (3*0.5)/4 * 1/4 = 0.21875
    # Bigram raw counts after "a": ab=1, ac=1; n2=0 -> discount 0.5.
    #   p2(c|a) = (1 - 0.5)/2 + (2*0.5)/2 * p1(c) = 0.359375
    model = fit_kneser_ney("abac", 2)
    assert prob(model, "a", "c") == pytest.approx(0.359375, abs=1e-12)
    # With an empty context the unigram is the top level and uses raw counts
    # (a=2, b=1, c=1: the same numbers here) -> 0.21875 again.
    assert prob(model, "", "c") == pytest.approx(0.21875, abs=1e-12)
    assert prob(model.with_order(1), "a", "c") == prob(model, "", "c")
    # unseen context "c": skip the bigram level, fall back to the continuation unigram
    assert prob(model, "c", "c") == pytest.approx(0.21875, abs=1e-12)
    assert prob(model, "a", "?") == pytest.approx(1.0 / 2 * 1.5 / 4 * 1 / 4, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_reference_implementation(order):
    train = TRAIN[:1500]
    model = fit_kneser_ney(train, order, extra_vocab=EVAL)
    ref = ReferenceKN(train, order, model.vocab_size)
    for n in range(1, order + 1):
        assert model.discounts[n][0] == pytest.approx(ref.discounts(n, "raw"))
        if n < order:
            assert model.discounts[n][1] == pytest.approx(ref.discounts(n, "cont"))
    text = EVAL[:150] + EVAL[-5:]
    for i in range(1, len(text)):
        assert prob(model, text[:i], text[i]) == pytest.approx(ref.prob(text[:i], text[i]), rel=1e-12)


def test_log_perplexity_is_mean_of_char_probs():
    model = fit_kneser_ney(TRAIN, 5, extra_vocab=EVAL)
    by_char = [-math.log(prob(model, EVAL[:i], EVAL[i])) for i in range(1, len(EVAL))]
    assert log_perplexity(model, EVAL) == pytest.approx(np.mean(by_char), rel=1e-12)


def test_higher_order_beats_lower_order_on_repetitive_text():
    # Lines from a small set in random order: the next character is decided
    # by ever longer contexts, so each extra order should help.
    lines = ["the cat sat on the mat.\n", "the hat sat on the cat.\n",
             "a cat ran to the mat.\n", "the rat ran to a hat.\n"]
    rng = random.Random(0)
    train = "".join(rng.choice(lines) for _ in range(200))
    held_out = "".join(rng.choice(lines) for _ in range(20))
    scores = [log_perplexity(fit_kneser_ney(train, k), held_out) for k in (1, 2, 3, 5, 7)]
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < 0.1 * scores[0]


def test_unseen_characters_get_finite_log_perplexity():
    for extra in ("", EVAL):  # with and without the eval characters in the vocabulary
        model = fit_kneser_ney(TRAIN, 4, extra_vocab=extra)
        score = log_perplexity(model, "ZZZ the cat\u00e9\u4e2d!")
        assert math.isfinite(score) and score > 0


def test_one_fit_serves_every_lower_order():
    big = fit_kneser_ney(TRAIN, 6, extra_vocab=EVAL)
    for k in (1, 3, 6):
        small = fit_kneser_ney(TRAIN, k, extra_vocab=EVAL)
        assert log_perplexity(big.with_order(k), EVAL) == pytest.approx(
            log_perplexity(small, EVAL), rel=1e-12
        )


def test_best_baseline_reports_every_order():
    best, scores = best_baseline(TRAIN, EVAL, orders=range(2, 6))
    assert sorted(scores) == [2, 3, 4, 5]
    assert scores[best] == min(scores.values())
    model = fit_kneser_ney(TRAIN, 3, extra_vocab=EVAL)
    assert scores[3] == pytest.approx(log_perplexity(model, EVAL), rel=1e-12)


def test_training_text_shorter_than_order():
    model = fit_kneser_ney("ab", 5, extra_vocab="xyz")
    assert check_distributions(model, ["", "a", "ab", "abab", "q"]) <= 1e-9
    assert math.isfinite(log_perplexity(model, "abxq"))
