"""The compile_model exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import math

import numpy as np

from deepngrams.config import COURSE, PADDING_ID, UNK_ID
from deepngrams.grading.exercises.common import array, log_softmax, raised, tolerance


MOVED = 1e-4  # a weight whose gradient is larger moves by about the rate in Adam's first step: compared


# graded cell -> (probe, hidden)
CELLS = {"test_compile_model": ("compile_model", False), "test_compile_model_hidden": ("compile_model", True)}


def _adam_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """One step of Adam at the course's rate on Embedding -> Dense(log_softmax) with the sparse cross-entropy
    from logits, as Keras 3 takes it: (loss, [weights after], |gradient| of each weight).

    The embedding's gradient comes as one slice per position read; Keras' TensorFlow backend adds
    the slices' squares into Adam's second moment (rather than squaring their sum), so its first
    step differs from the dense one on rows read twice. Both versions of the embedding are given:
    the first list is the dense step, the second the step by slices.
    """
    emb, kernel, bias = (np.asarray(w, np.float64) for w in weights)
    z = emb[x] @ kernel + bias  # (b, t, V); the loss of log_softmax(z) "from logits" is the loss of z
    logp = log_softmax(z)
    loss = -np.take_along_axis(logp, y[..., None], axis=-1).mean()
    dz = (np.exp(logp) - np.eye(z.shape[-1])[y]) / x.size
    slices = dz @ kernel.T  # (b, t, E): the embedding's gradient, one slice per position
    g_emb, g_emb_sq = np.zeros_like(emb), np.zeros_like(emb)
    np.add.at(g_emb, x, slices)
    np.add.at(g_emb_sq, x, slices ** 2)
    grads = [g_emb, np.einsum("bte,btv->ev", emb[x], dz), dz.sum(axis=(0, 1))]
    b1, b2, eps = 0.9, 0.999, 1e-7
    alpha = COURSE.learning_rate * math.sqrt(1 - b2) / (1 - b1)

    def step(w, m, v):
        return w - alpha * ((1 - b1) * m) / (np.sqrt((1 - b2) * v) + eps)

    dense = [step(w, g, g * g) for w, g in zip((emb, kernel, bias), grads)]
    by_slices = [step(emb, g_emb, g_emb_sq)] + dense[1:]
    return float(loss), [dense, by_slices], [np.abs(g) for g in grads]


def cases_compile_model(rng, hidden: bool):
    V = int(rng.integers(6, 15))
    weights = [rng.normal(size=(V, 4)).astype(np.float32), (rng.normal(size=(4, V)) * 0.5).astype(np.float32),
               (rng.normal(size=V) * 0.1).astype(np.float32)]
    x, y = rng.integers(0, V, size=(3, 5)), rng.integers(0, V, size=(3, 5))
    # Both special ids among the targets: a loss that ignores either (ignore_class) is always told apart.
    y.flat[rng.choice(y.size, size=2, replace=False)] = [UNK_ID, PADDING_ID]
    loss, afters, grads = _adam_step(weights, x, y)
    case = {"vocab_size": V, "weights": [w.tolist() for w in weights], "x": x.tolist(), "y": y.tolist(),
            "later_step": int(rng.integers(10 ** 5, 10 ** 6))}  # the rate is read again there: no schedule
    # Where a gradient is within float32 noise of 0, float32 rounding decides Adam's first step: not compared.
    compared = [(g > MOVED).tolist() for g in grads]
    return [case], [{"loss": loss, "weights": [[w.tolist() for w in after] for after in afters], "compared": compared,
                     "learning_rate": COURSE.learning_rate}]


def _weights_match(observed, expected: list, compared: list) -> bool:
    if not isinstance(observed, list) or len(observed) != len(expected):
        return False
    for o, e, m in zip(observed, expected, compared):
        a, e, m = array(o), np.asarray(e), np.asarray(m, bool)
        if a is None or a.shape != e.shape or not np.allclose(a[m], e[m], atol=2e-5, rtol=0):
            return False
    return True


def judge(check, observations):
    fails = []
    for want, o in zip(check["expected"], observations):
        if "error" in o:
            fails.append(f"compile_model {raised(o, check['hidden'])}")
            continue
        if not o.get("same"):
            fails.append("compile_model should return the model it was given")
        if not o.get("loss_is") or o.get("from_logits") is not True:
            fails.append(f"the loss should be SparseCategoricalCrossentropy(from_logits=True), got {o.get('loss_kind')} "
                         f"with from_logits={o.get('from_logits')}")
        if not o.get("optimizer_is") or o.get("learning_rate") is None \
                or abs(o["learning_rate"] - want["learning_rate"]) > tolerance("RATE_ATOL"):
            fails.append(f"the optimizer should be Adam(learning_rate={want['learning_rate']}), got "
                         f"{o.get('optimizer_kind')}({o.get('learning_rate')})")
        elif not isinstance(o.get("learning_rate_later"), (int, float)) \
                or not abs(o["learning_rate_later"] - want["learning_rate"]) <= tolerance("RATE_ATOL"):
            fails.append(f"the learning rate should stay {want['learning_rate']} at every step (not a schedule), "
                         f"got {o.get('learning_rate_later')} after many steps")
        step = o.get("step") if isinstance(o.get("step"), dict) else {}
        loss = array(step.get("loss", {}))
        if loss is None or loss.size < 1 or abs(float(loss.ravel()[0]) - want["loss"]) > tolerance("ATOL"):
            fails.append("one training step: the loss is not the mean negative log probability of the targets")
        weights = step.get("weights", {}).get("items") if isinstance(step.get("weights"), dict) else None
        if not any(_weights_match(weights, after, want["compared"]) for after in want["weights"]):
            fails.append(f"one training step: the weights do not move as Adam with learning rate "
                         f"{want['learning_rate']} moves them")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_compile_model(rng, hidden)
