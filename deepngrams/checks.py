"""The grader's verdicts: inputs for each graded cell, the expected answers, and the judgement.

Only the grader runs this file. `prepare` draws every graded cell's inputs (the hidden ones
from a secret: the hash of the source notebook, which no sandbox sees) and computes what a
correct solution returns, with the pretrained model and numpy. Only the inputs go into the
sandbox, where `deepngrams.probes` calls the student's code on them; `judge` then compares
the observations with the expected answers, here, where student code never runs.

The cases follow w1_unittest.py, which gives students the same checks (with messages) in
the notebook; the hidden ones use fresh random inputs.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .config import PADDING_ID, REFERENCE_PATH, ROOT

# graded cell -> the probe that observes it
PROBE_OF = {
    "test_line_to_tensor": "line_to_tensor",
    "test_line_to_tensor_hidden": "line_to_tensor",
    "test_create_batch_dataset": "create_batch_dataset",
    "test_create_batch_dataset_hidden": "create_batch_dataset",
    "test_GRULM_layers": "GRULM_layers",
    "test_GRULM_outputs": "GRULM_outputs",
    "test_GRULM_hidden": "GRULM_outputs",
    "test_compile_model": "compile_model",
    "test_compile_model_hidden": "compile_model",
    "test_log_perplexity": "log_perplexity",
    "test_log_perplexity_hidden": "log_perplexity",
    "test_temperature_random_sampling": "temperature_random_sampling",
    "test_GenerativeModel": "GenerativeModel",
    "test_GenerativeModel_hidden": "GenerativeModel",
}
ATOL = 2e-3  # log probabilities of the pretrained model, across CPUs and library versions
HIDDEN_CUTS_TRIED = 300  # corpus lines cut for the hidden GenerativeModel cases; about 1 in 4 continues clearly


def secret_of(source_notebook: Path) -> int:
    """The seed of the hidden inputs: from the source notebook, which students never see."""
    return int.from_bytes(hashlib.sha256(Path(source_notebook).read_bytes()).digest()[:8], "big")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _ids(text: str, vocab: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(vocab) if i >= 2}
    return [index.get(c, 0) for c in text]


def _gru_numpy(w: dict, ids: np.ndarray, h: np.ndarray | None = None):
    """Keras' GRU (reset_after) and the dense log-softmax, in float64: (log_probs, final state)."""
    E, K, R, B = (np.asarray(w[k], np.float64) for k in ("embedding", "kernel", "recurrent_kernel", "bias"))
    W, b = np.asarray(w["dense_kernel"], np.float64), np.asarray(w["dense_bias"], np.float64)
    U = R.shape[0]
    h = np.zeros((ids.shape[0], U)) if h is None else h
    sig = lambda a: 1 / (1 + np.exp(-a))
    out = []
    for t in range(ids.shape[1]):
        xp, hp = E[ids[:, t]] @ K + B[0], h @ R + B[1]
        z, r = sig(xp[:, :U] + hp[:, :U]), sig(xp[:, U:2 * U] + hp[:, U:2 * U])
        h = z * h + (1 - z) * np.tanh(xp[:, 2 * U:] + r * hp[:, 2 * U:])
        out.append(_log_softmax(h @ W + b))
    return np.stack(out, axis=1), h


def _random_weights(rng, V, E, U) -> dict:
    n = lambda scale, *shape: (rng.normal(size=shape) * scale).astype(np.float32)
    return {"embedding": n(1.0, V, E), "kernel": n(E ** -0.5, E, 3 * U), "recurrent_kernel": n(U ** -0.5, U, 3 * U),
            "bias": n(0.5, 2, 3 * U), "dense_kernel": n(2 * U ** -0.5, U, V), "dense_bias": n(0.5, V)}


def _greedy(lm, vocab, prefix: str, max_chars: int, margin: float) -> str:
    """The pretrained model's greedy continuation, stopped where the top two are within `margin`."""
    import tensorflow as tf
    lp, st = lm(tf.constant([_ids(prefix, vocab)]), return_state=True)
    step, text = lp[0, -1].numpy(), ""
    for _ in range(max_chars):
        step[:2] = -np.inf
        top = np.sort(step)[-2:]
        if top[1] - top[0] < margin:
            break
        best = int(np.argmax(step))
        text += vocab[best]
        lp, st = lm(tf.constant([[best]]), states=st, return_state=True)
        step = lp[0, -1].numpy()
    return text


# ----------------------------------------------------------------------------------------
# Inputs and expected answers
# ----------------------------------------------------------------------------------------
def prepare(secret: int, bundle: Path = ROOT) -> dict:
    """{grade_id: {"probe", "inputs", "expected"}} for every graded cell (needs TensorFlow)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("w1_unittest_trusted", bundle / "w1_unittest.py")
    w1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w1)
    voc = w1.vocab()
    V, E, U = w1._sizes()
    ref = json.loads(Path(REFERENCE_PATH if bundle == ROOT else bundle / "model" / "reference_values.json").read_text())
    rng = np.random.default_rng(secret)
    alphabet = voc[2:]
    lm = w1.pretrained_lm()
    checks: dict = {}

    # line_to_tensor
    unknown = "\u00e9\u00df\u00e6\u0436\u20ac\u2713\U0001F600"
    lines = [c["line"] for c in ref["line_to_tensor"]] + [unknown]
    small = ["[UNK]", "", " ", "a", "b", "c"]
    cases = [{"line": line, "vocab": voc} for line in lines] + [{"line": "cab bad", "vocab": small},
                                                                 {"line": lines, "vocab": voc}]
    checks["test_line_to_tensor"] = {"inputs": {"cases": cases}}
    chars = alphabet + list(unknown[:3])
    hidden_lines = ["".join(rng.choice(chars, size=n)) for n in (1, 7, 60)]
    pair = ["".join(rng.choice(alphabet, size=int(rng.integers(2, 9)))) for _ in range(2)]
    checks["test_line_to_tensor_hidden"] = {"inputs": {"cases": [{"line": x, "vocab": voc} for x in hidden_lines]
                                                       + [{"line": pair, "vocab": voc}]}}
    for gid in ("test_line_to_tensor", "test_line_to_tensor_hidden"):
        checks[gid]["expected"] = [
            [_ids(x, c["vocab"]) for x in c["line"]] if isinstance(c["line"], list) else _ids(c["line"], c["vocab"])
            for c in checks[gid]["inputs"]["cases"]]

    # create_batch_dataset
    few = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
           "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles"]
    corpus = w1._corpus_lines(start=200, count=90, alphabet=set(alphabet))
    long = w1._corpus_lines(start=0, count=1500, alphabet=set(alphabet))
    cases = [{"lines": few, "vocab": voc, "seq_length": 10, "batch_size": 4},
             {"lines": corpus, "vocab": voc, "seq_length": 10, "batch_size": 4, "iterations": 2, "shuffled": True},
             {"lines": long, "vocab": voc}]
    checks["test_create_batch_dataset"] = {"inputs": {"cases": cases}}
    letters = list("abcdefgh XYZ")
    random_lines = ["".join(rng.choice(letters, size=int(rng.integers(3, 12)))) for _ in range(40)]
    checks["test_create_batch_dataset_hidden"] = {"inputs": {"cases": [
        {"lines": random_lines, "vocab": voc, "seq_length": 5, "batch_size": 3}]}}
    for gid in ("test_create_batch_dataset", "test_create_batch_dataset_hidden"):
        checks[gid]["expected"] = [{"ids": _ids("\n".join(c["lines"]), voc), "seq_length": c.get("seq_length", 100),
                                    "batch_size": c.get("batch_size", 64)} for c in checks[gid]["inputs"]["cases"]]

    # GRULM
    sizes = [(V, E, U), (15, 6, 5), tuple(int(x) for x in rng.integers(3, 12, size=3))]
    cases, expected = [], []
    for i, (v, e, u) in enumerate(sizes):
        ids = rng.integers(2, v, size=(2, 7))
        want = {"shapes": {"embedding": [[v, e]], "gru": [[e, 3 * u], [u, 3 * u], [2, 3 * u]], "dense": [[u, v], [v]]},
                "preds_shape": [2, 7, v]}
        case = {"sizes": [v, e, u], "ids": ids.tolist()}
        if i:  # small models also run with the grader's weights: their log probabilities must be right
            weights = _random_weights(rng, v, e, u)
            case["weights"] = {k: w.tolist() for k, w in weights.items()}
            want["preds"] = _gru_numpy(weights, ids)[0].tolist()
        cases.append(case)
        expected.append(want)
    checks["test_GRULM_layers"] = {"inputs": {"cases": cases}, "expected": expected}
    ids = rng.integers(2, V, size=(2, 24))
    ids[0, -3:] = PADDING_ID
    checks["test_GRULM_outputs"] = {"inputs": {"cases": [{"sizes": [V, E, U], "weights": "pretrained",
                                                          "ids": ids.tolist(), "split": 9}]}}
    import tensorflow as tf
    full, state = lm(tf.constant(ids), return_state=True)
    checks["test_GRULM_outputs"]["expected"] = [{"full": full.numpy().tolist(), "state": state.numpy().tolist(),
                                                 "atol": ATOL}]
    small_sizes = (13, 5, 7)
    weights = _random_weights(rng, *small_sizes)
    ids = rng.integers(0, 13, size=(2, 6))
    full, state = _gru_numpy(weights, ids)
    checks["test_GRULM_hidden"] = {
        "inputs": {"cases": [{"sizes": list(small_sizes), "weights": {k: v.tolist() for k, v in weights.items()},
                              "ids": ids.tolist(), "split": 3}]},
        "expected": [{"full": full.tolist(), "state": state.tolist(), "atol": 1e-4}]}

    # compile_model: one training step with the grader's weights and data shows loss, optimizer and rate
    from . import solution
    tf_logger, level = tf.get_logger(), tf.get_logger().level
    tf_logger.setLevel("ERROR")  # two small models, two traced steps: not worth a retracing warning
    for gid, V in (("test_compile_model", 12), ("test_compile_model_hidden", int(rng.integers(6, 15)))):
        weights = [rng.normal(size=(V, 4)).astype(np.float32), (rng.normal(size=(4, V)) * 0.5).astype(np.float32),
                   (rng.normal(size=V) * 0.1).astype(np.float32)]
        x, y = rng.integers(0, V, size=(3, 5)), rng.integers(0, V, size=(3, 5))
        model = tf.keras.Sequential([tf.keras.Input(shape=(None,), dtype="int64"), tf.keras.layers.Embedding(V, 4),
                                     tf.keras.layers.Dense(V, activation=tf.nn.log_softmax)])
        solution.compile_model(model)
        model.set_weights(weights)
        loss = float(np.asarray(model.train_on_batch(x, y)))
        checks[gid] = {"inputs": {"cases": [{"vocab_size": V, "weights": [w.tolist() for w in weights],
                                             "x": x.tolist(), "y": y.tolist()}]},
                       "expected": [{"loss": loss, "weights": [w.tolist() for w in model.get_weights()],
                                     "learning_rate": 0.00125}]}
    tf_logger.setLevel(level)

    # log_perplexity
    def lp_case(preds, targets):
        preds, targets = np.asarray(preds, np.float64), np.asarray(targets)
        picked = np.take_along_axis(preds, targets[..., None], axis=-1)[..., 0]
        real = targets != PADDING_ID
        with np.errstate(invalid="ignore", divide="ignore"):
            want = -np.mean((picked * real).sum(-1) / real.sum(-1))
        return {"preds": preds.astype(np.float32).tolist(), "targets": targets.tolist()}, float(want)

    targets = np.array([[2, 3, 1, 1, 1, 1], [2, 3, 4, 2, 3, 4]])
    probs = np.zeros((2, 6, 5))
    for b in range(2):
        for t in range(6):
            p = 0.9 if targets[b, t] == PADDING_ID else math.exp(-1.0 if b == 0 else -3.0)
            probs[b, t] = (1.0 - p) / 4
            probs[b, t, targets[b, t]] = p
    random_preds = _log_softmax(rng.normal(size=(3, 9, 11)) * 2)
    random_targets = rng.integers(2, 11, size=(3, 9))
    random_targets[1, 4:] = PADDING_ID
    noisy = np.where((random_targets == PADDING_ID)[..., None], _log_softmax(rng.normal(size=(3, 9, 11)) * 4),
                     random_preds)
    all_pad = random_targets.copy()
    all_pad[0, :] = PADDING_ID
    public = [lp_case(np.log(probs), targets), lp_case(random_preds, random_targets),
              lp_case(noisy, random_targets), lp_case(random_preds, all_pad)]
    hidden_preds = _log_softmax(rng.normal(size=(4, 9, 11)).astype(np.float32))
    hidden_targets = rng.integers(0, 11, size=(4, 9))
    hidden_targets[1, 5:] = PADDING_ID
    hidden_targets[3, 2:] = PADDING_ID
    for gid, made in (("test_log_perplexity", public),
                      ("test_log_perplexity_hidden", [lp_case(hidden_preds, hidden_targets)])):
        checks[gid] = {"inputs": {"cases": [c for c, _ in made]}, "expected": [{"value": w} for _, w in made]}

    # temperature_random_sampling
    rows = _log_softmax(rng.normal(size=(64, V)) * 3.0).astype(np.float32)
    p = np.array([0.5, 0.25, 0.15, 0.1])
    cases = [{"log_probs": rows.tolist(), "temperature": 0.0, "seed": 1}]
    expected = [{"argmax": rows.argmax(-1).tolist()}]
    for i, temperature in enumerate((1.0, 0.5, 100.0)):
        want = np.exp(np.log(p) / temperature)
        cases.append({"log_probs": np.log(p).astype(np.float32).tolist(), "repeat": 20000,
                      "temperature": temperature, "seed": 2 + i})
        expected.append({"p": (want / want.sum()).tolist()})
    checks["test_temperature_random_sampling"] = {"inputs": {"cases": cases}, "expected": expected}

    # GenerativeModel
    margin = float(ref["greedy"]["margin"])
    cases, expected = [], []
    for probe in ref["greedy"]["probes"]:
        cases.append({"model": "pretrained", "call": "n_chars", "temperature": 0.0, "prefix": probe["prefix"],
                      "n": len(probe["continuation"])})
        expected.append({"text": probe["prefix"] + probe["continuation"]})
    cases.append({"model": "pretrained", "call": "one_step", "temperature": 1.0, "prefix": "ROMEO\t"})
    expected.append({"states_shape": [1, U]})
    toy = w1._CycleLM(voc, U)
    for prefix, n in (("ROMEO\t", 12), ("abc", 15)):
        cases.append({"model": "cycle", "call": "n_chars", "temperature": 0.0, "prefix": prefix, "n": n})
        expected.append({"text": toy.expected(prefix, n)})
    for model, prefix, n in (("pretrained", "KING HENRY\t", 20), ("biased", "O, ", 30)):
        cases.append({"model": model, "call": "n_chars", "temperature": 1.0, "prefix": prefix, "n": n, "seed": 3})
        expected.append({"prefix": prefix, "length": len(prefix) + n})
    checks["test_GenerativeModel"] = {"inputs": {"cases": cases}, "expected": expected}
    cases, expected = [], []
    # Hidden: corpus lines cut where the secret says, kept where the weights continue them clearly
    # for a few characters (which ones they do changes with every training run).
    lines = [line for line in w1._corpus_lines(0, 4000, set(alphabet)) if len(line) > 1]
    for _ in range(HIDDEN_CUTS_TRIED):
        line = lines[int(rng.integers(len(lines)))]
        prefix = line[: int(rng.integers(1, len(line)))]
        text = _greedy(lm, voc, prefix, 8, margin)
        if len(text) >= 3:
            cases.append({"model": "pretrained", "call": "n_chars", "temperature": 0.0, "prefix": prefix,
                          "n": len(text)})
            expected.append({"text": prefix + text})
        if len(cases) == 3:
            break
    else:
        raise RuntimeError(f"The pretrained weights continue only {len(cases)} of {HIDDEN_CUTS_TRIED} cut corpus "
                           f"lines clearly for 3 characters (top two apart by {margin} nats), too few for the "
                           "hidden GenerativeModel check. Retrain (`make weights`) or lower the margin in "
                           "deepngrams/reference.py.")
    checks["test_GenerativeModel_hidden"] = {"inputs": {"cases": cases}, "expected": expected}

    for gid, check in checks.items():
        check["probe"] = PROBE_OF[gid]
    return checks


# ----------------------------------------------------------------------------------------
# Verdicts (numpy only: run by the grader on what came out of the sandbox)
# ----------------------------------------------------------------------------------------
def _short(value, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _is_int(o) -> bool:
    return isinstance(o, dict) and str(o.get("dtype", "")).startswith(("int", "uint"))


def _array(o, dtype=np.float64):
    """The value of an observed tensor as an array, or None when it is not one."""
    if not isinstance(o, dict) or "value" not in o or o.get("ragged"):
        return None
    try:
        return np.asarray(o["value"], dtype=dtype)
    except (TypeError, ValueError):
        return None


def _judge_line_to_tensor(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        label = f"line_to_tensor({_short(case['line'], 60)})"
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
        elif not o.get("tensor") or not _is_int(o):
            fails.append(f"{label}: expected an int64 tensor, got {o.get('kind')} of {o.get('dtype')}")
        elif isinstance(case["line"], list):
            rows = o["value"] if o.get("ragged") else None
            if rows != want:
                fails.append(f"{label}: expected rows {_short(want)}, got {_short(o.get('value'))}")
        elif o.get("value") != want or o.get("dtype") != "int64":
            fails.append(f"{label}: expected {_short(want)} (int64), got {_short(o.get('value'))} ({o.get('dtype')})")
    return fails


def _judge_dataset(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        T, B, ids = want["seq_length"], want["batch_size"], want["ids"]
        label = f"create_batch_dataset({len(case['lines'])} lines, seq_length={T}, batch_size={B})"
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
            continue
        if not o.get("dataset"):
            fails.append(f"{label}: expected a tf.data.Dataset, got {o.get('kind')}")
            continue
        if o.get("spec") != [["int64", [B, T]], ["int64", [B, T]]]:
            fails.append(f"{label}: element_spec should be two int64 tensors of shape ({B}, {T}), got {o.get('spec')}")
        if len(o.get("runs", [])) != case.get("iterations", 1):
            fails.append(f"{label}: the dataset could not be read {case.get('iterations', 1)} time(s)")
            continue
        size = T + 1
        chunks = [tuple(ids[k * size:(k + 1) * size]) for k in range(len(ids) // size)]
        available = set(chunks)
        runs_seen = []
        for run in o.get("runs", []):
            seen = []
            for x, y in run:
                x, y = np.asarray(x), np.asarray(y)
                if x.shape != (B, T) or y.shape != (B, T) or not np.array_equal(x[:, 1:], y[:, :-1]):
                    fails.append(f"{label}: each batch is (input, target) of shape ({B}, {T}), the target the "
                                 f"input shifted by one")
                    break
                seen += [tuple(x[r].tolist() + [int(y[r, -1])]) for r in range(B)]
            else:
                if any(chunk not in available for chunk in seen):
                    fails.append(f"{label}: every example is a chunk of seq_length + 1 ids cut from the start")
                elif len(seen) != len(set(seen)) and len(set(chunks)) == len(chunks):
                    fails.append(f"{label}: a chunk is used twice")
                elif len(run) != len(chunks) // B:
                    fails.append(f"{label}: expected {len(chunks) // B} batches, got {len(run)}")
            runs_seen.append(seen)
        if case.get("shuffled") and runs_seen:
            where: dict = {}
            for k, chunk in enumerate(chunks):
                where.setdefault(chunk, set()).add(k)
            batches = [run[i:i + B] for run in runs_seen for i in range(0, len(run), B)]
            follows = lambda a, b: any(k + 1 in where.get(b, ()) for k in where.get(a, ()))
            if all(run == list(chunks[:len(run)]) for run in runs_seen):
                fails.append(f"{label}: the examples are not shuffled")
            elif batches and all(all(follows(a, b) for a, b in zip(batch, batch[1:])) for batch in batches):
                fails.append(f"{label}: every batch holds consecutive chunks: shuffle before batching")
    return fails


def _judge_layers(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        label = "GRULM(vocab_size={}, embedding_dim={}, rnn_units={})".format(*case["sizes"])
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
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
        preds = _array(o["preds"])
        if preds is None or list(preds.shape) != want["preds_shape"]:
            fails.append(f"{label}: model(inputs) should give one tensor of shape {want['preds_shape']}")
        elif not np.all(np.abs(np.log(np.exp(preds).sum(-1))) < 1e-3):
            fails.append(f"{label}: the outputs should be log probabilities (log_softmax)")
        elif "preds" in want and not np.allclose(preds, want["preds"], atol=1e-4, rtol=0):
            fails.append(f"{label}: with given weights, the log probabilities differ from the expected ones")
    return fails


def _judge_outputs(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        label = "GRULM(vocab_size={}, embedding_dim={}, rnn_units={})".format(*case["sizes"])
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
            continue
        full, state, atol, k = np.asarray(want["full"]), np.asarray(want["state"]), want["atol"], case["split"]
        got = _array(o["full"])
        if got is None or got.shape != full.shape or not np.allclose(got, full, atol=atol, rtol=0):
            fails.append(f"{label}: log probabilities differ from the expected ones (atol {atol})")
            continue
        items = o["pair"].get("items") if isinstance(o["pair"], dict) else None
        pair_state = _array(items[1]) if items and len(items) == 2 else None
        if pair_state is None or pair_state.shape != state.shape or not np.allclose(pair_state, state, atol=atol, rtol=0):
            fails.append(f"{label}: model(inputs, return_state=True) should return (log_probs, final state)")
            continue
        tail, tail_state = _array(o["tail"]), _array(o["tail_state"])
        if tail is None or tail.shape != full[:, k:].shape or not np.allclose(tail, full[:, k:], atol=atol, rtol=0) \
                or tail_state is None or not np.allclose(tail_state, state, atol=atol, rtol=0):
            fails.append(f"{label}: continuing from a given state should equal running the whole sequence")
    return fails


def _judge_compile(inputs, expected, observations):
    fails = []
    for want, o in zip(expected, observations):
        if "error" in o:
            fails.append(f"compile_model raised {o['error']}")
            continue
        if not o.get("same"):
            fails.append("compile_model should return the model it was given")
        if not o.get("loss_is") or o.get("from_logits") is not True:
            fails.append(f"the loss should be SparseCategoricalCrossentropy(from_logits=True), got {o.get('loss_kind')} "
                         f"with from_logits={o.get('from_logits')}")
        if not o.get("optimizer_is") or o.get("learning_rate") is None \
                or abs(o["learning_rate"] - want["learning_rate"]) > 1e-7:
            fails.append(f"the optimizer should be Adam(learning_rate=0.00125), got {o.get('optimizer_kind')}"
                         f"({o.get('learning_rate')})")
        step = o.get("step") if isinstance(o.get("step"), dict) else {}
        loss = _array(step.get("loss", {}))
        if loss is None or loss.size < 1 or abs(float(loss.ravel()[0]) - want["loss"]) > 1e-4:
            fails.append(f"one training step: the loss should be {want['loss']:.5f} (the mean negative log "
                         f"probability), got {None if loss is None else loss.ravel()[:1].tolist()}")
        weights = step.get("weights", {}).get("items") if isinstance(step.get("weights"), dict) else None
        if not weights or len(weights) != len(want["weights"]) or not all(
                (a := _array(w)) is not None and a.shape == np.shape(e) and np.allclose(a, e, atol=2e-5, rtol=0)
                for w, e in zip(weights, want["weights"])):
            fails.append("one training step: the weights should move as Adam with learning rate 0.00125 moves them")
    return fails


def _judge_log_perplexity(inputs, expected, observations):
    fails = []
    for i, (want, o) in enumerate(zip(expected, observations)):
        got = _array(o)
        label = f"log_perplexity case {i + 1}"
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
        elif got is None or got.shape != ():
            fails.append(f"{label}: expected one number, got {o.get('kind')} of shape {o.get('shape')}")
        elif math.isnan(want["value"]) != math.isnan(float(got)) or \
                (not math.isnan(want["value"]) and abs(float(got) - want["value"]) > 1e-4):
            fails.append(f"{label}: expected {want['value']:.5f}, got {float(got):.5f}")
    return fails


def _judge_sampling(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        label = f"temperature_random_sampling(temperature={case['temperature']})"
        ids = _array(o, np.int64) if _is_int(o) else None
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
        elif ids is None or ids.ndim != 1:
            fails.append(f"{label}: expected integer ids of shape (batch,), got {o.get('dtype')} {o.get('shape')}")
        elif "argmax" in want:
            if ids.tolist() != want["argmax"]:
                fails.append(f"{label}: temperature 0 should give the most likely id of each row")
        else:
            p = np.asarray(want["p"])
            if ids.shape != (case["repeat"],) or ids.min() < 0 or ids.max() >= len(p):
                fails.append(f"{label}: ids out of range or wrong count")
                continue
            freq = np.bincount(ids, minlength=len(p)) / len(ids)
            if np.any(np.abs(freq - p) > 5 * np.sqrt(p * (1 - p) / len(ids))):
                fails.append(f"{label}: frequencies {np.round(freq, 3).tolist()} should match "
                             f"softmax(log_probs / temperature) = {np.round(p, 3).tolist()}")
    return fails


def _judge_generative(inputs, expected, observations):
    fails = []
    for case, want, o in zip(inputs["cases"], expected, observations):
        label = f"GenerativeModel({case['model']} model, temperature={case['temperature']})"
        if "error" in o:
            fails.append(f"{label} raised {o['error']}")
        elif case["call"] == "one_step":
            chars = o.get("chars", {})
            value = chars.get("value")
            char = value[0] if isinstance(value, list) and len(value) == 1 else value
            if chars.get("dtype") not in ("object", "bytes", "str") or not isinstance(char, str) or len(char) != 1 \
                    or o.get("states_shape") != want["states_shape"]:
                fails.append(f"{label}.generate_one_step should return one character and states of shape "
                             f"{want['states_shape']}, got {_short(value)} and {o.get('states_shape')}")
        elif not isinstance(o.get("text"), str):
            fails.append(f"{label}.generate_n_chars should return a string, got {_short(o.get('text'))}")
        elif "text" in want and o["text"] != want["text"]:
            fails.append(f"{label}.generate_n_chars({case['n']}, {case['prefix']!r}): expected {want['text']!r}, "
                         f"got {o['text']!r}")
        elif "prefix" in want and (not o["text"].startswith(want["prefix"]) or len(o["text"]) != want["length"]
                                   or "[UNK]" in o["text"]):
            fails.append(f"{label}.generate_n_chars({case['n']}, {case['prefix']!r}) should give the prefix and "
                         f"{case['n']} characters, never '[UNK]' or padding; got {o['text']!r}")
    return fails


JUDGES = {
    "line_to_tensor": _judge_line_to_tensor,
    "create_batch_dataset": _judge_dataset,
    "GRULM_layers": _judge_layers,
    "GRULM_outputs": _judge_outputs,
    "compile_model": _judge_compile,
    "log_perplexity": _judge_log_perplexity,
    "temperature_random_sampling": _judge_sampling,
    "GenerativeModel": _judge_generative,
}


def judge(check: dict, result: dict | None) -> list[str]:
    """Why the observed code fails this check ([] when it passes). `result` came from the sandbox."""
    if not isinstance(result, dict):
        return ["the cell did not run (an earlier cell stopped the notebook)"]
    if "error" in result:
        return [str(result["error"])[:300]]
    observations = result.get("observations")
    cases = check["inputs"]["cases"]
    if not isinstance(observations, list) or len(observations) != len(cases) \
            or not all(isinstance(o, dict) for o in observations):
        return ["the observations of this cell are malformed"]
    try:
        return JUDGES[check["probe"]](check["inputs"], check["expected"], observations)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # malformed observations
        return [f"the outputs could not be checked ({type(e).__name__})"]
