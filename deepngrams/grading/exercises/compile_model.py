"""The compile_model exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import math

import numpy as np

from deepngrams.config import COURSE, PADDING_ID, UNK_ID
from deepngrams.grading.exercises.common import array, from_w1_unittest, log_softmax, raised, tolerance, unquotable


MOVED = 1e-3  # a weight whose gradient is larger moves by about the rate at each of Adam's steps: compared
# Adam's bias corrections are 1 to float precision long before the probe's late step: a step there is
# Adam's plain update, m / (sqrt(v) + eps) times the rate, with the moments the two steps before left.
LATE = (10 ** 5, 10 ** 6)


# graded cell -> (probe, hidden)
CELLS = {"test_compile_model": ("compile_model", False), "test_compile_model_hidden": ("compile_model", True)}


def _gradients(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """The loss of Embedding -> Dense(log_softmax) under the sparse cross-entropy from logits, and its
    gradients as Keras' TensorFlow backend hands them to Adam: (loss, gradients, squared gradients).

    The embedding's gradient comes as one slice per position read, and Adam squares the slices before
    adding them into its second moment (rather than squaring their sum): the squared gradient of a row
    read twice is not the square of its gradient."""
    emb, kernel, bias = weights
    z = emb[x] @ kernel + bias  # (b, t, V); the loss of log_softmax(z) "from logits" is the loss of z
    logp = log_softmax(z)
    loss = -np.take_along_axis(logp, y[..., None], axis=-1).mean()
    dz = (np.exp(logp) - np.eye(z.shape[-1])[y]) / x.size
    slices = dz @ kernel.T  # (b, t, E): the embedding's gradient, one slice per position
    g_emb, g_emb_sq = np.zeros_like(emb), np.zeros_like(emb)
    np.add.at(g_emb, x, slices)
    np.add.at(g_emb_sq, x, slices ** 2)
    grads = [g_emb, np.einsum("bte,btv->ev", emb[x], dz), dz.sum(axis=(0, 1))]
    return float(loss), grads, [g_emb_sq, grads[1] ** 2, grads[2] ** 2]


def _adam_steps(weights: list[np.ndarray], batches: list, steps: list[int]):
    """Adam at the course's rate, one step on each of `batches` at the iteration counts `steps`, as
    Keras 3 takes it: (the first step's loss, the weights after each step, the weights compared
    after each step) for each of two versions of the embedding's squared gradient.

    The first version squares the embedding's gradient (as a dense gradient would be), the second
    adds the squares of its slices (as Keras' TensorFlow backend does); they differ on rows read twice.
    Where every gradient of a weight so far is within float32 noise of 0, float32 rounding decides
    Adam's step, and where its sqrt(v) was ever under w1_unittest's ADAM_EPSILON_REACH, epsilon does
    (Keras' 1e-7, PyTorch's 1e-8): such a weight is not compared."""
    b1, b2, eps, reach = 0.9, 0.999, 1e-7, tolerance("ADAM_EPSILON_REACH")
    versions = []
    for by_slices in (False, True):
        w = [np.asarray(a, np.float64) for a in weights]
        m, v, largest = [np.zeros_like(a) for a in w], [np.zeros_like(a) for a in w], [np.zeros_like(a) for a in w]
        near_epsilon = [np.zeros(a.shape, bool) for a in w]
        afters, compared, first_loss = [], [], None
        for (x, y), step in zip(batches, steps):
            loss, grads, squares = _gradients(w, x, y)
            first_loss = loss if first_loss is None else first_loss
            if not by_slices:
                squares = [g * g for g in grads]
            alpha = COURSE.learning_rate * math.sqrt(1 - b2 ** (step + 1)) / (1 - b1 ** (step + 1))
            m = [mi + (g - mi) * (1 - b1) for mi, g in zip(m, grads)]
            v = [vi + (g2 - vi) * (1 - b2) for vi, g2 in zip(v, squares)]
            near_epsilon = [n | ((vi > 0) & (np.sqrt(vi) < reach)) for n, vi in zip(near_epsilon, v)]
            w = [wi - alpha * mi / (np.sqrt(vi) + eps) for wi, mi, vi in zip(w, m, v)]
            largest = [np.maximum(l, np.abs(g)) for l, g in zip(largest, grads)]
            afters.append([wi.tolist() for wi in w])
            compared.append([((l > MOVED) & ~n).tolist() for l, n in zip(largest, near_epsilon)])
        versions.append({"weights": afters, "compared": compared})
    return first_loss, versions


def cases_compile_model(rng, hidden: bool):
    V = int(rng.integers(6, 15))
    weights = [rng.normal(size=(V, 4)).astype(np.float32), (rng.normal(size=(4, V)) * 0.5).astype(np.float32),
               (rng.normal(size=V) * 0.1).astype(np.float32)]
    x, y = rng.integers(0, V, size=(3, 5)), rng.integers(0, V, size=(3, 5))
    # Both special ids among the targets: a loss that ignores either (ignore_class) is always told apart.
    y.flat[rng.choice(y.size, size=2, replace=False)] = [UNK_ID, PADDING_ID]
    later_step = int(rng.integers(*LATE))  # the rate is read again there (no schedule) and Adam steps once more
    # Three steps: two in a row from the start, one far later. An optimizer that is Adam for its first
    # step only, or another whose first step is Adam's (Lion's is the rate times the gradient's sign,
    # as Adam's is), moves the weights elsewhere at the second.
    batches = [(x, y)] + [tuple(rng.integers(0, V, size=(3, 5)) for _ in range(2)) for _ in range(2)]
    loss, versions = _adam_steps(weights, batches, [0, 1, later_step])
    # The optimizer alone, as w1_unittest tries it: its own made-up gradients, drawn from what is drawn above
    # (so the other cells' draws stay as they were).
    start, gradients = from_w1_unittest()["optimizer_trial"](np.random.default_rng([V, later_step]),
                                                             [w.shape for w in weights])
    trial = {"weights": [w.astype(np.float32).tolist() for w in start],
             "gradients": [[g.astype(np.float32).tolist() for g in grads] for grads in gradients]}
    case = {"vocab_size": V, "weights": [w.tolist() for w in weights], "x": x.tolist(), "y": y.tolist(),
            "more": [{"x": bx.tolist(), "y": by.tolist()} for bx, by in batches[1:]], "later_step": later_step,
            "trial": trial}
    alone = _adam_alone(trial, [0, 1, later_step])
    return [case], [{"loss": loss, "versions": versions, "later_step": later_step,
                     "learning_rate": COURSE.learning_rate, "optimizer_alone": alone + alone[-1:]}]


def _adam_alone(trial: dict, steps: list[int]) -> list:
    """Adam at the course's rate given the trial's gradients at the iteration counts `steps`, in float64:
    the weights after each step."""
    b1, b2, eps = 0.9, 0.999, 1e-7
    w = [np.asarray(a, np.float64) for a in trial["weights"]]
    m, v, afters = [np.zeros_like(a) for a in w], [np.zeros_like(a) for a in w], []
    for grads, step in zip(trial["gradients"], steps):
        grads = [np.asarray(g, np.float64) for g in grads]
        alpha = COURSE.learning_rate * math.sqrt(1 - b2 ** (step + 1)) / (1 - b1 ** (step + 1))
        m = [mi + (g - mi) * (1 - b1) for mi, g in zip(m, grads)]
        v = [vi + (g * g - vi) * (1 - b2) for vi, g in zip(v, grads)]
        w = [wi - alpha * mi / (np.sqrt(vi) + eps) for wi, mi, vi in zip(w, m, v)]
        afters.append([wi.tolist() for wi in w])
    return afters


def _weights_match(observed, expected: list, compared: list) -> bool:
    if not isinstance(observed, list) or len(observed) != len(expected):
        return False
    for o, e, m in zip(observed, expected, compared):
        a, e, m = array(o), np.asarray(e), np.asarray(m, bool)
        if a is None or a.shape != e.shape or not np.allclose(a[m], e[m], atol=tolerance("ADAM_ATOL"), rtol=0):
            return False
    return True


def _items(observation):
    return observation.get("items") if isinstance(observation, dict) else None


def _steps_followed(observed: list, version: dict) -> int:
    """How many training steps, from the first, leave the observed weights where Adam leaves them."""
    for k, (after, compared) in enumerate(zip(version["weights"], version["compared"])):
        if not _weights_match(observed[k] if k < len(observed) else None, after, compared):
            return k
    return len(version["weights"])


def judge(check, observations):
    fails = []
    for want, o in zip(check["expected"], observations):
        if "error" in o:
            fails.append(f"compile_model {raised(o, unquotable(check))}")
            continue
        if not o.get("same"):
            fails.append("compile_model should return the model it was given")
        # Any loss that gives the loss's values and steps is that loss (Keras' function of it, say): judged below.
        if o.get("loss_is") and o.get("from_logits") is not True:
            fails.append(f"the loss should be SparseCategoricalCrossentropy(from_logits=True), got {o.get('loss_kind')} "
                         f"with from_logits={o.get('from_logits')}")
        if not o.get("optimizer_is") or o.get("learning_rate") is None \
                or abs(o["learning_rate"] - want["learning_rate"]) > tolerance("RATE_ATOL"):
            rate = "another learning rate" if unquotable(check) else o.get("learning_rate")
            fails.append(f"the optimizer should be Adam(learning_rate={want['learning_rate']}), got "
                         f"{o.get('optimizer_kind')}({rate})")
        elif not isinstance(o.get("learning_rate_later"), (int, float)) \
                or not abs(o["learning_rate_later"] - want["learning_rate"]) <= tolerance("RATE_ATOL"):
            rate_later = "another rate" if unquotable(check) else o.get("learning_rate_later")
            fails.append(f"the learning rate should stay {want['learning_rate']} at every step (not a schedule), "
                         f"got {rate_later} after many steps")
        step = o.get("step") if isinstance(o.get("step"), dict) else {}
        loss = array(step.get("loss", {}))
        if loss is None or loss.size < 1 or abs(float(loss.ravel()[0]) - want["loss"]) > tolerance("ATOL"):
            fails.append("one training step: the loss is not the mean negative log probability of the targets "
                         "(SparseCategoricalCrossentropy(from_logits=True) gives it)")
        later = o.get("later_steps") if isinstance(o.get("later_steps"), list) else []
        steps = [_items(step.get("weights"))] + [_items(s.get("weights")) if isinstance(s, dict) else None
                                                 for s in later]
        names = ["one training step", "a second training step",
                 f"a training step after {want['later_step']} steps"]
        # the first step at which the weights leave Adam's path, in the version they follow longest
        reached = max(_steps_followed(steps, version) for version in want["versions"])
        keep_defaults = from_w1_unittest()["ADAM_DEFAULTS"]  # the hint the students' test gives
        if reached < len(names):
            fails.append(f"{names[reached]}: the weights do not move as Adam with learning rate "
                         f"{want['learning_rate']} moves them{keep_defaults}")
        elif "optimizer_alone" in want:
            alone = o.get("optimizer_alone") if isinstance(o.get("optimizer_alone"), list) else []
            names = ["a large step", "a small step", f"a step after {want['later_step']} steps",
                     "the end of training, as fit ends it"]
            for k, (name, expected) in enumerate(zip(names, want["optimizer_alone"])):
                every = [np.ones(np.shape(e), bool).tolist() for e in expected]
                if not _weights_match(_items(alone[k]) if k < len(alone) else None, expected, every):
                    fails.append(f"the optimizer given the same gradients as Adam, after {name}: the weights do not "
                                 f"move as Adam with learning rate {want['learning_rate']} moves them{keep_defaults}")
                    break
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_compile_model(rng, hidden)
