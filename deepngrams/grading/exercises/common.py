"""What the exercises' cases and judges share: numpy versions of the course's maths, the bounds of the
sampling tests, the course's public files the cases are drawn from, and how an exception is described."""
from __future__ import annotations

import ast
import builtins
import functools
import json
import math
from pathlib import Path

import numpy as np

from deepngrams.config import ROOT
from deepngrams.lm.data import encode


FALSE_FAILURE_PER_CASE = 1e-7  # chance that a correct sampler fails one sampling case


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def char_ids(text: str, vocab: list[str]) -> list[int]:
    """The id of each character of `text`, as line_to_tensor gives them (lm.data.encode)."""
    return encode(text, vocab).tolist()


def gru_numpy(w: dict, ids: np.ndarray, h: np.ndarray | None = None):
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
        out.append(log_softmax(h @ W + b))
    return np.stack(out, axis=1), h


def random_weights(rng, V, E, U) -> dict:
    n = lambda scale, *shape: (rng.normal(size=shape) * scale).astype(np.float32)  # noqa: E731
    return {"embedding": n(1.0, V, E), "kernel": n(E ** -0.5, E, 3 * U), "recurrent_kernel": n(U ** -0.5, U, 3 * U),
            "bias": n(0.5, 2, 3 * U), "dense_kernel": n(2 * U ** -0.5, U, V), "dense_bias": n(0.5, V)}


def one_character_all_along(top: float, n: int) -> float:
    """A bound on the chance that n draws from a distribution whose likeliest category has probability
    `top` all give one category: the sum of p ** n over the categories is at most top ** (n - 1)."""
    return top ** (n - 1)


def hoeffding_eps(n: int, categories: int, failure: float = FALSE_FAILURE_PER_CASE) -> float:
    """The smallest eps with categories * 2 exp(-2 n eps^2) <= failure."""
    return math.sqrt(math.log(2 * categories / failure) / (2 * n))


def tempered(log_p: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log_p / temperature), in float64."""
    return np.exp(log_softmax(np.asarray(log_p, np.float64) / temperature))


def separated_distribution(rng, k: int, temperatures, gap: float) -> np.ndarray:
    """A distribution over k categories that the usual wrong samplers cannot pass for: at each
    temperature t, softmax(log p / t) is more than `gap` away (in some category) from always
    taking the most likely category, from ignoring t (p itself) and from using 1 / t instead."""
    for _ in range(100_000):
        p = np.sort(rng.dirichlet(np.ones(k)))[::-1]
        if p.min() < 0.02:
            continue
        if all(1 - (q := tempered(np.log(p), t)).max() > gap and
               (t == 1.0 or (np.abs(q - p).max() > gap and np.abs(q - tempered(np.log(p), 1 / t)).max() > gap))
               for t in temperatures):
            return p
    raise RuntimeError(f"no distribution over {k} categories separates temperatures {temperatures} by {gap}")


def frequencies_fail(counts: np.ndarray, p: np.ndarray, eps: float) -> bool:
    """Whether some frequency is more than eps from its probability (the Hoeffding test)."""
    freq = counts / max(1, counts.sum())
    return bool(np.any(np.abs(freq - p) > eps))


@functools.lru_cache(maxsize=4)
def course_files(card_path: str, corpus_path: str) -> tuple[list[str], tuple[int, int, int], list[str]]:
    """(vocabulary, (vocabulary size, embedding, GRU units), corpus lines of known characters): the
    course's public files that cases are drawn from."""
    card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    vocab = list(card["vocab"])
    sizes = (len(vocab), int(card["hparams"]["embedding_dim"]), int(card["hparams"]["rnn_units"]))
    alphabet = set(vocab[2:])
    lines = [line for line in Path(corpus_path).read_text(encoding="utf-8").splitlines()
             if line and set(line) <= alphabet]
    return vocab, sizes, lines


def passage(rng, lines: list[str], count: int) -> list[str]:
    start = int(rng.integers(0, len(lines) - count))
    return lines[start:start + count]


def is_int(o) -> bool:
    return isinstance(o, dict) and str(o.get("dtype", "")).startswith(("int", "uint"))


def array(o, dtype=np.float64):
    """The value of an observed tensor as an array, or None when it is not one."""
    if not isinstance(o, dict) or "value" not in o or o.get("ragged"):
        return None
    try:
        return np.asarray(o["value"], dtype=dtype)
    except (TypeError, ValueError):
        return None


def close(got: np.ndarray | None, want, atol: float) -> bool:
    """An observed array (`array`'s, None when there was none) has the shape of `want` and its values
    within `atol`."""
    want = np.asarray(want)
    return got is not None and got.shape == want.shape and bool(np.allclose(got, want, atol=atol, rtol=0))


@functools.lru_cache(maxsize=1)
def from_w1_unittest(path: Path = ROOT / "w1_unittest.py") -> dict:
    """w1_unittest's tolerances, its table of Keras 3 breaks, its two functions that read an exception
    (`_first_line`, `pitfall_hint`), its test of a shuffle (`SHUFFLE_Z`, `order_correlation`,
    `RESHUFFLE_HINT`), its hint on Adam's settings (`ADAM_DEFAULTS`) and the made-up gradients its
    optimizer is given (`optimizer_trial`), taken from its source without importing it (that would load TensorFlow): the students' tests and the
    grader judge with the same tolerances and describe an error the same way."""
    wanted = {"KERAS3_PITFALLS", "_first_line", "pitfall_hint", "ATOL", "LOG_SUM_ATOL", "RATE_ATOL", "ADAM_ATOL",
              "ADAM_EPSILON_REACH", "SHUFFLE_Z", "order_correlation", "RESHUFFLE_HINT", "ADAM_GRADIENT_SIZES",
              "ADAM_WEIGHT", "ADAM_DEFAULTS", "optimizer_trial"}
    nodes = [node for node in ast.parse(path.read_text(encoding="utf-8")).body
             if isinstance(node, ast.FunctionDef) and node.name in wanted
             or isinstance(node, ast.Assign) and any(getattr(t, "id", "") in wanted for t in node.targets)]
    namespace: dict = {}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102 - the bundle's own file
    missing = wanted - set(namespace)
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(sorted(missing))}")
    return namespace


def tolerance(name: str) -> float:
    """One of w1_unittest's tolerances: ATOL, LOG_SUM_ATOL, RATE_ATOL, ADAM_ATOL or ADAM_EPSILON_REACH."""
    return float(from_w1_unittest()[name])


def order_correlation(run: list, chunks: list) -> tuple[float, float]:
    """(rho, limit): the rank correlation between a run's examples and their chunks' places in the text,
    and the largest |rho| a uniform shuffle passes (w1_unittest's `order_correlation` and SHUFFLE_Z)."""
    return from_w1_unittest()["order_correlation"](run, chunks)


def keras3_pitfalls() -> tuple:
    return tuple(tuple(entry) for entry in from_w1_unittest()["KERAS3_PITFALLS"])


def first_line(message: str) -> str:
    """An exception's first meaningful line (no terminal codes, no TensorFlow boilerplate)."""
    return from_w1_unittest()["_first_line"](message)


def pitfall_hint(message: str, code_lines: list) -> str:
    """The fix for a known Keras 3 break ("" when the error is not one of them)."""
    return from_w1_unittest()["pitfall_hint"](message, [str(line) for line in code_lines])


_BUILTIN_TYPES = {name: value for name, value in vars(builtins).items() if isinstance(value, type)}
# Exceptions of Python's and TensorFlow's own types: the only ones a hidden case's verdict names.
KNOWN_ERRORS = frozenset(name for name, value in _BUILTIN_TYPES.items() if issubclass(value, BaseException)) | {
    "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "PermissionDeniedError", "UnauthenticatedError",
    "ResourceExhaustedError", "FailedPreconditionError", "AbortedError", "OutOfRangeError", "UnimplementedError",
    "InternalError", "UnavailableError", "DataLossError", "CancelledError", "UnknownError", "DeadlineExceededError",
    "OperatorNotAllowedInGraphError"}


# The types of what a verdict may name in a hidden case: Python's, NumPy's dtypes, and what TensorFlow
# and Keras return to the probes (the student's own types are named by nothing).
KNOWN_TYPES = KNOWN_ERRORS | frozenset(_BUILTIN_TYPES) | {
    "NoneType", "function", "method", "ndarray", "EagerTensor", "Tensor", "SymbolicTensor", "RaggedTensor", "Variable",
    "ResourceVariable", "KerasVariable", "Embedding", "GRU", "GRUCell", "LSTM", "SimpleRNN", "RNN", "Dense", "Dropout",
    "InputLayer", "Sequential", "Functional", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
    "LossFunctionWrapper", "Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "Nadam", "Ftrl", "Lion",
    "DatasetV2", "_PrefetchDataset", "_BatchDataset", "_MapDataset", "_ParallelMapDataset", "_ShuffleDataset",
    "_TensorSliceDataset", "_FlatMapDataset", "_WindowDataset", "_TakeDataset", "_SkipDataset", "_RepeatDataset",
    "_UnbatchDataset", "_FilterDataset", "_ZipDataset", "_RangeDataset", "_TensorDataset", "_GeneratorDataset",
    "_OptionsDataset", "_ParallelBatchDataset", "_CacheDataset", "_PaddedBatchDataset"} | frozenset(
    np.dtype(code).name for code in np.typecodes["All"] if code not in "MmV") | {"string", "variant", "resource"}


def unquotable(check: dict) -> bool:
    """Whether this check's verdict may quote nothing the student's code chose (its exceptions' types,
    messages and lines, its values' types and shapes): a hidden check, and any check the notebook runs
    after one, since the code has seen that one's inputs by then and could carry them out."""
    return bool(check.get("hidden", True) or check.get("after_hidden"))


def raised(o: dict, hidden: bool) -> str:
    """What the student's code raised: its type and first meaningful line, the student's line that
    raised, and the fix when it is a known Keras 3 break. In a hidden case (or after one: `unquotable`),
    only its type, and only one of KNOWN_ERRORS, with the fix: the student's code saw the hidden inputs
    and chose everything else (its own type's name, its message, the line that raised), which could
    carry them out; the fix is the course's own text, one of a few."""
    error = str(o.get("error", ""))
    name, _, message = error.partition(":")
    if hidden and name.strip() not in KNOWN_ERRORS:
        return "raised an exception of a type of its own"
    message = "" if hidden else first_line(str(o.get("message", message)))
    text = f"raised {name.strip()}: {message}" if message else f"raised {name.strip()}"
    where = o.get("where") if isinstance(o.get("where"), dict) and not hidden else {}
    if isinstance(where.get("line"), int):
        cell = f"In [{where['cell']}], " if isinstance(where.get("cell"), int) else ""
        text += f" (your code: {cell}line {where['line']})"
    code = o.get("code") if isinstance(o.get("code"), list) else []
    hint = pitfall_hint(str(o.get("message", error)), code)
    return f"{text}. {hint}" if hint else text
