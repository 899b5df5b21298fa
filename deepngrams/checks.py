"""The grader's verdicts: each graded cell's inputs, the expected answers, and the judgement.

Only the grader runs this file, outside the sandbox. `prepare` draws every graded cell's
inputs from a secret that is new for every student and every submitted file (`secret_for`:
an HMAC of the student id and the notebook's bytes under a key only the grader holds), and
computes what a correct solution returns with numpy alone. Only the inputs go into the
sandbox, where `deepngrams.probes` calls the student's code on them; `judge` compares the
observations with the expected answers here, where student code never runs. So nothing in
the sandbox can compute or look up an answer: the models handed to student code are tables
or random weights drawn for this submission, not the pretrained model, and one student's
feedback is no answer key for anyone else's file.

Messages say which property failed ("padding positions were counted"), never the inputs or
the expected values; for hidden cells an exception is named by its type only.

Sampling is judged statistically. Each sampling case draws `n` ids (or characters) from a
known distribution and fails when some category's frequency is more than `eps` from its
probability. By Hoeffding's inequality a correct sampler fails a case with probability at
most 2 * categories * exp(-2 n eps^2); `eps` is chosen so that this is at most
FALSE_FAILURE_PER_CASE, and the few sampling cases of a notebook together stay under one in
a million gradings (`false_failure_bound`). The wrong temperatures students write (ignored,
multiplied instead of divided, always greedy) move some probability by more than 2 * eps.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import hmac
import json
import math
from pathlib import Path

import numpy as np

from .config import CARD_PATH, CORPUS_PATH, PADDING_ID, ROOT, UNK_ID

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
LEARNING_RATE = 0.00125  # compile_model's Adam rate (the course's; config.HParams.learning_rate)
FALSE_FAILURE_PER_CASE = 1e-7  # chance that a correct sampler fails one sampling case
SAMPLING_DRAWS = 20000  # ids drawn per temperature_random_sampling case
GENERATED_ROWS, GENERATED_STEPS = 2000, 2  # generate_one_step on 2000 prompts, twice, per sampling case
SAMPLED_TEXT, SAMPLED_TEXT_TOP = 40, 0.6  # generate_n_chars at temperature 1: characters, top probability
STATE_UNITS = 16  # width of the state vector of the table models handed to GenerativeModel
UNKNOWN_CHARS = "\u00e9\u00df\u00e6\u0436\u20ac\u2713\U0001F600"  # never in the vocabulary
KEY_BYTES = 32


# ----------------------------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------------------------
def new_key() -> bytes:
    """A course's grading key: kept by the grader (never in a sandbox), it seeds every hidden case."""
    import os
    return os.urandom(KEY_BYTES)


def secret_for(key: bytes, student: str, notebook: bytes) -> int:
    """The seed of one submission's cases: another student, or another file, gets other cases;
    grading the same file again gets the same ones."""
    message = student.encode("utf-8", "surrogatepass") + b"\0" + hashlib.sha256(notebook).digest()
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")


# ----------------------------------------------------------------------------------------
# numpy versions of what the exercises compute
# ----------------------------------------------------------------------------------------
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _ids(text: str, vocab: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(vocab) if i >= 2}
    return [index.get(c, UNK_ID) for c in text]


def _gru_numpy(w: dict, ids: np.ndarray, h: np.ndarray | None = None):
    """Keras' GRU (reset_after) and the dense log-softmax, in float64: (log_probs, final state)."""
    E, K, R, B = (np.asarray(w[k], np.float64) for k in ("embedding", "kernel", "recurrent_kernel", "bias"))
    W, b = np.asarray(w["dense_kernel"], np.float64), np.asarray(w["dense_bias"], np.float64)
    U = R.shape[0]
    h = np.zeros((ids.shape[0], U)) if h is None else h
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    out = []
    for t in range(ids.shape[1]):
        xp, hp = E[ids[:, t]] @ K + B[0], h @ R + B[1]
        z, r = sig(xp[:, :U] + hp[:, :U]), sig(xp[:, U:2 * U] + hp[:, U:2 * U])
        h = z * h + (1 - z) * np.tanh(xp[:, 2 * U:] + r * hp[:, 2 * U:])
        out.append(_log_softmax(h @ W + b))
    return np.stack(out, axis=1), h


def _random_weights(rng, V, E, U) -> dict:
    n = lambda scale, *shape: (rng.normal(size=shape) * scale).astype(np.float32)  # noqa: E731
    return {"embedding": n(1.0, V, E), "kernel": n(E ** -0.5, E, 3 * U), "recurrent_kernel": n(U ** -0.5, U, 3 * U),
            "bias": n(0.5, 2, 3 * U), "dense_kernel": n(2 * U ** -0.5, U, V), "dense_bias": n(0.5, V)}


def _adam_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """One step of Adam(LEARNING_RATE) on Embedding -> Dense(log_softmax) with the sparse cross-entropy
    from logits, as Keras 3 takes it: (loss, [weights after], |gradient| of each weight).

    The embedding's gradient comes as one slice per position read; Keras' TensorFlow backend adds
    the slices' squares into Adam's second moment (rather than squaring their sum), so its first
    step differs from the dense one on rows read twice. Both versions of the embedding are given:
    the first list is the dense step, the second the step by slices.
    """
    emb, kernel, bias = (np.asarray(w, np.float64) for w in weights)
    z = emb[x] @ kernel + bias  # (b, t, V); the loss of log_softmax(z) "from logits" is the loss of z
    logp = _log_softmax(z)
    loss = -np.take_along_axis(logp, y[..., None], axis=-1).mean()
    dz = (np.exp(logp) - np.eye(z.shape[-1])[y]) / x.size
    slices = dz @ kernel.T  # (b, t, E): the embedding's gradient, one slice per position
    g_emb, g_emb_sq = np.zeros_like(emb), np.zeros_like(emb)
    np.add.at(g_emb, x, slices)
    np.add.at(g_emb_sq, x, slices ** 2)
    grads = [g_emb, np.einsum("bte,btv->ev", emb[x], dz), dz.sum(axis=(0, 1))]
    b1, b2, eps = 0.9, 0.999, 1e-7
    alpha = LEARNING_RATE * math.sqrt(1 - b2) / (1 - b1)

    def step(w, m, v):
        return w - alpha * ((1 - b1) * m) / (np.sqrt((1 - b2) * v) + eps)

    dense = [step(w, g, g * g) for w, g in zip((emb, kernel, bias), grads)]
    by_slices = [step(emb, g_emb, g_emb_sq)] + dense[1:]
    return float(loss), [dense, by_slices], [np.abs(g) for g in grads]


def _hoeffding_eps(n: int, categories: int, failure: float = FALSE_FAILURE_PER_CASE) -> float:
    """The smallest eps with categories * 2 exp(-2 n eps^2) <= failure."""
    return math.sqrt(math.log(2 * categories / failure) / (2 * n))


def _tempered(log_p: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log_p / temperature), in float64."""
    return np.exp(_log_softmax(np.asarray(log_p, np.float64) / temperature))


def _separated_distribution(rng, k: int, temperatures, gap: float) -> np.ndarray:
    """A distribution over k categories that the usual wrong samplers cannot pass for: at each
    temperature t, softmax(log p / t) is more than `gap` away (in some category) from always
    taking the most likely category, from ignoring t (p itself) and from using 1 / t instead."""
    for _ in range(100_000):
        p = np.sort(rng.dirichlet(np.ones(k)))[::-1]
        if p.min() < 0.02:
            continue
        if all(1 - (q := _tempered(np.log(p), t)).max() > gap and
               (t == 1.0 or (np.abs(q - p).max() > gap and np.abs(q - _tempered(np.log(p), 1 / t)).max() > gap))
               for t in temperatures):
            return p
    raise RuntimeError(f"no distribution over {k} categories separates temperatures {temperatures} by {gap}")


# ----------------------------------------------------------------------------------------
# What the cases are drawn from: the course's public files
# ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _course(card_path: str, corpus_path: str) -> tuple[list[str], tuple[int, int, int], list[str]]:
    card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    vocab = list(card["vocab"])
    sizes = (len(vocab), int(card["hparams"]["embedding_dim"]), int(card["hparams"]["rnn_units"]))
    alphabet = set(vocab[2:])
    lines = [line for line in Path(corpus_path).read_text(encoding="utf-8").splitlines()
             if line and set(line) <= alphabet]
    return vocab, sizes, lines


def _passage(rng, lines: list[str], count: int) -> list[str]:
    start = int(rng.integers(0, len(lines) - count))
    return lines[start:start + count]


# ----------------------------------------------------------------------------------------
# Cases, one function a probe: (rng, course) -> (inputs of each case, expected of each case)
# Each expected entry has "about": what the case shows, in words a student can act on.
# ----------------------------------------------------------------------------------------
def cases_line_to_tensor(rng, vocab, lines, hidden: bool):
    alphabet = vocab[2:]
    chars = alphabet + list(UNKNOWN_CHARS)
    if hidden:
        cases = [({"line": "".join(rng.choice(chars, size=n)), "vocab": vocab},
                  "a line with characters outside the vocabulary (they map to id 0)") for n in (1, 7, 60)]
        pair = ["".join(rng.choice(alphabet, size=int(rng.integers(2, 9)))) for _ in range(2)]
        cases.append(({"line": pair, "vocab": vocab}, "a list of lines (one row of ids per line)"))
    else:
        picked = [lines[int(i)] for i in rng.choice(len(lines), size=3, replace=False)]
        cases = [({"line": line[:80], "vocab": vocab}, "a line of the corpus") for line in picked]
        mixed = "".join(rng.choice(chars, size=12)) + UNKNOWN_CHARS[int(rng.integers(len(UNKNOWN_CHARS)))]
        cases.append(({"line": mixed, "vocab": vocab}, "a line with characters outside the vocabulary "
                                                       "(they map to id 0)"))
        letters = list(rng.choice(list("abcdefghijklmnop"), size=4, replace=False))
        small = ["[UNK]", "", " "] + letters[:3]
        line = "".join(rng.choice(letters[:3] + [" ", letters[3]], size=9))
        cases.append(({"line": line, "vocab": small}, "another vocabulary (ids are positions in the vocab "
                                                       "argument, not in the course's)"))
        cases.append(({"line": picked, "vocab": vocab}, "a list of lines (one row of ids per line)"))
    inputs = [c for c, _ in cases]
    expected = [{"ids": [_ids(x, c["vocab"]) for x in c["line"]] if isinstance(c["line"], list)
                 else _ids(c["line"], c["vocab"]), "about": about} for c, about in cases]
    return inputs, expected


def cases_create_batch_dataset(rng, vocab, lines, hidden: bool):
    if hidden:
        letters = list("abcdefgh XYZ")
        random_lines = ["".join(rng.choice(letters, size=int(rng.integers(3, 12)))) for _ in range(40)]
        cases = [{"lines": random_lines, "vocab": vocab, "seq_length": int(rng.integers(4, 8)),
                  "batch_size": int(rng.integers(2, 5))}]
    else:
        cases = [{"lines": _passage(rng, lines, 4), "vocab": vocab, "seq_length": 10, "batch_size": 4},
                 {"lines": _passage(rng, lines, 90), "vocab": vocab, "seq_length": 10, "batch_size": 4,
                  "iterations": 2, "shuffled": True},
                 {"lines": _passage(rng, lines, 1500), "vocab": vocab}]
    expected = [{"ids": _ids("\n".join(c["lines"]), vocab), "seq_length": c.get("seq_length", 100),
                 "batch_size": c.get("batch_size", 64)} for c in cases]
    return cases, expected


def cases_GRULM_layers(rng, sizes):
    V, E, U = sizes
    cases, expected = [], []
    small = [tuple(int(x) for x in rng.integers(3, 16, size=3)) for _ in range(2)]
    for i, (v, e, u) in enumerate([(V, E, U), *small]):
        ids = rng.integers(2, v, size=(2, 7))
        want = {"shapes": {"embedding": [[v, e]], "gru": [[e, 3 * u], [u, 3 * u], [2, 3 * u]], "dense": [[u, v], [v]]},
                "preds_shape": [2, 7, v]}
        case = {"sizes": [v, e, u], "ids": ids.tolist()}
        if i:  # small models also run with weights drawn here: their log probabilities must be right
            weights = _random_weights(rng, v, e, u)
            case["weights"] = {k: w.tolist() for k, w in weights.items()}
            want["preds"] = _gru_numpy(weights, ids)[0].tolist()
        cases.append(case)
        expected.append(want)
    return cases, expected


def cases_GRULM_outputs(rng, sizes, hidden: bool):
    V = sizes[0] if not hidden else int(rng.integers(8, 20))
    E, U = int(rng.integers(6, 17)), int(rng.integers(6, 25))
    weights = _random_weights(rng, V, E, U)
    steps = int(rng.integers(12, 25))
    ids = rng.integers(2 if not hidden else 0, V, size=(2, steps))
    if not hidden:
        ids[0, -3:] = PADDING_ID
    split = int(rng.integers(3, steps - 3))
    full, state = _gru_numpy(weights, ids)
    case = {"sizes": [V, E, U], "weights": {k: w.tolist() for k, w in weights.items()}, "ids": ids.tolist(),
            "split": split}
    return [case], [{"full": full.tolist(), "state": state.tolist(), "atol": 1e-4}]


def cases_compile_model(rng, hidden: bool):
    V = int(rng.integers(6, 15))
    weights = [rng.normal(size=(V, 4)).astype(np.float32), (rng.normal(size=(4, V)) * 0.5).astype(np.float32),
               (rng.normal(size=V) * 0.1).astype(np.float32)]
    x, y = rng.integers(0, V, size=(3, 5)), rng.integers(0, V, size=(3, 5))
    loss, afters, grads = _adam_step(weights, x, y)
    case = {"vocab_size": V, "weights": [w.tolist() for w in weights], "x": x.tolist(), "y": y.tolist()}
    # Where a gradient is within float32 noise of 0, float32 rounding decides Adam's first step: not compared.
    compared = [(g > 1e-4).tolist() for g in grads]
    return [case], [{"loss": loss, "weights": [[w.tolist() for w in after] for after in afters], "compared": compared,
                     "learning_rate": LEARNING_RATE}]


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
        preds = _log_softmax(rng.normal(size=(4, T, V))).astype(np.float32)
        targets = rng.integers(0, V, size=(4, T))
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
        preds = _log_softmax(rng.normal(size=(3, T, V)) * 2)
        targets = rng.integers(2, V, size=(3, T))
        targets[1, T // 2:] = PADDING_ID
        made.append(_perplexity_case(preds, targets, "the mean over each sequence's own real positions, then "
                                                     "over the batch"))
        noisy = np.where((targets == PADDING_ID)[..., None], _log_softmax(rng.normal(size=(3, T, V)) * 4), preds)
        made.append(_perplexity_case(noisy, targets, "the predictions at padding positions must not matter"))
        all_pad = targets.copy()
        all_pad[0, :] = PADDING_ID
        made.append(_perplexity_case(preds, all_pad, "a sequence that is all padding gives NaN"))
    return [c for c, _ in made], [w for _, w in made]


def cases_temperature_random_sampling(rng, sizes):
    V = sizes[0]
    rows = _log_softmax(rng.normal(size=(64, V)) * 3.0).astype(np.float32)
    cases = [{"log_probs": rows.tolist(), "temperature": 0.0, "seed": int(rng.integers(2**31))}]
    expected = [{"argmax": rows.argmax(-1).tolist(), "about": "temperature 0 picks the most likely id of each row"}]
    temperatures = (1.0, round(float(rng.uniform(0.4, 0.6)), 3), round(float(rng.uniform(1.8, 2.5)), 3))
    k = int(rng.integers(4, 7))
    eps = _hoeffding_eps(SAMPLING_DRAWS, k)
    p = _separated_distribution(rng, k, temperatures, 2.2 * eps)
    log_p = np.log(p).astype(np.float32)
    for t in temperatures:
        cases.append({"log_probs": log_p.tolist(), "repeat": SAMPLING_DRAWS, "temperature": t,
                      "seed": int(rng.integers(2**31))})
        expected.append({"p": _tempered(log_p, t).tolist(), "eps": eps,
                         "about": f"at temperature {t:g}, ids drawn from softmax(log_probs / temperature)"})
    return cases, expected


def _table_model(rng, vocab: list[str], states: int, peaked: bool, unknown_first: bool) -> dict:
    """A language model given as tables (the next state from the state and the id read; the log
    probabilities from the state), as the probes build it in the sandbox. When `peaked`, every state
    has one clear favourite character (4 nats ahead of the next); when `unknown_first`, '[UNK]' or the
    padding is even more likely in some states, which a generator must never emit."""
    V = len(vocab)
    transitions = rng.integers(0, states, size=(states, V))
    logits = rng.normal(size=(states, V))
    if peaked:
        for s in range(states):
            logits[s, int(rng.integers(2, V))] = logits[s].max() + 4.0 + rng.uniform(0, 2)
            if unknown_first and rng.random() < 0.6:
                logits[s, int(rng.integers(0, 2))] = logits[s].max() + 3.0
    return {"transitions": transitions.tolist(), "log_probs": _log_softmax(logits).astype(np.float32).tolist(),
            "units": STATE_UNITS}


def _greedy_text(model: dict, vocab: list[str], prefix: str, n: int, carry_state: bool = True) -> str:
    """What greedy generation writes with a table model (never '[UNK]' or padding). With
    `carry_state=False`, what a generator writes that forgets the state between steps."""
    T, L = np.asarray(model["transitions"]), np.asarray(model["log_probs"], np.float64)
    s = 0
    for i in _ids(prefix, vocab):
        s = T[s, i]
    text = prefix
    for _ in range(n):
        row = L[s].copy()
        row[[UNK_ID, PADDING_ID]] = -np.inf
        best = int(np.argmax(row))
        text += vocab[best]
        s = T[s if carry_state else 0, best]
    return text


def _memoryless_model(vocab: list[str], chars: list[int], p: np.ndarray) -> dict:
    """A table model that always gives the same distribution: `p` over `chars`, next to nothing on the
    rest, and '[UNK]' and padding above everything (a generator must skip them)."""
    logits = np.full(len(vocab), -40.0)
    logits[chars] = np.log(p)
    logits[[UNK_ID, PADDING_ID]] = np.log(p).max() + 1.0
    return {"transitions": np.zeros((1, len(vocab)), dtype=int).tolist(),
            "log_probs": _log_softmax(logits[None]).astype(np.float32).tolist(), "units": STATE_UNITS}


def cases_GenerativeModel(rng, vocab, hidden: bool):
    cases, expected = [], []
    alphabet = vocab[2:]
    letters = np.arange(2, len(vocab))
    for _ in range(1 if hidden else 2):
        while True:  # a model whose text tells whether the state is carried from step to step
            model = _table_model(rng, vocab, int(rng.integers(4, 8)), peaked=True, unknown_first=True)
            prefix = "".join(rng.choice(alphabet, size=int(rng.integers(1, 9))))
            n = int(rng.integers(8, 15))
            text = _greedy_text(model, vocab, prefix, n)
            if text != _greedy_text(model, vocab, prefix, n, carry_state=False):
                break
        cases.append({"model": model, "vocab": vocab, "call": "n_chars", "temperature": 0.0, "prefix": prefix,
                      "n": n})
        expected.append({"text": text, "about": "greedy text (temperature 0) from a model whose next character "
                                                "depends on its state and on the character it just read: is the "
                                                "state carried from step to step, the generated character fed "
                                                "back, and '[UNK]' and padding never chosen?"})
    if not hidden:
        model = _table_model(rng, vocab, 3, peaked=False, unknown_first=False)
        cases.append({"model": model, "vocab": vocab, "call": "one_step", "temperature": 1.0,
                      "prefix": "".join(rng.choice(alphabet, size=5))})
        expected.append({"states_shape": [1, STATE_UNITS], "about": "generate_one_step returns one character and "
                                                                    "the new state"})
        # generate_n_chars samples at temperature 1: not the same character all along.
        k = int(rng.integers(3, 6))
        while (p := np.sort(rng.dirichlet(np.ones(k)))[::-1])[0] > SAMPLED_TEXT_TOP:
            pass
        chars = [int(i) for i in rng.choice(letters, size=k, replace=False)]
        cases.append({"model": _memoryless_model(vocab, chars, p), "vocab": vocab, "call": "n_chars",
                      "temperature": 1.0, "prefix": "".join(rng.choice(alphabet, size=3)), "n": SAMPLED_TEXT,
                      "seed": int(rng.integers(2**31))})
        expected.append({"length": SAMPLED_TEXT, "top": float(p[0]),
                         "about": "generate_n_chars at temperature 1 samples (it does not always take the most "
                                  "likely character) and never writes '[UNK]' or padding"})
    temperatures = [round(float(rng.uniform(1.6, 2.4)), 3)] if hidden else [1.0, round(float(rng.uniform(0.4, 0.6)), 3)]
    for t in temperatures:
        k = int(rng.integers(3, 5))
        eps = _hoeffding_eps(GENERATED_ROWS * GENERATED_STEPS, k + 1)
        p = _separated_distribution(rng, k, (t,), 2.2 * eps)
        chars = [int(i) for i in rng.choice(letters, size=k, replace=False)]
        cases.append({"model": _memoryless_model(vocab, chars, p), "vocab": vocab, "call": "batch", "temperature": t,
                      "prefix": "".join(rng.choice(alphabet, size=3)), "rows": GENERATED_ROWS,
                      "steps": GENERATED_STEPS, "seed": int(rng.integers(2**31))})
        expected.append({"chars": [vocab[c] for c in chars], "p": _tempered(np.log(p), t).tolist(), "eps": eps,
                         "about": "generate_one_step on a batch: characters drawn from the model's "
                                  "softmax(log_probs / temperature), never '[UNK]' or padding"})
    return cases, expected


def prepare(secret: int, card_path: Path = CARD_PATH, corpus_path: Path = CORPUS_PATH) -> dict:
    """{grade_id: {"probe", "hidden", "inputs", "expected"}} for every graded cell of one submission."""
    vocab, sizes, lines = _course(str(card_path), str(corpus_path))
    rng = np.random.default_rng(secret)
    checks: dict = {}

    def add(grade_id, made):
        inputs, expected = made
        checks[grade_id] = {"probe": PROBE_OF[grade_id], "hidden": grade_id.endswith("_hidden"),
                            "inputs": {"cases": inputs}, "expected": expected}

    add("test_line_to_tensor", cases_line_to_tensor(rng, vocab, lines, hidden=False))
    add("test_line_to_tensor_hidden", cases_line_to_tensor(rng, vocab, lines, hidden=True))
    add("test_create_batch_dataset", cases_create_batch_dataset(rng, vocab, lines, hidden=False))
    add("test_create_batch_dataset_hidden", cases_create_batch_dataset(rng, vocab, lines, hidden=True))
    add("test_GRULM_layers", cases_GRULM_layers(rng, sizes))
    add("test_GRULM_outputs", cases_GRULM_outputs(rng, sizes, hidden=False))
    add("test_GRULM_hidden", cases_GRULM_outputs(rng, sizes, hidden=True))
    add("test_compile_model", cases_compile_model(rng, hidden=False))
    add("test_compile_model_hidden", cases_compile_model(rng, hidden=True))
    add("test_log_perplexity", cases_log_perplexity(rng, hidden=False))
    add("test_log_perplexity_hidden", cases_log_perplexity(rng, hidden=True))
    add("test_temperature_random_sampling", cases_temperature_random_sampling(rng, sizes))
    add("test_GenerativeModel", cases_GenerativeModel(rng, vocab, hidden=False))
    add("test_GenerativeModel_hidden", cases_GenerativeModel(rng, vocab, hidden=True))
    return checks


def false_failure_bound(prepared: dict) -> float:
    """The chance that a correct solution fails some sampling case of one notebook (Hoeffding)."""
    total = 0.0
    for check in prepared.values():
        for case, want in zip(check["inputs"]["cases"], check["expected"]):
            if "eps" in want:
                n = case.get("repeat") or case["rows"] * case["steps"]
                categories = len(want["p"]) + (1 if "chars" in want else 0)
                total += 2 * categories * math.exp(-2 * n * want["eps"] ** 2)
            elif "top" in want:  # the same character n times in a row
                total += want["top"] ** case["n"]
    return total


# ----------------------------------------------------------------------------------------
# Verdicts (numpy only: run by the grader on what came out of the sandbox)
# ----------------------------------------------------------------------------------------
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


@functools.lru_cache(maxsize=1)
def _from_w1_unittest(path: Path = ROOT / "w1_unittest.py") -> dict:
    """w1_unittest's table of Keras 3 breaks and its two functions that read an exception
    (`_first_line`, `pitfall_hint`), taken from its source without importing it (that would load
    TensorFlow): the students' tests and the grader's feedback describe an error the same way."""
    wanted = {"KERAS3_PITFALLS", "_first_line", "pitfall_hint"}
    nodes = [node for node in ast.parse(path.read_text(encoding="utf-8")).body
             if isinstance(node, ast.FunctionDef) and node.name in wanted
             or isinstance(node, ast.Assign) and any(getattr(t, "id", "") in wanted for t in node.targets)]
    namespace: dict = {}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102 - the bundle's own file
    missing = wanted - set(namespace)
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(sorted(missing))}")
    return namespace


def keras3_pitfalls() -> tuple:
    return tuple(tuple(entry) for entry in _from_w1_unittest()["KERAS3_PITFALLS"])


def first_line(message: str) -> str:
    """An exception's first meaningful line (no terminal codes, no TensorFlow boilerplate)."""
    return _from_w1_unittest()["_first_line"](message)


def pitfall_hint(message: str, code_lines: list) -> str:
    """The fix for a known Keras 3 break ("" when the error is not one of them)."""
    return _from_w1_unittest()["pitfall_hint"](message, [str(line) for line in code_lines])


def _raised(o: dict, hidden: bool) -> str:
    """What the student's code raised: its type and first meaningful line (only its type in a hidden
    case, whose message could carry the hidden inputs), the student's line that raised, and the fix
    when it is a known Keras 3 break."""
    error = str(o.get("error", ""))
    name, _, message = error.partition(":")
    message = first_line(str(o.get("message", message)))
    text = f"raised {name.strip()}" if hidden or not message else f"raised {name.strip()}: {message}"
    where = o.get("where") if isinstance(o.get("where"), dict) else {}
    if isinstance(where.get("line"), int):
        cell = f"In [{where['cell']}], " if isinstance(where.get("cell"), int) else ""
        text += f" (your code: {cell}line {where['line']})"
    code = o.get("code") if isinstance(o.get("code"), list) else []
    hint = pitfall_hint(str(o.get("message", error)), code)
    return f"{text}. {hint}" if hint else text


def _judge_line_to_tensor(check, observations):
    fails = []
    for i, (case, want, o) in enumerate(zip(check["inputs"]["cases"], check["expected"], observations), 1):
        label = f"line_to_tensor, case {i} ({want['about']})"
        if "error" in o:
            fails.append(f"{label}: {_raised(o, check['hidden'])}")
        elif not o.get("tensor") or not _is_int(o):
            fails.append(f"{label}: expected an int64 tensor, got {o.get('kind')} of {o.get('dtype')}")
        elif isinstance(case["line"], list):
            if o.get("value") != want["ids"] or not o.get("ragged"):
                fails.append(f"{label}: the rows of ids are not the expected ones")
        elif o.get("dtype") != "int64":
            fails.append(f"{label}: the ids should be int64, got {o.get('dtype')}")
        elif o.get("value") != want["ids"]:
            fails.append(f"{label}: the ids are not the expected ones")
    return fails


def _judge_dataset(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        T, B, ids = want["seq_length"], want["batch_size"], want["ids"]
        label = "create_batch_dataset (a hidden case)" if check["hidden"] else \
            f"create_batch_dataset(seq_length={T}, batch_size={B})"
        if "error" in o:
            fails.append(f"{label} {_raised(o, check['hidden'])}")
            continue
        if not o.get("dataset"):
            fails.append(f"{label}: expected a tf.data.Dataset, got {o.get('kind')}")
            continue
        if o.get("spec") != [["int64", [B, T]], ["int64", [B, T]]]:
            fails.append(f"{label}: element_spec should be two int64 tensors of shape (batch_size, seq_length)")
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
                    fails.append(f"{label}: each batch is (input, target) of shape (batch_size, seq_length), the "
                                 f"target the input shifted by one")
                    break
                seen += [tuple(x[r].tolist() + [int(y[r, -1])]) for r in range(B)]
            else:
                if any(chunk not in available for chunk in seen):
                    fails.append(f"{label}: every example is a chunk of seq_length + 1 ids cut from the start of "
                                 f"the lines joined with '\\n'")
                elif len(seen) != len(set(seen)) and len(set(chunks)) == len(chunks):
                    fails.append(f"{label}: a chunk is used twice")
                elif len(run) != len(chunks) // B:
                    fails.append(f"{label}: the number of batches is wrong (drop the remainders: "
                                 f"drop_remainder=True)")
            runs_seen.append(seen)
        if case.get("shuffled") and runs_seen:
            where: dict = {}
            for k, chunk in enumerate(chunks):
                where.setdefault(chunk, set()).add(k)
            batches = [run[i:i + B] for run in runs_seen for i in range(0, len(run), B)]
            follows = lambda a, b: any(k + 1 in where.get(b, ()) for k in where.get(a, ()))  # noqa: E731
            if all(run == list(chunks[:len(run)]) for run in runs_seen):
                fails.append(f"{label}: the examples are not shuffled")
            elif batches and all(all(follows(a, b) for a, b in zip(batch, batch[1:])) for batch in batches):
                fails.append(f"{label}: every batch holds consecutive chunks: shuffle before batching")
    return fails


def _grulm_label(check, case) -> str:
    return "GRULM (a hidden case)" if check["hidden"] else \
        "GRULM(vocab_size={}, embedding_dim={}, rnn_units={})".format(*case["sizes"])


def _judge_layers(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = _grulm_label(check, case)
        if "error" in o:
            fails.append(f"{label} {_raised(o, check['hidden'])}")
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
            fails.append(f"{label}: with the grader's weights in its layers, the log probabilities are wrong "
                         f"(embedding, then the GRU, then the dense layer, each used once)")
    return fails


def _judge_outputs(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = _grulm_label(check, case)
        if "error" in o:
            fails.append(f"{label} {_raised(o, check['hidden'])}")
            continue
        full, state, atol = np.asarray(want["full"]), np.asarray(want["state"]), want["atol"]
        k = case["split"]
        got = _array(o["full"])
        if got is None or got.shape != full.shape or not np.allclose(got, full, atol=atol, rtol=0):
            fails.append(f"{label}: with the grader's weights in its layers, model(inputs) gives wrong log "
                         f"probabilities (atol {atol})")
            continue
        items = o["pair"].get("items") if isinstance(o["pair"], dict) else None
        pair_state = _array(items[1]) if items and len(items) == 2 else None
        if pair_state is None or pair_state.shape != state.shape or not np.allclose(pair_state, state, atol=atol,
                                                                                    rtol=0):
            fails.append(f"{label}: model(inputs, return_state=True) should return (log_probs, final GRU state)")
            continue
        tail, tail_state = _array(o["tail"]), _array(o["tail_state"])
        if tail is None or tail.shape != full[:, k:].shape or not np.allclose(tail, full[:, k:], atol=atol, rtol=0) \
                or tail_state is None or not np.allclose(tail_state, state, atol=atol, rtol=0):
            fails.append(f"{label}: continuing from a given state (states=...) should equal running the whole "
                         f"sequence at once: pass the states to the GRU as its initial_state")
    return fails


def _weights_match(observed, expected: list, compared: list) -> bool:
    if not isinstance(observed, list) or len(observed) != len(expected):
        return False
    for o, e, m in zip(observed, expected, compared):
        a, e, m = _array(o), np.asarray(e), np.asarray(m, bool)
        if a is None or a.shape != e.shape or not np.allclose(a[m], e[m], atol=2e-5, rtol=0):
            return False
    return True


def _judge_compile(check, observations):
    fails = []
    for want, o in zip(check["expected"], observations):
        if "error" in o:
            fails.append(f"compile_model {_raised(o, check['hidden'])}")
            continue
        if not o.get("same"):
            fails.append("compile_model should return the model it was given")
        if not o.get("loss_is") or o.get("from_logits") is not True:
            fails.append(f"the loss should be SparseCategoricalCrossentropy(from_logits=True), got {o.get('loss_kind')} "
                         f"with from_logits={o.get('from_logits')}")
        if not o.get("optimizer_is") or o.get("learning_rate") is None \
                or abs(o["learning_rate"] - want["learning_rate"]) > 1e-7:
            fails.append(f"the optimizer should be Adam(learning_rate={want['learning_rate']}), got "
                         f"{o.get('optimizer_kind')}({o.get('learning_rate')})")
        step = o.get("step") if isinstance(o.get("step"), dict) else {}
        loss = _array(step.get("loss", {}))
        if loss is None or loss.size < 1 or abs(float(loss.ravel()[0]) - want["loss"]) > 1e-4:
            fails.append("one training step: the loss is not the mean negative log probability of the targets")
        weights = step.get("weights", {}).get("items") if isinstance(step.get("weights"), dict) else None
        if not any(_weights_match(weights, after, want["compared"]) for after in want["weights"]):
            fails.append(f"one training step: the weights do not move as Adam with learning rate "
                         f"{want['learning_rate']} moves them")
    return fails


def _judge_log_perplexity(check, observations):
    fails = []
    for i, (want, o) in enumerate(zip(check["expected"], observations), 1):
        got = _array(o)
        label = f"log_perplexity, case {i} ({want['about']})"
        if "error" in o:
            fails.append(f"{label}: {_raised(o, check['hidden'])}")
        elif got is None or got.shape != ():
            fails.append(f"{label}: expected one number, got {o.get('kind')} of shape {o.get('shape')}")
        elif math.isnan(want["value"]) != math.isnan(float(got)):
            fails.append(f"{label}: " + ("expected NaN" if math.isnan(want["value"]) else "got NaN"))
        elif not math.isnan(want["value"]) and abs(float(got) - want["value"]) > 1e-4:
            sign = " (it should be positive: the negative of the mean log probability)" \
                if abs(float(got) + want["value"]) <= 1e-4 else ""
            fails.append(f"{label}: wrong value{sign}")
    return fails


def _frequencies_fail(counts: np.ndarray, p: np.ndarray, eps: float) -> bool:
    freq = counts / max(1, counts.sum())
    return bool(np.any(np.abs(freq - p) > eps))


def _judge_sampling(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = f"temperature_random_sampling(temperature={case['temperature']:g})"
        ids = _array(o, np.int64) if _is_int(o) else None
        if "error" in o:
            fails.append(f"{label} {_raised(o, check['hidden'])}")
        elif ids is None or ids.ndim != 1:
            fails.append(f"{label}: expected integer ids of shape (batch,), got {o.get('dtype')} {o.get('shape')}")
        elif "argmax" in want:
            if ids.tolist() != want["argmax"]:
                fails.append(f"{label}: temperature 0 should give the most likely id of each row")
        else:
            p = np.asarray(want["p"])
            if ids.shape != (case["repeat"],) or ids.min() < 0 or ids.max() >= len(p):
                fails.append(f"{label}: one id per row, each an index into the row")
            elif _frequencies_fail(np.bincount(ids, minlength=len(p)), p, want["eps"]):
                fails.append(f"{label}: the ids are not drawn from softmax(log_probs / temperature) (their "
                             f"frequencies over {case['repeat']} rows are off)")
    return fails


def _judge_generative(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = "GenerativeModel (a hidden case)" if check["hidden"] else \
            f"GenerativeModel(temperature={case['temperature']:g})"
        if "error" in o:
            fails.append(f"{label} {_raised(o, check['hidden'])}")
        elif case["call"] == "one_step":
            chars = o.get("chars", {})
            value = chars.get("value")
            char = value[0] if isinstance(value, list) and len(value) == 1 else value
            if chars.get("dtype") not in ("object", "bytes", "str") or not isinstance(char, str) or len(char) != 1 \
                    or o.get("states_shape") != want["states_shape"]:
                fails.append(f"{label}.generate_one_step should return a string tensor with one character and "
                             f"states of shape {want['states_shape']}, got {o.get('kind')} and "
                             f"{o.get('states_shape')}")
        elif case["call"] == "batch":
            steps = o.get("steps")
            rows, n = case["rows"], case["rows"] * case["steps"]
            if not isinstance(steps, list) or len(steps) != case["steps"] or not all(
                    isinstance(chars, list) and len(chars) == rows for chars in steps):
                fails.append(f"{label}.generate_one_step on a batch of {rows} strings should return {rows} "
                             f"characters (and take them back with the states it returned)")
                continue
            drawn = [c for chars in steps for c in chars]
            if any(not isinstance(c, str) or len(c) != 1 for c in drawn):
                fails.append(f"{label}.generate_one_step should return one character per string, never "
                             f"'[UNK]' or the padding ''")
                continue
            counts = np.array([drawn.count(c) for c in want["chars"]] + [n - sum(map(drawn.count, want["chars"]))])
            if _frequencies_fail(counts, np.append(want["p"], 0.0), want["eps"]):
                fails.append(f"{label}: the characters are not drawn from softmax(log_probs / temperature) "
                             f"(their frequencies over {n} draws are off: is the temperature used, and is it "
                             f"sampling rather than always taking the most likely?)")
        elif not isinstance(o.get("text"), str):
            fails.append(f"{label}.generate_n_chars should return a string, got {o.get('text', {}).get('kind')}")
        elif "text" in want:
            if o["text"] != want["text"]:
                fails.append(f"{label}: {want['about']} The text differs from the expected one.")
        else:
            text, prefix = o["text"], case["prefix"]
            if not text.startswith(prefix) or len(text) != len(prefix) + want["length"] or "[UNK]" in text:
                fails.append(f"{label}.generate_n_chars(n, prefix) should return the prefix and n characters, "
                             f"never '[UNK]' or padding")
            elif len(set(text[len(prefix):])) < 2:
                fails.append(f"{label}.generate_n_chars: at temperature 1 it should sample, not always take the "
                             f"most likely character")
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
        return [_raised(result, check.get("hidden", True)).replace("raised ", "the check could not run: ", 1)]
    observations = result.get("observations")
    cases = check["inputs"]["cases"]
    if not isinstance(observations, list) or len(observations) != len(cases) \
            or not all(isinstance(o, dict) for o in observations):
        return ["the observations of this cell are malformed"]
    try:
        return _merge_repeats(JUDGES[check["probe"]](check, observations))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as e:  # malformed observations (forged ones: numbers too large, nested too deep)
        return [f"the outputs could not be checked ({type(e).__name__})"]


def _merge_repeats(fails: list[str]) -> list[str]:
    """The same exception in several cases, said once with their number."""
    import re
    groups: dict[str, list[str]] = {}
    for message in fails:
        at = message.find("raised ")
        groups.setdefault(message[at:] if at >= 0 else message, []).append(message[:at] if at >= 0 else "")
    merged = []
    for key, labels in groups.items():
        if len(labels) == 1 or not key.startswith("raised "):
            merged += [label + key for label in labels]
        else:
            name = re.split(r"[(,:. ]", labels[0].strip(), maxsplit=1)[0]
            merged.append(f"{name}: {len(labels)} cases {key}")
    return merged
