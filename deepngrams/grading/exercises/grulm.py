"""The grulm exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import numpy as np

from deepngrams.config import PADDING_ID, UNK_ID
from deepngrams.grading.exercises.common import array, close, gru_numpy, raised, random_weights, tolerance, unquotable


# graded cell -> (probe, hidden)
CELLS = {"test_GRULM_layers": ("GRULM_layers", False), "test_GRULM_outputs": ("GRULM_outputs", False),
         "test_GRULM_hidden": ("GRULM_outputs", True)}


def cases_GRULM_layers(rng, sizes):
    V, E, U = sizes
    cases, expected = [], []
    # v >= 4: two ids at least besides the special ones, so that a row can read differently backwards
    small = [tuple(int(x) for x in rng.integers([4, 3, 3], 16)) for _ in range(2)]
    for i, (v, e, u) in enumerate([(V, E, U), *small]):
        ids = rng.integers(2, v, size=(2, 7))
        while any((row == row[::-1]).all() for row in ids):  # read backwards, a row must read differently
            ids = rng.integers(2, v, size=(2, 7))
        want = {"shapes": {"embedding": [[v, e]], "gru": [[e, 3 * u], [u, 3 * u], [2, 3 * u]], "dense": [[u, v], [v]]},
                "preds_shape": [2, 7, v]}
        case = {"sizes": [v, e, u], "ids": ids.tolist()}
        if i:  # small models also run with weights drawn here: their log probabilities must be right
            weights = random_weights(rng, v, e, u)
            case["weights"] = {k: w.tolist() for k, w in weights.items()}
            want["preds"] = gru_numpy(weights, ids)[0].tolist()
        cases.append(case)
        expected.append(want)
    return cases, expected


def cases_GRULM_outputs(rng, sizes, hidden: bool):
    V = sizes[0] if not hidden else int(rng.integers(8, 20))
    E, U = int(rng.integers(6, 17)), int(rng.integers(6, 25))
    weights = random_weights(rng, V, E, U)
    steps = int(rng.integers(12, 25))
    ids = rng.integers(2 if not hidden else 0, V, size=(2, steps))
    if not hidden:
        ids[0, -3:] = PADDING_ID
    # '[UNK]' is a character like any other, in both cells as in the public test: an embedding that
    # masks id 0 is told apart
    ids[int(rng.integers(2)), int(rng.integers(steps - 3))] = UNK_ID
    split = int(rng.integers(3, steps - 3))
    full, state = gru_numpy(weights, ids)
    # A state the model never made: the GRU's state after a prefix drawn here, which the model never reads.
    # A model that ignores `states` and answers from what it saw before (its earlier calls) cannot give the
    # outputs that follow it; only one that starts its GRU from the state given can.
    prefix = rng.integers(2, V, size=(2, int(rng.integers(3, 9))))
    given = gru_numpy(weights, prefix)[1].astype(np.float32)
    given_out, given_state = gru_numpy(weights, ids[:, split:], given.astype(np.float64))
    again = [[2]]  # the model is built on a (1, 1) batch, then given the weights and called on this one
    case = {"sizes": [V, E, U], "weights": {k: w.tolist() for k, w in weights.items()}, "ids": ids.tolist(),
            "split": split, "given_state": given.tolist(), "again_ids": again}
    return [case], [{"full": full.tolist(), "state": state.tolist(), "given": given_out.tolist(),
                     "given_state": given_state.tolist(), "again": gru_numpy(weights, np.array(again))[0].tolist(),
                     "atol": tolerance("ATOL")}]


def _grulm_label(check, case) -> str:
    return "GRULM (a hidden case)" if check["hidden"] else \
        "GRULM(vocab_size={}, embedding_dim={}, rnn_units={})".format(*case["sizes"])


def judge_layers(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = _grulm_label(check, case)
        if "error" in o:
            fails.append(f"{label} {raised(o, unquotable(check))}")
            continue
        layers = o["layers"]
        if not layers.get("model"):
            fails.append(f"{label}: GRULM is not a tf.keras.Model")
        for name in ("embedding", "gru", "dense"):
            if not layers[name]["is"] or layers[name]["shapes"] != want["shapes"][name]:
                fails.append(f"{label}: self.{name} should be a {name} layer with weights {want['shapes'][name]}, "
                             f"got {layers[name]['kind']} with {layers[name]['shapes']}")
        if layers.get("gru_flags") != [case["sizes"][2], True, True]:
            fails.append(f"{label}: the GRU needs rnn_units units, return_sequences=True and return_state=True")
        preds = array(o["preds"])
        if preds is None or list(preds.shape) != want["preds_shape"]:
            fails.append(f"{label}: model(inputs) should give one tensor of shape {want['preds_shape']}")
        elif not np.all(np.abs(np.log(np.exp(preds).sum(-1))) < tolerance("LOG_SUM_ATOL")):
            fails.append(f"{label}: the outputs should be log probabilities (log_softmax)")
        elif "preds" in want and not np.allclose(preds, want["preds"], atol=tolerance("ATOL"), rtol=0):
            fails.append(f"{label}: with the grader's weights in its layers, the log probabilities are wrong "
                         f"(embedding, then the GRU, then the dense layer, each used once)")
    return fails


def judge_outputs(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = _grulm_label(check, case)
        if "error" in o:
            fails.append(f"{label} {raised(o, unquotable(check))}")
            continue
        full, state, atol = np.asarray(want["full"]), np.asarray(want["state"]), want["atol"]
        k = case["split"]
        got = array(o["full"])
        if not close(got, full, atol):
            fails.append(f"{label}: with the grader's weights in its layers, model(inputs) gives wrong log "
                         f"probabilities (atol {atol})")
            continue
        items = o["pair"].get("items") if isinstance(o["pair"], dict) else None
        pair_probs, pair_state = (array(items[0]), array(items[1])) if items and len(items) == 2 else (None, None)
        if not close(pair_probs, full, atol):
            fails.append(f"{label}: model(inputs, return_state=True) should return the log probabilities model(inputs) "
                         f"gives, with the final GRU state")
            continue
        if not close(pair_state, state, atol):
            fails.append(f"{label}: model(inputs, return_state=True) should return (log_probs, final GRU state)")
            continue
        tail, tail_state = array(o["tail"]), array(o["tail_state"])
        if not (close(tail, full[:, k:], atol) and close(tail_state, state, atol)):
            fails.append(f"{label}: continuing from a given state (states=...) should equal running the whole "
                         f"sequence at once: pass the states to the GRU as its initial_state")
            continue
        given, given_state = array(o.get("given")), array(o.get("given_state"))
        if not (close(given, want["given"], atol) and close(given_state, want["given_state"], atol)):
            fails.append(f"{label}: model(inputs, states=<a state it did not return itself>, return_state=True) "
                         f"gives wrong outputs: start the GRU from the states given (its initial_state)")
            continue
        again = array(o.get("again"))
        if not close(again, want["again"], atol):
            fails.append(f"{label}: called on inputs of the shape it was built with, after the grader set its "
                         f"weights, the model answers with other weights (a @tf.function on call keeps the weights "
                         f"of its first run: leave it out)")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_GRULM_layers(rng, sizes) if probe == "GRULM_layers" else cases_GRULM_outputs(rng, sizes, hidden)


def judge(check, observations):
    return (judge_layers if check["probe"] == "GRULM_layers" else judge_outputs)(check, observations)
