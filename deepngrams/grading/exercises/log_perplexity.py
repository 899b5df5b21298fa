"""The log_perplexity exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import math

import numpy as np

from deepngrams.config import PADDING_ID, UNK_ID
from deepngrams.grading.exercises.common import array, log_softmax, raised, tolerance, unquotable


# graded cell -> (probe, hidden)
CELLS = {"test_log_perplexity": ("log_perplexity", False), "test_log_perplexity_hidden": ("log_perplexity", True)}


def _perplexity_case(preds, targets, about):
    preds, targets = np.asarray(preds, np.float64), np.asarray(targets)
    picked = np.take_along_axis(preds, targets[..., None], axis=-1)[..., 0]
    real = targets != PADDING_ID
    with np.errstate(invalid="ignore", divide="ignore"):
        want = -np.mean((picked * real).sum(-1) / real.sum(-1))
    return {"preds": preds.astype(np.float32).tolist(), "targets": targets.tolist()}, {"value": float(want),
                                                                                          "about": about}


def cases_log_perplexity(rng, hidden: bool):
    V, T = int(rng.integers(6, 14)), int(rng.integers(6, 12))
    made = []
    if hidden:
        for _ in range(2):  # two numbers: a wrong formula does not land within the tolerance of both by chance
            preds = log_softmax(rng.normal(size=(4, T, V))).astype(np.float32)
            targets = rng.integers(0, V - 1, size=(4, T))
            targets[targets >= PADDING_ID] += 1  # any id but padding: a row is padded only where it is set below
            targets[int(rng.integers(4)), 0] = UNK_ID  # '[UNK]' is a real target: only padding is left out
            targets[1, T // 2:] = PADDING_ID
            targets[3, 2:] = PADDING_ID
            made.append(_perplexity_case(preds, targets, "sequences of different lengths (padding id 1 at the end)"))
    else:
        targets = rng.integers(2, V, size=(2, T))
        targets[0, T // 2:] = PADDING_ID
        probs = np.full((2, T, V), 0.0)
        for b, level in enumerate(rng.uniform(0.3, 3.0, size=2)):
            for t in range(T):
                p = 0.9 if targets[b, t] == PADDING_ID else math.exp(-level)
                probs[b, t] = (1.0 - p) / (V - 1)
                probs[b, t, targets[b, t]] = p
        made.append(_perplexity_case(np.log(probs), targets, "padding positions must not count (the model is "
                                                              "sure of the padding there)"))
        preds = log_softmax(rng.normal(size=(3, T, V)) * 2)
        targets = rng.integers(2, V, size=(3, T))
        targets[1, T // 2:] = PADDING_ID
        made.append(_perplexity_case(preds, targets, "the mean over each sequence's own real positions, then "
                                                     "over the batch"))
        noisy = np.where((targets == PADDING_ID)[..., None], log_softmax(rng.normal(size=(3, T, V)) * 4), preds)
        made.append(_perplexity_case(noisy, targets, "the predictions at padding positions must not matter"))
        all_pad = targets.copy()
        all_pad[0, :] = PADDING_ID
        made.append(_perplexity_case(preds, all_pad, "a sequence that is all padding gives NaN"))
    return [c for c, _ in made], [w for _, w in made]


def judge(check, observations):
    fails = []
    for i, (want, o) in enumerate(zip(check["expected"], observations), 1):
        got = array(o)
        label = f"log_perplexity, case {i} ({want['about']})"
        if "error" in o:
            fails.append(f"{label}: {raised(o, unquotable(check))}")
        elif got is None or got.shape != ():
            fails.append(f"{label}: expected one number, got {o.get('kind')} of shape {o.get('shape')}")
        elif math.isnan(want["value"]) != math.isnan(float(got)):
            fails.append(f"{label}: " + ("expected NaN" if math.isnan(want["value"]) else "got NaN"))
        elif not math.isnan(want["value"]) and abs(float(got) - want["value"]) > tolerance("ATOL"):
            sign = " (it should be positive: the negative of the mean log probability)" \
                if abs(float(got) + want["value"]) <= tolerance("ATOL") else ""
            fails.append(f"{label}: wrong value{sign}")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_log_perplexity(rng, hidden)
