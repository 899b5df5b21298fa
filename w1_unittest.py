"""Unit tests for the Deep N-grams assignment (character-level language model with a GRU).

Call them from the notebook with your function or class, for example::

    import w1_unittest
    w1_unittest.test_line_to_tensor(line_to_tensor)

Each test prints "All tests passed" when your code is right. Otherwise it raises an
AssertionError that lists every failed case with what was expected and what came back.

The expected values are read from the files next to this module: ``model/model_card.json``
(vocabulary, model sizes), ``model/reference_values.json`` (values computed from the
pretrained weights), ``model/grulm.weights.h5`` (the pretrained weights) and
``data/shakespeare_data.txt`` (the corpus).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import io
import json
import logging
import math
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
from termcolor import colored

# As this module finds them, before any notebook code runs: the optimizer and the loss your
# compile_model is compared with.
_ADAM = tf.keras.optimizers.Adam
_SPARSE_CROSSENTROPY = tf.keras.losses.SparseCategoricalCrossentropy

ROOT = Path(__file__).resolve().parent
MODEL_DIR = ROOT / "model"
DATA_PATH = ROOT / "data" / "shakespeare_data.txt"
REFERENCE_PATH = MODEL_DIR / "reference_values.json"
CARD_PATH = MODEL_DIR / "model_card.json"
WEIGHTS_PATH = MODEL_DIR / "grulm.weights.h5"

UNK_ID = 0
PADDING_ID = 1
_SAMPLE_LENGTH = 20  # characters sampled at temperature 1 in test_GenerativeModel
_SAMPLE_ROWS = 2000  # prompts generate_one_step samples for at once in test_GenerativeModel

# Tolerances, the same for these tests and the grader (which reads them from here).
ATOL = 1e-4  # a float32 result against the float64 one, or against itself computed another way
LOG_SUM_ATOL = 1e-3  # log probabilities: their logsumexp over the last axis is 0 within this
RATE_ATOL = 1e-7  # the optimizer's learning rate
ADAM_ATOL = 1e-5  # a weight after a few training steps, against Adam's (each step moves it by about the rate)
# Adam divides by sqrt(v) + epsilon: a weight whose sqrt(v) was ever under this took a step that depends on
# epsilon itself (1e-7 in Keras, 1e-8 in PyTorch and Adam's paper, 1e-6 elsewhere), and is not compared.
ADAM_EPSILON_REACH = 1e-3
# Your optimizer is also given made-up gradients, the same as Adam's own (see optimizer_trial), starting from
# weights of size ADAM_WEIGHT: a large first step (a clipped gradient is smaller), a small second one (its step
# still carries the first's), and a third after ADAM_LATER_STEP steps, where Adam's bias corrections are 1
# and its step is m / (sqrt(v) + epsilon): there another beta_1 or beta_2 gives another step. A weight decay
# shrinks weights this size by more than float noise; an average of the weights shows once training ends.
ADAM_GRADIENT_SIZES = (4.0, 0.25, 1.0)
ADAM_DEFAULTS = (" (leave Adam's other settings at their defaults: no clipping, weight decay, other betas or "
                 "weight average)")
ADAM_LATER_STEP = 10 ** 6
ADAM_WEIGHT = 10.0
# A shuffled dataset's examples come in an order not tied to their chunks' order in the text: under a
# uniform shuffle of n chunks, Spearman's rho (place in the run against place in the text) times
# sqrt(n - 1) is about standard normal, so |rho| > SHUFFLE_Z / sqrt(n - 1) fails a correct shuffle about
# once in 10^7 runs (two-sided). See order_correlation.
SHUFFLE_Z = 5.33
# What to do when every pass over the dataset comes in the same order (the grader's feedback says it too).
RESHUFFLE_HINT = ("shuffle(BUFFER_SIZE) draws a new order at each epoch: leave its reshuffle_each_iteration at "
                  "True, and cache() nothing after it")

# Code that circulates for this assignment and breaks under Keras 3: (where the sign shows, in the
# error message or in your code; the sign; what to do). The grader's feedback reads this table too.
KERAS3_PITFALLS = [
    ("code", "get_initial_state(",
     "In Keras 3, `get_initial_state` takes the batch size, not the inputs: leave `states` as None (the "
     "GRU then starts from zeros) or call `self.gru.get_initial_state(tf.shape(x)[0])`."),
    ("message", "takes 1 positional argument but 2 were given",
     "In Keras 3, call `super().__init__()` without `self`: Python passes it already."),
    ("message", "ragged",
     "The GRU takes a dense tensor: turn the ragged ids of a list of lines into one with `.to_tensor()`."),
    ("message", "Found reserved mask token at unexpected location",
     "With '' at index 1 of the vocabulary, Keras 3 refuses `mask_token=''`: pass `mask_token=None`, and '' "
     "is then an ordinary token, the padding id 1."),
    ("message", "Argument(s) not recognized: {'lr'",
     "Keras 3 optimizers take `learning_rate=`, not `lr=`."),
    ("message", "missing a required argument: 'sequences'",
     "In Keras 3, a GRU's input is called `sequences`, not `inputs`: pass it by position, "
     "`self.gru(x, initial_state=states, training=training)`."),
    ("message", "Only input tensors may be passed as positional arguments",
     "A Keras 3 model takes only tensors by position: pass the rest by keyword, "
     "`self.model(inputs=input_ids, states=states, return_state=True)`."),
]
__all__ = [
    "test_line_to_tensor", "test_create_batch_dataset", "test_GRULM_layers", "test_GRULM_outputs",
    "test_compile_model", "test_log_perplexity", "test_temperature_random_sampling",
    "test_GenerativeModel", "load_reference", "pretrained_lm", "vocab", "model_card", "check", "quiet",
]


# ----------------------------------------------------------------------------------------
# Files next to this module
# ----------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the notebook must run from the assignment folder that holds "
            f"w1_unittest.py, data/ and model/.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_reference() -> dict:
    """The reference values (model/reference_values.json), read afresh on every call."""
    return _read_json(REFERENCE_PATH)


def model_card() -> dict:
    """The model card (model/model_card.json): vocabulary, hyperparameters, training record."""
    return _read_json(CARD_PATH)


def vocab() -> list[str]:
    """The vocabulary the pretrained weights use: '[UNK]' (id 0), '' (id 1), then the characters."""
    return list(model_card()["vocab"])


def _sizes() -> tuple[int, int, int]:
    """(vocab_size, embedding_dim, rnn_units) of the course model, from the model card."""
    card = model_card()
    return len(card["vocab"]), int(card["hparams"]["embedding_dim"]), int(card["hparams"]["rnn_units"])


def _corpus_lines(start: int, count: int, alphabet: set[str]) -> list[str]:
    """`count` corpus lines from line `start` on, keeping only lines written in `alphabet`."""
    if not DATA_PATH.is_file():
        raise FileNotFoundError(f"{DATA_PATH} is missing: run the notebook from the assignment folder.")
    lines = []
    with open(DATA_PATH, encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.strip()
            if i < start or not line or not set(line) <= alphabet:
                continue
            lines.append(line)
            if len(lines) >= count:
                break
    return lines


# ----------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------
def _colour(text: str, color: str) -> str:
    if os.environ.get("NO_COLOR") or os.environ.get("ANSI_COLORS_DISABLED"):
        return text
    try:  # colour even when the output is not a terminal (a notebook, a grader's log)
        return colored(text, color, force_color=True)
    except TypeError:  # termcolor older than 2.1
        return colored(text, color)


def _short(value, limit: int = 300) -> str:
    """A readable, bounded description of a value (tensors shown by their contents)."""
    try:
        if isinstance(value, (tf.Tensor, tf.RaggedTensor)):
            kind = "tf.RaggedTensor" if isinstance(value, tf.RaggedTensor) else "tf.Tensor"
            data = value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy()
            if isinstance(data, np.ndarray):
                data = np.array2string(data, threshold=20, edgeitems=3, precision=5)
            text = f"{kind}({data}, dtype={value.dtype.name}, shape={tuple(value.shape)})"
        elif isinstance(value, np.ndarray):
            text = f"np.array({np.array2string(value, threshold=20, edgeitems=3, precision=5)}, dtype={value.dtype})"
        elif isinstance(value, str):
            text = repr(value) if any(c in value for c in "\n\t\r") or value == "" else value
        else:
            text = repr(value)
    except Exception:  # a value that cannot even be printed
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split()) if "\n" in text and len(text) > 80 else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(error) -> str:
    """The exception's (or its message's) first meaningful line: no terminal codes, no TensorFlow or
    Keras boilerplate, not cut in the middle of a sentence."""
    import re
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(error))
    frame_indent = None  # inside a traceback frame of the message: its "File ..." line's indent
    in_user_code = "in user code:" in text
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if frame_indent is not None and line.strip() and indent > frame_indent:
            continue  # the source line under a frame
        frame_indent = indent if re.match(r'File ".*", line \d+', line.lstrip()) else None
        if frame_indent is not None:
            continue  # where tf.function or a graph op was called: the traceback shows it better
        # The patterns take time in proportion to the line, whatever it holds (the grader runs them
        # on messages a submission wrote): no run of characters is tried again from each start.
        line = re.sub(r"\{\{function_node [^{}]*\}\}\s*", "", line)
        op = re.search(r"\[Op:\w+\]( name: .*)?$", line)
        line = (line[:op.start()] if op else line).strip()
        # Inside tf.function the error comes "in user code:", then the frames, then "ValueError: ...".
        line = re.sub(r"^[A-Za-z_][\w.]*(Error|Exception): ", "", line) if in_user_code else line
        if line and not line.startswith(("Exception encountered when calling", "Arguments received by",
                                          "Graph execution error", "Detected at node", "in user code:", "\u2022")):
            if len(line) > 400:
                end, space = line.rfind(". ", 0, 400), line.rfind(" ", 100, 400)
                line = line[:end + 1] if end > 100 else line[:space if space > 0 else 400] + " ..."
            return line
    return ""


def pitfall_hint(message: str, code_lines: list[str]) -> str:
    """The fix for a known Keras 3 break, in one sentence ("" when the error is not one of them)."""
    for where, sign, hint in KERAS3_PITFALLS:
        haystack = message if where == "message" else "\n".join(code_lines)
        if sign.lower() in haystack.lower():
            return hint
    return ""


def _describe_exception(error: BaseException) -> "_Raised":
    """'TypeError in your_function(), line N: message' for an exception raised by the tested code,
    with the fix when it is a known Keras 3 break."""
    here = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) != here
              and "site-packages" not in f.filename and "dist-packages" not in f.filename
              and not f.filename.startswith("<frozen")]
    where = f" in {frames[-1].name}(), line {frames[-1].lineno}" if frames else ""
    message = _first_line(error)
    hint = pitfall_hint(str(error), [f.line or "" for f in frames])
    text = f"{type(error).__name__}{where}: {message}" if message else f"{type(error).__name__}{where}"
    return _Raised(f"{text}. {hint}" if hint else text)


class _Raised(str):
    """The description of an exception your code raised: shown whole, and once for all the cases it broke."""


def _format_failures(title: str, failures: list[tuple[str, object, object]], passed: int) -> str:
    lines = [f"{title}: {len(failures)} failed case{'s' if len(failures) != 1 else ''}"
             + (f" ({passed} passed)" if passed else "")]
    groups: dict = {}  # the same exception in several cases: said once
    for case, expected, got in failures:
        key = ("raised", got) if isinstance(got, _Raised) else ("case", len(groups))
        groups.setdefault(key, ([], expected, got))[0].append(case)
    for cases, expected, got in groups.values():
        name = f"Failed case: {cases[0]}" if len(cases) == 1 else \
            f"Failed cases ({len(cases)}, the same error): " + "; ".join(cases)
        lines.append(_colour(name, "red"))
        lines.append(f"    Expected: {_short(expected)}")
        lines.append(f"    Got:      {got if isinstance(got, _Raised) else _short(got)}")
    return "\n".join(lines)


def check(condition: bool, case: str, expected, got) -> None:
    """Raise an AssertionError naming `case`, `expected` and `got` unless `condition` holds."""
    __tracebackhide__ = True  # noqa: F841 - IPython and pytest show the student's frame, not this one
    if not condition:
        raise AssertionError(_format_failures("Test failed", [(case, expected, got)], 0))


@contextlib.contextmanager
def _quiet():
    """Run code with warnings, log records and stderr (Python's and the C++ runtime's) held back.

    Everything is restored on the way out: nothing set here outlives the block.
    """
    buffer = io.StringIO()
    saved_fd, sink = None, None
    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:  # the C++ runtime writes its log lines straight to file descriptor 2
        sink = tempfile.TemporaryFile()
        saved_fd = os.dup(2)
        os.dup2(sink.fileno(), 2)
    except (OSError, ValueError, AttributeError):
        if saved_fd is not None:
            os.close(saved_fd)
        saved_fd = None
    previous_disable = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stderr(buffer):
                yield buffer
    finally:
        logging.disable(previous_disable)
        if saved_fd is not None:
            try:
                os.dup2(saved_fd, 2)
            finally:
                os.close(saved_fd)
        if sink is not None:
            sink.close()


quiet = _quiet  # for the notebook's hidden tests: `with w1_unittest.quiet(): ...`


def _quietly(test):
    """Run a whole test function under `_quiet` (its own setup included)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        # The failure is raised again from here, a frame IPython and pytest hide: "Failed case /
        # Expected / Got" is what the student reads first, not this module's code.
        __tracebackhide__ = True  # noqa: F841
        try:
            with _quiet():
                return test(*args, **kwargs)
        except AssertionError as failure:
            message = str(failure)
        raise AssertionError(message) from None
    return run


class _CaseFailed(Exception):
    pass


class _Case:
    """One named case: its checks stop at the first failure; an exception counts as a failure."""

    def __init__(self, report: "_Report", name: str, fatal: bool):
        self.report, self.name, self.fatal = report, name, fatal
        self._quiet = None

    def check(self, condition, what: str, expected, got) -> None:
        if not condition:
            raise _CaseFailed(f"{self.name}: {what}" if what else self.name, expected, got)

    def __enter__(self):
        self._quiet = _quiet()
        self._quiet.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._quiet.__exit__(None, None, None)
        if exc_type is None:
            self.report.passed += 1
            return False
        if not issubclass(exc_type, Exception):
            return False  # KeyboardInterrupt, SystemExit: let them through
        if isinstance(exc, _CaseFailed):
            self.report.failures.append(exc.args)
        else:
            self.report.failures.append((self.name, "to run without an exception", _describe_exception(exc)))
        if self.fatal:
            raise AssertionError(self.report.message() + "\n(the remaining cases need this one and were not run)") from None
        return True


class _Report:
    def __init__(self, title: str):
        self.title = title
        self.failures: list[tuple[str, object, object]] = []
        self.passed = 0

    def case(self, name: str, fatal: bool = False) -> _Case:
        return _Case(self, name, fatal)

    def message(self) -> str:
        return _format_failures(self.title, self.failures, self.passed)

    def finish(self) -> None:
        __tracebackhide__ = True  # noqa: F841
        if self.failures:
            raise AssertionError(self.message())
        print(_colour("All tests passed", "green"))


# ----------------------------------------------------------------------------------------
# Small numeric helpers (numpy)
# ----------------------------------------------------------------------------------------
def _np(value) -> np.ndarray:
    if isinstance(value, tf.RaggedTensor):
        raise TypeError("got a tf.RaggedTensor where a dense tensor was expected")
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _is_int_dtype(dtype) -> bool:
    try:
        return tf.as_dtype(dtype).is_integer
    except TypeError:
        return False


# ----------------------------------------------------------------------------------------
# Trusted models the tests feed to your code
# ----------------------------------------------------------------------------------------
def _called_like_a_keras_model(call):
    """Keras 3 refuses a model call that passes anything but tensors (or None) by position, such
    as ``model(ids, states, True)``: the models the tests hand to your code refuse it the same way,
    so code that the GRULM would refuse does not pass here (the grader's models do likewise)."""
    @functools.wraps(call)
    def checked(self, *args, **kwargs):
        for value in tf.nest.flatten(args):
            if not (value is None or tf.is_tensor(value) or isinstance(value, (np.ndarray, np.generic))):
                raise ValueError("Only input tensors may be passed as positional arguments. The following argument "
                                 f"value should be passed as a keyword argument: {value!r} (of type {type(value)})")
        return call(self, *args, **kwargs)
    # Keras' own __call__ takes (*args, **kwargs): tf.function(model) must see that, not `call`'s named
    # arguments, or it would pass `return_state=True` by position and be refused here but not by Keras.
    del checked.__wrapped__
    return checked


class _Sizes:
    """What your code may read of a layer: its sizes."""

    def __init__(self, **sizes):
        self.__dict__.update(sizes)


class _Layer(_Sizes):
    """A layer of the course's GRULM as your code may read and call it: a GRULM layer's sizes, and a
    call that computes what the test model computes at that point (the tests' models compute with
    plain TensorFlow, not with Keras layers). As a Keras layer, it takes `training` by keyword."""

    def __init__(self, run, **sizes):
        super().__init__(**sizes)
        self._run = run

    def call(self, inputs, training=None):
        return self._run(inputs)

    __call__ = _called_like_a_keras_model(call)  # as in Keras: layer(...) checks its arguments


class _GRULayer(_Layer):
    """The GRU, called as Keras 3's GRU(units, return_sequences=True, return_state=True): it returns the
    sequence of outputs, (batch, time, units), and the last state, (batch, units)."""

    def __init__(self, run, units: int):
        super().__init__(run, units=units, state_size=[units], return_sequences=True, return_state=True)
        self.cell = _Sizes(units=units, state_size=units)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if mask is not None:
            raise ValueError("the tests' GRU takes no mask: a generator has no padding to hide")
        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        return self._run(sequences, initial_state)

    __call__ = _called_like_a_keras_model(call)

    def get_initial_state(self, batch_size):
        """As Keras 3's GRU layer: a list of one float32 tensor of zeros, shape (batch_size, units)."""
        return [tf.zeros((batch_size, self.units), dtype=tf.float32)]


def _like_a_GRULM(model, vocab_size: int, embedding_dim: int, units: int) -> None:
    """Give a test model the layers of a GRULM(vocab_size, embedding_dim, units), each with a GRULM
    layer's sizes: ``model.embedding`` (``input_dim``, ``output_dim``), ``model.gru`` (``units``,
    ``state_size``, ``cell.units``, ``get_initial_state(batch_size)``), ``model.dense`` (``units``), and
    ``model.layers``, the three in turn. They compute what the model computes: its ``_embed``, then its
    ``_recur`` (ids' vectors and a state or None, to the outputs and the last state), then its
    ``_project`` (outputs to log probabilities); calling the model runs them. In every test model, zero
    states (and states=None) are the state it starts from, as in a GRU."""
    model.vocab_size, model.units = vocab_size, units
    model.embedding = _Layer(model._embed, input_dim=vocab_size, output_dim=embedding_dim)
    model.gru = _GRULayer(model._recur, units)
    model.dense = _Layer(model._project, units=vocab_size)
    model.layers = [model.embedding, model.gru, model.dense]


class _LayeredLM:
    """A test model called like a GRULM: ``lm(inputs, states=None, return_state=False, training=False)``
    returns log probabilities of shape (batch, time, vocab_size) and, if asked, the final state of
    shape (batch, rnn_units), computed by its embedding, gru and dense in turn (see `_like_a_GRULM`)."""

    def call(self, inputs, states=None, return_state=False, training=False):
        shape = tuple(tf.convert_to_tensor(inputs).shape)
        if len(shape) != 2:
            raise ValueError(f"expected inputs of shape (batch, time), got shape {shape}")
        sequence, state = self.gru(self.embedding(inputs), initial_state=states)
        log_probs = self.dense(sequence)
        return (log_probs, state) if return_state else log_probs

    __call__ = _called_like_a_keras_model(call)  # as in Keras: model(...) checks its arguments, model.call(...) not


def _ids(inputs):
    ids = tf.convert_to_tensor(inputs)
    return ids if ids.dtype.is_integer else tf.cast(ids, tf.int64)


def _start(states, batch, units: int):
    """The state a test model starts from: zeros for None, else the one given, as float32."""
    return tf.zeros((batch, units)) if states is None else tf.cast(tf.convert_to_tensor(states), tf.float32)


class _PretrainedLM(_LayeredLM):
    """The pretrained course model, computed with plain TensorFlow ops from the weights file: a GRULM
    whose layers hold the pretrained weights (see `_LayeredLM`)."""

    def __init__(self, weights_path: Path = WEIGHTS_PATH):
        with h5py.File(weights_path, "r") as f:
            def var(name):
                return tf.constant(np.asarray(f[name][()], dtype=np.float32))
            self.embedding_matrix = var("embedding/vars/0")  # (V, E)
            self.kernel = var("gru/cell/vars/0")  # (E, 3U), gates z, r, h
            self.recurrent_kernel = var("gru/cell/vars/1")  # (U, 3U)
            bias = var("gru/cell/vars/2")  # (2, 3U): input bias, recurrent bias
            self.input_bias, self.recurrent_bias = bias[0], bias[1]
            self.dense_kernel = var("dense/vars/0")  # (U, V)
            self.dense_bias = var("dense/vars/1")  # (V,)
        vocab_size, embedding_dim = (int(d) for d in self.embedding_matrix.shape)
        _like_a_GRULM(self, vocab_size, embedding_dim, int(self.recurrent_kernel.shape[0]))

    def _embed(self, inputs):
        return tf.gather(self.embedding_matrix, _ids(inputs))

    def _recur(self, x, states):
        x = tf.cast(tf.convert_to_tensor(x), tf.float32)
        h = _start(states, tf.shape(x)[0], self.units)
        xw = tf.einsum("bte,eg->btg", x, self.kernel) + self.input_bias  # (b, t, 3U)

        def step(h, xw_t):
            x_z, x_r, x_h = tf.split(xw_t, 3, axis=-1)
            h_z, h_r, h_h = tf.split(tf.matmul(h, self.recurrent_kernel) + self.recurrent_bias, 3, axis=-1)
            z = tf.sigmoid(x_z + h_z)
            r = tf.sigmoid(x_r + h_r)
            return z * h + (1.0 - z) * tf.tanh(x_h + r * h_h)

        # tf.scan, not a Python loop: the model also runs inside a student's tf.function.
        seq = tf.transpose(tf.scan(step, tf.transpose(xw, [1, 0, 2]), initializer=h), [1, 0, 2])  # (b, t, U)
        return seq, tf.cond(tf.shape(seq)[1] > 0, lambda: seq[:, -1], lambda: h)

    def _project(self, outputs):
        outputs = tf.cast(tf.convert_to_tensor(outputs), tf.float32)
        return tf.nn.log_softmax(tf.tensordot(outputs, self.dense_kernel, axes=1) + self.dense_bias, axis=-1)


_LM_CACHE: dict = {}


def pretrained_lm() -> _PretrainedLM:
    """The pretrained model as a `_PretrainedLM` (cached until the weights file changes)."""
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(
            f"{WEIGHTS_PATH} is missing: the notebook must run from the assignment folder that holds "
            f"w1_unittest.py, data/ and model/.")
    stat = WEIGHTS_PATH.stat()
    key = (str(WEIGHTS_PATH), stat.st_mtime_ns, stat.st_size)
    if key not in _LM_CACHE:
        _LM_CACHE.clear()
        _LM_CACHE[key] = _PretrainedLM(WEIGHTS_PATH)
    return _LM_CACHE[key]


class _BiasedLM(_LayeredLM):
    """The pretrained model with +50 added to the log probabilities of '[UNK]' and padding."""

    def __init__(self, base: _PretrainedLM):
        self.base = base
        self.bias = tf.constant([50.0, 50.0] + [0.0] * (base.vocab_size - 2))
        self._embed, self._recur = base._embed, base._recur
        _like_a_GRULM(self, base.vocab_size, base.embedding.output_dim, base.units)

    def _project(self, outputs):
        return self.base._project(outputs) + self.bias


class _CycleLM(_LayeredLM):
    """A made-up model whose next character depends on the state and on the last input.

    The state counts the characters read so far. After reading character c as the m-th
    character, the model is sure the next one is ``cycle[(position of c in cycle) + m]``
    (position 0 for characters outside the cycle). Its greedy output is right only if the
    generator carries the state from call to call and feeds back what it generated. Zero states
    (count 0) are where it starts, as states=None. `embedding_dim` is the course's unless given.
    Its layers: the embedding gives each character's position in the cycle (first number), the GRU
    the count and that position (first two), the dense layer the character they name.
    """

    def __init__(self, voc: list[str], units: int, cycle: str = "abcdefghijk", embedding_dim: int | None = None):
        if units < 2:
            raise ValueError(f"a cycle model carries two numbers in its GRU's outputs: units={units} is too few")
        cycle = "".join(c for c in cycle if c in voc) or "".join(voc[2:12])
        self.cycle = cycle
        self.cycle_ids = np.array([voc.index(c) for c in cycle])
        self.position = {voc.index(c): i for i, c in enumerate(cycle)}
        _like_a_GRULM(self, len(voc), embedding_dim or _sizes()[1], units)

    def _next(self, last_position: int, count: int) -> int:
        return (last_position + count) % len(self.cycle)

    # TensorFlow ops only: the model also runs inside a student's tf.function.
    def _embed(self, inputs):
        ids = _ids(inputs)
        positions = tf.constant([self.position.get(i, 0) for i in range(self.vocab_size)], dtype=tf.float32)
        first = tf.gather(positions, ids)[..., None]
        return tf.concat([first, tf.zeros(tf.concat([tf.shape(ids), [self.embedding.output_dim - 1]], 0))], -1)

    def _recur(self, x, states):
        x = tf.cast(tf.convert_to_tensor(x), tf.float32)
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        start = tf.round(_start(states, batch, self.units)[:, 0])
        count = start[:, None] + tf.cast(tf.range(1, steps + 1), tf.float32)[None, :]  # (b, t)
        outputs = tf.concat([tf.stack([count, x[..., 0]], -1), tf.zeros([batch, steps, self.units - 2])], -1)
        last = start + tf.cast(steps, tf.float32)
        return outputs, tf.concat([last[:, None], tf.zeros([batch, self.units - 1])], axis=1)

    def _project(self, outputs):
        outputs = tf.cast(tf.convert_to_tensor(outputs), tf.float32)
        count, position = (tf.cast(tf.round(outputs[..., i]), tf.int64) for i in (0, 1))
        target = tf.gather(tf.constant(self.cycle_ids, dtype=tf.int64), (position + count) % len(self.cycle))
        return tf.nn.log_softmax(tf.one_hot(target, self.vocab_size, on_value=20.0, off_value=-20.0))


def _cycle_text(toy: _CycleLM, prefix: str, n: int) -> str:
    """What greedy generation with `toy` writes after `prefix` (kept out of the model handed to your code)."""
    text, count = prefix, len(prefix)
    for _ in range(n):
        last = toy.cycle.find(text[-1]) if text[-1] in toy.cycle else 0
        text += toy.cycle[toy._next(last, count)]
        count += 1
    return text


class _FixedLM(_LayeredLM):
    """A made-up model that always predicts the same distribution: `p` over the characters `chars`,
    and '[UNK]' and the padding even likelier (a generator must never emit them). Its states, and
    what its embedding and GRU give, are zeros. `embedding_dim` is the course's unless given."""

    def __init__(self, voc: list[str], chars: str, p, units: int, embedding_dim: int | None = None):
        logits = np.full(len(voc), -40.0)
        logits[[voc.index(c) for c in chars]] = np.log(p)
        logits[:2] = np.log(p).max() + 1.0
        self.log_probs = tf.constant(_np_log_softmax(logits).astype(np.float32))
        _like_a_GRULM(self, len(voc), embedding_dim or _sizes()[1], units)

    def _embed(self, inputs):
        return tf.zeros(tf.concat([tf.shape(_ids(inputs)), [self.embedding.output_dim]], 0))

    def _recur(self, x, states):
        shape = tf.shape(x)
        return tf.zeros([shape[0], shape[1], self.units]), tf.zeros([shape[0], self.units])

    def _project(self, outputs):
        return tf.broadcast_to(self.log_probs, tf.concat([tf.shape(outputs)[:-1], [self.vocab_size]], axis=0))


# ----------------------------------------------------------------------------------------
# Exercise 1: line_to_tensor
# ----------------------------------------------------------------------------------------
def _rows(value) -> list[list[int]]:
    """Rows of ids from a ragged tensor (or a list of tensors)."""
    if isinstance(value, tf.RaggedTensor):
        return value.to_list()
    if isinstance(value, (list, tuple)):
        return [_np(row).tolist() for row in value]
    return _np(value).tolist()


@_quietly
def test_line_to_tensor(line_to_tensor):
    """One int64 id per Unicode character; a list of lines gives one row per line; unknown -> 0."""
    report = _Report("test_line_to_tensor")
    voc = vocab()
    cases = [(c["line"], c["ids"]) for c in load_reference()["line_to_tensor"]]
    unknown = "".join(c for c in "\u00e9\u00df\u00e6\u0436\u20ac\u2713\U0001F600" if c not in voc)
    cases.append((unknown, [UNK_ID] * len(unknown)))

    for line, ids in cases:
        with report.case(f"line_to_tensor({line!r}, vocab)") as case:
            out = line_to_tensor(line, voc)
            case.check(isinstance(out, tf.Tensor), "type", "a tf.Tensor", type(out).__name__)
            case.check(out.dtype == tf.int64, "dtype", "int64", out.dtype.name)
            case.check(tuple(out.shape) == (len(line),), "shape (one id per character)", (len(line),), tuple(out.shape))
            case.check(out.numpy().tolist() == ids, "ids", ids, out.numpy().tolist())

    small_vocab = ["[UNK]", "", " ", "a", "b", "c"]
    with report.case(f"line_to_tensor('cab bad', {small_vocab}) uses the vocab it is given") as case:
        out = line_to_tensor("cab bad", small_vocab)
        got = _np(out).tolist()
        case.check(got == [5, 3, 4, 2, 4, 3, 0], "ids", [5, 3, 4, 2, 4, 3, 0], got)

    lines = [line for line, _ in cases]
    with report.case(f"line_to_tensor(a list of {len(lines)} lines, vocab)") as case:
        out = line_to_tensor(lines, voc)
        case.check(out.dtype == tf.int64, "dtype", "int64", getattr(out.dtype, "name", out.dtype))
        rows = _rows(out)
        case.check(len(rows) == len(lines), "one row per line", len(lines), len(rows))
        for line, (_, ids), row in zip(lines, cases, rows):
            case.check(row == ids, f"row of {line!r}", ids, row)

    with report.case(f"line_to_tensor(tf.constant(a list of {len(lines)} lines), vocab), as GenerativeModel "
                     "calls it") as case:
        out = line_to_tensor(tf.constant(lines), voc)
        case.check(isinstance(out, tf.RaggedTensor), "type", "a tf.RaggedTensor, one row per line",
                   type(out).__name__)
        case.check(_rows(out) == [ids for _, ids in cases], "rows", [ids for _, ids in cases], _rows(out))
    report.finish()


# ----------------------------------------------------------------------------------------
# Exercise 2: create_batch_dataset
# ----------------------------------------------------------------------------------------
def _check_dataset(case: _Case, dataset, text: str, voc: list[str], seq_length: int, batch_size: int,
                   iterations: int = 1) -> list[list[str]]:
    """Check the structure of one dataset; return the chunks of each iteration, in order."""
    case.check(isinstance(dataset, tf.data.Dataset), "type", "a tf.data.Dataset", type(dataset).__name__)
    spec = dataset.element_spec
    expected_spec = (tf.TensorSpec((batch_size, seq_length), tf.int64),) * 2
    case.check(isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, tf.TensorSpec) for s in spec),
               "element_spec is a pair (input, target)", expected_spec, spec)
    case.check(all(s.dtype == tf.int64 for s in spec), "element_spec dtype", expected_spec, spec)
    # A None is a size TensorFlow cannot know (a dataset built another way): the batches below say the sizes.
    case.check(all(s.shape.rank == 2 and all(size in (None, want) for size, want in
                                             zip(s.shape.as_list(), (batch_size, seq_length))) for s in spec),
               "element_spec shape (batch_size, seq_length)", expected_spec, spec)

    size = seq_length + 1
    chunks = [text[k * size:(k + 1) * size] for k in range(len(text) // size)]
    available = collections.Counter(chunks)
    expected_batches = len(chunks) // batch_size
    runs = []
    for _ in range(iterations):
        seen, n_batches = [], 0
        for element in dataset:
            x, y = (_np(t) for t in element)
            n_batches += 1
            case.check(x.shape == y.shape == (batch_size, seq_length), f"batch {n_batches}: input and target of "
                       "shape (batch_size, seq_length)", (batch_size, seq_length), (x.shape, y.shape))
            case.check(np.array_equal(x[:, 1:], y[:, :-1]), f"batch {n_batches}: target is the input shifted by one",
                       x[:2, 1:], y[:2, :-1])
            for row in range(x.shape[0]):
                ids = list(x[row]) + [y[row, -1]]
                case.check(all(0 <= i < len(voc) for i in ids), f"batch {n_batches}: ids within the vocabulary",
                           f"0 <= id < {len(voc)}", ids)
                chunk = "".join(voc[i] for i in ids)
                case.check(chunk in available, f"batch {n_batches}, row {row}: input + last target is one of the "
                           f"chunks of {size} ids cut from the start of the joined text",
                           f"one of {chunks[:2]} ...", chunk)
                seen.append(chunk)
        case.check(n_batches == expected_batches, "number of batches: "
                   f"({len(text)} ids // (seq_length + 1)) // batch_size", expected_batches, n_batches)
        repeated = collections.Counter(seen) - available
        case.check(not repeated, "every chunk is used at most once", "no repeated chunk", sorted(repeated)[:3])
        runs.append(seen)
    return runs


def _consecutive(batch: list[str], index: dict[str, list[int]]) -> bool:
    """Whether the chunks of one batch follow each other in the text."""
    for a, b in zip(batch, batch[1:]):
        if not any(k + 1 in index[b] for k in index[a]):
            return False
    return True


def order_correlation(run: list, chunks: list) -> tuple:
    """(rho, limit): Spearman's rank correlation between where each example comes in `run` and where its
    chunk is in the text (`chunks`, in the text's order), and the largest |rho| a uniform shuffle of that
    many examples passes (SHUFFLE_Z / sqrt(n - 1)). Only the examples kept count; a chunk the text holds
    more than once takes the first of its places not yet taken; an example that is no chunk of the text,
    or a copy too many, is left out (other checks catch those). Plain Python: the grader runs it too."""
    places: dict = {}
    for k, chunk in enumerate(chunks):
        places.setdefault(chunk, []).append(k)
    taken: dict = {}
    order = []
    for chunk in run:
        used = taken.get(chunk, 0)
        if used < len(places.get(chunk, ())):
            order.append(places[chunk][used])
            taken[chunk] = used + 1
    n = len(order)
    if n < 2:
        return 0.0, float("inf")
    rank = {k: r for r, k in enumerate(sorted(order))}
    d2 = sum((i - rank[k]) ** 2 for i, k in enumerate(order))
    return 1 - 6 * d2 / (n * (n * n - 1)), SHUFFLE_Z / (n - 1) ** 0.5


@_quietly
def test_create_batch_dataset(create_batch_dataset):
    """Chunks of seq_length + 1 ids of the joined lines, split into (input, target), shuffled, batched."""
    report = _Report("test_create_batch_dataset")
    voc = vocab()
    alphabet = set(voc[2:])

    few = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
           "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles"]
    few = [line for line in few if set(line) <= alphabet]
    with report.case(f"create_batch_dataset({len(few)} short lines, vocab, seq_length=10, batch_size=4)") as case:
        _check_dataset(case, create_batch_dataset(few, voc, seq_length=10, batch_size=4), "\n".join(few), voc, 10, 4)

    # With one id more (a newline after the last line) these 19 ids would make 4 chunks of 5: two batches.
    pair = ["To be, or", "not to be"]
    with report.case(f"create_batch_dataset({pair}, vocab, seq_length=4, batch_size=2): a newline between "
                     f"the lines, none after the last") as case:
        _check_dataset(case, create_batch_dataset(pair, voc, seq_length=4, batch_size=2), "\n".join(pair), voc, 4, 2)

    lines = _corpus_lines(start=200, count=90, alphabet=alphabet)
    text = "\n".join(lines)
    label = f"create_batch_dataset({len(lines)} corpus lines, vocab, seq_length=10, batch_size=4)"
    with report.case(label) as case:
        runs = _check_dataset(case, create_batch_dataset(lines, voc, seq_length=10, batch_size=4), text, voc, 10, 4,
                              iterations=2)
        chunks = [text[k * 11:(k + 1) * 11] for k in range(len(text) // 11)]
        case.check(any(run != chunks[:len(run)] for run in runs), "the pairs are shuffled",
                   "an order that differs from the order of the text", "the order of the text, twice")
        for r, run in enumerate(runs, 1):
            rho, limit = order_correlation(run, chunks)
            case.check(abs(rho) <= limit, "the examples must be in a random order (shuffle the chunks with "
                       "shuffle(BUFFER_SIZE) before batching)",
                       f"|rho| <= {limit:.3f}, rho the rank correlation between each example's place in a run "
                       f"and its chunk's place in the text", f"rho = {rho:+.3f} in run {r} of {len(runs)}")
        index = collections.defaultdict(list)
        for k, chunk in enumerate(chunks):
            index[chunk].append(k)
        batches = [run[i:i + 4] for run in runs for i in range(0, len(run), 4)]
        case.check(not all(_consecutive(b, index) for b in batches),
                   "the pairs are shuffled before batching", "batches of chunks from all over the text",
                   "every batch holds consecutive chunks (shuffled after batching?)")
        case.check(runs[0] != runs[1], f"a new order at every pass over the dataset ({RESHUFFLE_HINT})",
                   "two passes in two different orders", "the same order twice")

    lines = _corpus_lines(start=0, count=1500, alphabet=alphabet)
    with report.case(f"create_batch_dataset({len(lines)} corpus lines, vocab) with the defaults") as case:
        _check_dataset(case, create_batch_dataset(lines, voc), "\n".join(lines), voc, 100, 64)
    report.finish()


# ----------------------------------------------------------------------------------------
# Exercise 3: GRULM
# ----------------------------------------------------------------------------------------
def _check_layers(case: _Case, model, vocab_size: int, embedding_dim: int, rnn_units: int) -> None:
    case.check(isinstance(model, tf.keras.Model), "GRULM is a tf.keras.Model", "a tf.keras.Model", type(model).__mro__)
    for name, cls in (("embedding", tf.keras.layers.Embedding), ("gru", tf.keras.layers.GRU),
                      ("dense", tf.keras.layers.Dense)):
        layer = getattr(model, name, None)
        case.check(isinstance(layer, cls), f"self.{name}", f"a tf.keras.layers.{cls.__name__}", type(layer).__name__)
    emb, gru, dense = model.embedding, model.gru, model.dense
    case.check((emb.input_dim, emb.output_dim) == (vocab_size, embedding_dim),
               "embedding (input_dim, output_dim)", (vocab_size, embedding_dim), (emb.input_dim, emb.output_dim))
    case.check(gru.units == rnn_units, "gru units", rnn_units, gru.units)
    case.check(gru.return_sequences is True, "gru return_sequences", True, gru.return_sequences)
    case.check(gru.return_state is True, "gru return_state", True, gru.return_state)
    case.check(dense.units == vocab_size, "dense units", vocab_size, dense.units)


def _check_log_probs(case: _Case, out, shape: tuple) -> None:
    case.check(isinstance(out, tf.Tensor), "model(inputs) returns one tensor when return_state is False",
               "a tf.Tensor", type(out).__name__)
    case.check(tuple(out.shape) == shape, "output shape (batch, time, vocab_size)", shape, tuple(out.shape))
    values = out.numpy().astype(np.float64)
    lse = np.log(np.exp(values).sum(axis=-1))
    case.check(np.all(np.abs(lse) < LOG_SUM_ATOL), "outputs are log probabilities: logsumexp over the last axis is 0",
               "0.0 everywhere", lse.ravel()[:5])
    case.check(np.all(values <= 1e-5), "outputs are log probabilities: all <= 0", "values <= 0", values.max())


@_quietly
def test_GRULM_layers(GRULM):
    """The layers, their sizes and parameter counts, and log-probability outputs."""
    report = _Report("test_GRULM_layers")
    ref = load_reference()
    vocab_size, embedding_dim, rnn_units = _sizes()
    small = (15, 6, 5)
    rng = np.random.default_rng(0)
    for sizes in ((vocab_size, embedding_dim, rnn_units), small):
        V, E, U = sizes
        label = f"GRULM(vocab_size={V}, embedding_dim={E}, rnn_units={U})"
        with report.case(label) as case:
            model = GRULM(vocab_size=V, embedding_dim=E, rnn_units=U)
            inputs = tf.constant(rng.integers(2, V, size=(2, 7)), dtype=tf.int64)
            try:
                out = model(inputs)  # first: a model may make its layers in build(), at its first call
            finally:  # the layers' own messages say more than the call's exception
                _check_layers(case, model, V, E, U)
            _check_log_probs(case, out, (2, 7, V))
            if sizes == small:
                expected = {"embedding": V * E, "gru": 3 * (E * U + U * U + 2 * U), "dense": U * V + V}
                expected["total"] = sum(expected.values())
            else:
                expected = ref["parameters"]
            got = {name: int(getattr(model, name).count_params()) for name in ("embedding", "gru", "dense")}
            got["total"] = int(model.count_params())
            case.check(got == expected, "parameter counts", expected, got)
    report.finish()


@_quietly
def test_GRULM_outputs(GRULM):
    """The course-size GRULM with the pretrained weights gives the reference log probabilities and states."""
    report = _Report("test_GRULM_outputs")
    ref = load_reference()["grulm"]
    atol = float(ref["atol"])
    V, E, U = _sizes()
    with report.case(f"GRULM(vocab_size={V}, embedding_dim={E}, rnn_units={U}) loads {WEIGHTS_PATH.name}",
                     fatal=True):
        model = GRULM(vocab_size=V, embedding_dim=E, rnn_units=U)
        model(tf.zeros((1, 1), dtype=tf.int64))
        model.load_weights(str(WEIGHTS_PATH))

    with report.case("model(tf.constant([[2]])), after load_weights, uses the loaded weights") as case:
        ids = tf.constant([[2]], dtype=tf.int64)  # the shape the model was built with
        got, want = _np(model(ids)), _np(pretrained_lm()(ids))
        case.check(_max_abs_diff(got, want) <= atol, f"log probabilities (atol {atol}): the same as the pretrained "
                   "model's (a @tf.function on call keeps the weights it first ran with: leave it out)",
                   want[0, 0, :5], got[0, 0, :5])

    inputs = tf.constant(ref["inputs"], dtype=tf.int64)
    batch, steps = inputs.shape
    full = full_state = None
    with report.case("model(inputs)") as case:
        out = model(inputs)
        _check_log_probs(case, out, (batch, steps, V))
        for (b, t), expected in zip(ref["positions"], ref["log_probs"]):
            got = out[b, t].numpy()
            case.check(_max_abs_diff(got, expected) <= atol, f"log probabilities at [{b}, {t}] (atol {atol})",
                       np.array(expected), got)
        full = out.numpy()

    with report.case("model(inputs, return_state=True)") as case:
        result = model(inputs, return_state=True)
        case.check(isinstance(result, (tuple, list)) and len(result) == 2, "returns (log_probs, state)",
                   "a pair (log_probs, state)", type(result).__name__)
        log_probs, state = result
        case.check(isinstance(state, tf.Tensor) and tuple(state.shape) == (batch, U), "state shape (batch, rnn_units)",
                   (batch, U), getattr(state, "shape", type(state).__name__))
        rows = np.array(ref["state_rows"])
        got = state.numpy()[:, :rows.shape[1]]
        case.check(_max_abs_diff(got, rows) <= atol, f"final state, first {rows.shape[1]} units (atol {atol})",
                   rows, got)
        if full is not None:
            case.check(_max_abs_diff(log_probs.numpy(), full) <= 1e-5, "log_probs equal those of model(inputs)",
                       full[0, 0, :5], log_probs.numpy()[0, 0, :5])
        full_state = state.numpy()

    k = steps // 3
    with report.case(f"model(inputs[:, {k}:], states=<state after inputs[:, :{k}]>, return_state=True)") as case:
        _, head_state = model(inputs[:, :k], return_state=True)
        tail, tail_state = model(inputs[:, k:], states=head_state, return_state=True)
        fresh = model(inputs[:, k:])
        case.check(_max_abs_diff(fresh.numpy(), tail.numpy()) > 1e-3, "passing states changes the result",
                   "log probabilities that differ from those of model(inputs[:, {k}:])".format(k=k),
                   "the same log probabilities (is the incoming state passed to the GRU?)")
        if full is not None:
            case.check(_max_abs_diff(tail.numpy(), full[:, k:]) <= ATOL,
                       f"equals the tail of running the whole sequence at once (atol {ATOL})", full[0, k, :5],
                       tail.numpy()[0, 0, :5])
        if full_state is not None:
            case.check(_max_abs_diff(tail_state.numpy(), full_state) <= ATOL,
                       f"final state equals the one of running the whole sequence (atol {ATOL})",
                       full_state[:, :5], tail_state.numpy()[:, :5])

    # States the model never returned (the pretrained model's, after text your model never reads): only a
    # GRU started from the states given gives what follows them.
    with report.case(f"model(inputs[:, {k}:], states=<a state from elsewhere>, return_state=True)") as case:
        lm = pretrained_lm()
        _, given = lm(tf.reverse(inputs[:, :k], axis=[1]), return_state=True)
        want, want_state = lm(inputs[:, k:], states=given, return_state=True)
        got, got_state = model(inputs[:, k:], states=given, return_state=True)
        case.check(_max_abs_diff(got.numpy(), want.numpy()) <= ATOL,
                   f"log probabilities that continue from the states given (atol {ATOL}): pass them to the GRU "
                   "as its initial_state", want.numpy()[0, 0, :5], got.numpy()[0, 0, :5])
        case.check(_max_abs_diff(got_state.numpy(), want_state.numpy()) <= ATOL,
                   f"final state, continued from the states given (atol {ATOL})", want_state.numpy()[:, :5],
                   got_state.numpy()[:, :5])
    report.finish()


# ----------------------------------------------------------------------------------------
# Exercise 4: compile_model
# ----------------------------------------------------------------------------------------
@_quietly
def test_compile_model(compile_model):
    """SparseCategoricalCrossentropy(from_logits=True) and Adam at the course's learning rate (the model card's)."""
    report = _Report("test_compile_model")
    with report.case("compile_model(a small model)") as case:
        model = tf.keras.Sequential([
            tf.keras.Input(shape=(None,), dtype="int64"),
            tf.keras.layers.Embedding(12, 4),
            tf.keras.layers.GRU(5, return_sequences=True),
            tf.keras.layers.Dense(12),
        ])
        result = compile_model(model)
        case.check(result is model, "returns the model it was given", "the model", _short(result, 80))
        loss = getattr(model, "loss", None)
        if isinstance(loss, (list, tuple)) and len(loss) == 1:
            loss = loss[0]  # one loss per output: the model has one output
        # The loss is judged by its value below: Keras' loss function, from_logits=True, is the same loss.
        case.check(loss is not None, "loss", "a tf.keras.losses.SparseCategoricalCrossentropy", _short(loss, 120))
        if isinstance(loss, tf.keras.losses.SparseCategoricalCrossentropy):
            from_logits = loss.get_config().get("from_logits")
            case.check(from_logits is True, "loss from_logits", True, from_logits)
        optimizer = getattr(model, "optimizer", None)
        case.check(isinstance(optimizer, tf.keras.optimizers.Adam), "optimizer", "a tf.keras.optimizers.Adam",
                   type(optimizer).__name__)
        lr = float(tf.keras.ops.convert_to_numpy(optimizer.learning_rate))
        want = float(model_card()["hparams"]["learning_rate"])
        case.check(abs(lr - want) < RATE_ATOL, "optimizer learning_rate", want, lr)
        optimizer.iterations.assign(10 ** 6)  # a schedule's rate would have moved by then
        later = float(tf.keras.ops.convert_to_numpy(optimizer.learning_rate))
        case.check(abs(later - want) < RATE_ATOL, "optimizer learning_rate after 10**6 steps (a number, not a "
                   "schedule)", want, later)
    rng = np.random.default_rng(4)
    weights = [rng.normal(size=(9, 4)), rng.normal(size=(4, 9)) * 0.5, rng.normal(size=9) * 0.1]
    rate = float(model_card()["hparams"]["learning_rate"])

    def small_model(start):
        model = tf.keras.Sequential([tf.keras.Input(shape=(None,), dtype="int64"), tf.keras.layers.Embedding(9, 4),
                                     tf.keras.layers.Dense(9, activation=tf.nn.log_softmax)])
        model.set_weights([w.astype("float32") for w in start])
        return model

    with report.case("compile_model(a small model), trained two steps beside Adam") as case:
        # Copies of one model: yours compiled by compile_model, the others trained with Adam itself (as this
        # module found it when it was imported). Their weights must move alike, at each step. Keras on
        # TensorFlow squares the embedding's gradient one slice (position read) at a time, Adam's paper (and
        # Keras on other backends) squares it whole: your weights may follow either of Adam's copies.
        batches = [(rng.integers(0, 9, size=(3, 5)), rng.integers(0, 9, size=(3, 5))) for _ in range(2)]
        yours = small_model(weights)
        compile_model(yours)
        adams = [(small_model(weights), _ADAM(learning_rate=rate), whole) for whole in (False, True)]
        near_epsilon = [[np.zeros(w.shape, bool) for w in weights] for _ in adams]
        worst = [0.0 for _ in adams]  # the largest difference so far from each of Adam's copies
        for step, (x, y) in enumerate(batches, 1):
            your_loss = yours.train_on_batch(x, y)
            your_loss = float(np.ravel(your_loss)[0])  # [loss, metrics...] when compiled with metrics
            for k, (model, adam, whole) in enumerate(adams):
                with tf.GradientTape() as tape:
                    loss = _SPARSE_CROSSENTROPY(from_logits=True)(y, model(x))
                if step == 1 and k == 0:
                    case.check(abs(your_loss - float(loss)) < ATOL, "the loss of a batch: the mean over its targets "
                               "of -log p(target), as SparseCategoricalCrossentropy(from_logits=True) gives it",
                               float(loss), your_loss)
                grads = tape.gradient(loss, model.trainable_variables)
                grads = [tf.convert_to_tensor(g) for g in grads] if whole else grads
                adam.apply_gradients(zip(grads, model.trainable_variables))
                for near, variable in zip(near_epsilon[k], model.trainable_variables):
                    v = np.asarray(adam._velocities[adam._get_variable_index(variable)])
                    near |= (v > 0) & (np.sqrt(v) < ADAM_EPSILON_REACH)
                worst[k] = max([worst[k]] + [_max_abs_diff(a[~near], b[~near]) for a, b, near
                                             in zip(yours.get_weights(), model.get_weights(), near_epsilon[k])])
            case.check(min(worst) < ADAM_ATOL, f"weights after training step {step}: the largest difference from "
                       f"Adam's{ADAM_DEFAULTS}", f"under {ADAM_ATOL}", f"{min(worst):.2g}")
    with report.case("compile_model(a small model): its optimizer given the same gradients as Adam") as case:
        start, gradients = optimizer_trial(np.random.default_rng(5), [w.shape for w in weights])
        yours, adams = small_model(start), small_model(start)
        compile_model(yours)
        pairs = [(yours, yours.optimizer), (adams, _ADAM(learning_rate=rate))]
        names = ["a large step", "a small step", f"a step after {ADAM_LATER_STEP} steps"]
        for step, (name, grads) in enumerate(zip(names, gradients)):
            for model, optimizer in pairs:
                if step == len(gradients) - 1:
                    optimizer.iterations.assign(ADAM_LATER_STEP)
                optimizer.apply_gradients(zip([tf.constant(g, tf.float32) for g in grads], model.trainable_variables))
            gap = max(_max_abs_diff(a, b) for a, b in zip(yours.get_weights(), adams.get_weights()))
            case.check(gap < ADAM_ATOL, f"weights after {name}: the largest difference from Adam's"
                       + ADAM_DEFAULTS, f"under {ADAM_ATOL}", f"{gap:.2g}")
        for model, optimizer in pairs:  # as fit ends training (an average of the weights would replace them)
            optimizer.finalize_variable_values(model.trainable_variables)
        gap = max(_max_abs_diff(a, b) for a, b in zip(yours.get_weights(), adams.get_weights()))
        case.check(gap < ADAM_ATOL, "weights once training ends, as fit ends it: the largest difference from "
                   f"Adam's{ADAM_DEFAULTS}", f"under {ADAM_ATOL}", f"{gap:.2g}")
    report.finish()


def optimizer_trial(rng, shapes: list) -> tuple:
    """(weights, gradients of each step) for the test of the optimizer alone: weights of size ADAM_WEIGHT and
    gradients of the sizes ADAM_GRADIENT_SIZES, each of random sign (and each gradient within a factor 3 of its
    step's size). Plain numpy: the grader draws its own the same way."""
    weights = [ADAM_WEIGHT * rng.choice([-1.0, 1.0], size=shape) for shape in shapes]
    gradients = [[size * rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape) for shape in shapes]
                 for size in ADAM_GRADIENT_SIZES]
    return weights, gradients


# ----------------------------------------------------------------------------------------
# Exercise 5: log_perplexity
# ----------------------------------------------------------------------------------------
def _scalar(case: _Case, value) -> float:
    if isinstance(value, tf.Tensor):
        value = value.numpy()
    array = np.asarray(value)
    case.check(array.shape == () and (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)),
               "returns one number (a float, a numpy scalar or a 0-d tensor)", "a number", _short(value, 120))
    return float(array)


@_quietly
def test_log_perplexity(log_perplexity):
    """Per sequence mean of -log p(target) over non-padding targets, then mean over the batch."""
    report = _Report("test_log_perplexity")
    ref = load_reference()
    inputs = tf.constant(ref["grulm"]["inputs"], dtype=tf.int64)
    preds = pretrained_lm()(inputs)[:, :-1]
    atol = float(ref["eval"]["atol"])

    for item in ref["log_perplexity"]:
        with report.case(f"{item['name']} (pretrained model's predictions)") as case:
            targets = tf.constant(item["targets"], dtype=tf.int64)
            got = _scalar(case, log_perplexity(preds, targets))
            case.check(abs(got - item["value"]) <= atol, f"value (atol {atol})", item["value"], got)

    # A hand-made batch: sequence 0 has log p = -1 at 2 targets and 4 padding targets,
    # sequence 1 has log p = -3 at its 6 targets. Per sequence: 1 and 3, so 2.0 overall
    # (the mean over all 8 tokens would be 2.5).
    V = 5
    targets = np.array([[2, 3, 1, 1, 1, 1], [2, 3, 4, 2, 3, 4]])
    probs = np.zeros((2, 6, V))
    for b in range(2):
        for t in range(6):
            target = targets[b, t]
            p = 0.9 if target == PADDING_ID else math.exp(-1.0 if b == 0 else -3.0)
            probs[b, t] = (1.0 - p) / (V - 1)
            probs[b, t, target] = p
    hand_preds = tf.constant(np.log(probs), dtype=tf.float32)
    with report.case("a hand-made batch with different amounts of padding") as case:
        got = _scalar(case, log_perplexity(hand_preds, tf.constant(targets, dtype=tf.int64)))
        case.check(abs(got - 2.0) <= ATOL, "value: mean over the sequences of each sequence's mean", 2.0, got)

    padded = np.array(ref["log_perplexity"][-1]["targets"])
    with report.case("padding targets are ignored (other predictions at padding positions)") as case:
        case.check((padded == PADDING_ID).any(), "reference targets with padding", "some padding", padded)
        noise = _np_log_softmax(np.random.default_rng(1).normal(size=preds.shape) * 4.0)
        changed = np.where((padded == PADDING_ID)[..., None], noise, preds.numpy())
        a = _scalar(case, log_perplexity(preds, tf.constant(padded, dtype=tf.int64)))
        b = _scalar(case, log_perplexity(tf.constant(changed, dtype=tf.float32), tf.constant(padded, dtype=tf.int64)))
        case.check(abs(a - b) <= 1e-5, "same value", a, b)

    with report.case("random predictions give a positive value") as case:
        rng = np.random.default_rng(2)
        random_preds = tf.constant(_np_log_softmax(rng.normal(size=(3, 9, 11))), dtype=tf.float32)
        random_targets = tf.constant(rng.integers(2, 11, size=(3, 9)), dtype=tf.int64)
        got = _scalar(case, log_perplexity(random_preds, random_targets))
        case.check(got > 0, "value > 0", "a positive number", got)

    with report.case("a sequence that is all padding gives NaN") as case:
        all_pad = np.array(ref["log_perplexity"][0]["targets"])
        all_pad[0, :] = PADDING_ID
        got = _scalar(case, log_perplexity(preds, tf.constant(all_pad, dtype=tf.int64)))
        case.check(math.isnan(got), "value", float("nan"), got)
    report.finish()


# ----------------------------------------------------------------------------------------
# Exercise 6: temperature_random_sampling and GenerativeModel
# ----------------------------------------------------------------------------------------
def _sample_ids(case: _Case, out, batch: int) -> np.ndarray:
    dtype = getattr(out, "dtype", None)
    case.check(_is_int_dtype(dtype), "dtype", "an integer dtype", dtype)
    ids = _np(out)
    case.check(ids.shape == (batch,), "shape (batch,)", (batch,), ids.shape)
    return ids.astype(np.int64)


@_quietly
def test_temperature_random_sampling(temperature_random_sampling):
    """Greedy at temperature 0; samples from softmax(log_probs / temperature) otherwise."""
    report = _Report("test_temperature_random_sampling")
    V = len(vocab())
    rng = np.random.default_rng(0)
    log_probs = _np_log_softmax(rng.normal(size=(64, V)) * 3.0).astype(np.float32)
    with report.case(f"temperature 0 on {log_probs.shape[0]} rows is the argmax") as case:
        ids = _sample_ids(case, temperature_random_sampling(tf.constant(log_probs), 0.0), log_probs.shape[0])
        expected = log_probs.argmax(axis=-1)
        case.check(np.array_equal(ids, expected), "ids", expected, ids)

    p = np.array([0.5, 0.25, 0.15, 0.1])
    n = 20000
    # Every row holds p in an order of its own: always taking the same column is no sample.
    order = rng.permuted(np.tile(np.arange(len(p)), (n, 1)), axis=1)
    rows = tf.constant(np.log(p)[order], dtype=tf.float32)
    drawn = {}
    for temperature in (1.0, 0.5, 100.0):
        expected = np.exp(np.log(p) / temperature)
        expected /= expected.sum()
        name = {1.0: "", 0.5: " (sharper)", 100.0: " (near uniform)"}[temperature]
        with report.case(f"temperature {temperature}: {n} draws from p = {p.tolist()}") as case:
            ids = _sample_ids(case, temperature_random_sampling(rows, temperature), n)
            case.check(ids.min() >= 0 and ids.max() < len(p), "ids within range", f"0 <= id < {len(p)}",
                       (ids.min(), ids.max()))
            freq = np.bincount(order[np.arange(n), ids], minlength=len(p)) / n
            se = np.sqrt(expected * (1 - expected) / n)
            case.check(np.all(np.abs(freq - expected) <= 5 * se),
                       f"frequencies match softmax(log_probs / temperature){name} within 5 standard errors",
                       np.round(expected, 3), np.round(freq, 3))
            drawn[temperature] = ids

    if 1.0 in drawn:  # the first call sampled well: does a second one draw afresh?
        with report.case(f"called again on the same {n} rows at temperature 1.0") as case:
            again = _sample_ids(case, temperature_random_sampling(rows, 1.0), n)
            agree, chance = float(np.mean(again == drawn[1.0])), float(p @ p)
            case.check(abs(agree - chance) <= 5 * np.sqrt(chance * (1 - chance) / n),
                       "two calls pick the same id only as often as independent draws do (draw new random "
                       "numbers at every call: a fixed seed repeats the same noise)",
                       f"the same id in about {chance:.1%} of the rows", f"{agree:.1%}")
    report.finish()


def _as_text(value) -> str:
    if isinstance(value, tf.Tensor):
        value = value.numpy()
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"generate_n_chars returned a {type(value).__name__}, not a string")
    return value


@_quietly
def test_GenerativeModel(GenerativeModel):
    """generate_one_step and generate_n_chars, with the pretrained model and with made-up ones."""
    report = _Report("test_GenerativeModel")
    voc = vocab()
    lm = pretrained_lm()
    U = lm.units

    for probe in load_reference()["greedy"]["probes"]:
        prefix, continuation = probe["prefix"], probe["continuation"]
        with report.case(f"GenerativeModel(model, vocab, temperature=0.0).generate_n_chars"
                         f"({len(continuation)}, {prefix!r}) (greedy)") as case:
            got = _as_text(GenerativeModel(lm, voc, temperature=0.0).generate_n_chars(len(continuation), prefix))
            case.check(got == prefix + continuation, "text", repr(prefix + continuation), repr(got))

    prefix = "ROMEO\t"
    with report.case(f"generate_one_step(tf.constant([{prefix!r}]), states=None)") as case:
        # The generator is kept in a variable: a tf.function method holds its object only weakly.
        generator = GenerativeModel(lm, voc, temperature=1.0)
        result = generator.generate_one_step(tf.constant([prefix]), states=None)
        case.check(isinstance(result, (tuple, list)) and len(result) == 2, "returns (next_chars, states)",
                   "a pair", type(result).__name__)
        chars, states = result
        case.check(isinstance(chars, tf.Tensor) and chars.dtype == tf.string and tuple(chars.shape) in ((1,), (1, 1)),
                   "next chars: a string tensor of shape (1,) or (1, 1), one per prompt (not squeezed)",
                   "tf.string, shape (1,)", _short(chars, 120))
        char = chars.numpy().reshape(-1)[0].decode("utf-8")
        case.check(len(char) == 1 and char in voc[2:], "one character of the vocabulary (never '[UNK]' or '')",
                   "one character", repr(char))
        case.check(tuple(getattr(states, "shape", ())) == (1, U), "states shape (1, rnn_units)", (1, U),
                   getattr(states, "shape", type(states).__name__))

    toy = _CycleLM(voc, U)
    for prefix, n in (("ROMEO\t", 12), ("abc", 15)):
        expected = _cycle_text(toy, prefix, n)
        with report.case(f"generate_n_chars({n}, {prefix!r}) with a model whose next character depends "
                         f"on its state and on the last character") as case:
            got = _as_text(GenerativeModel(toy, voc, temperature=0.0).generate_n_chars(n, prefix))
            case.check(got == expected, "text (are the states carried from step to step and the generated "
                       "character fed back?)", repr(expected), repr(got))

    # generate_one_step itself must continue from the states it is given (generate_n_chars could hide
    # a generate_one_step that starts from zero by feeding the whole text at every step).
    prefix, n = "abc", 3
    with report.case(f"generate_one_step called {n} times at temperature 0.0, first on tf.constant([{prefix!r}]) "
                     f"with states=None, then on the character and the states the call before returned") as case:
        generator = GenerativeModel(toy, voc, temperature=0.0)
        expected = list(_cycle_text(toy, prefix, n)[len(prefix):])
        chars, states, got = tf.constant([prefix]), None, []
        for _ in range(n):
            chars, states = generator.generate_one_step(chars, states=states)
            chars = tf.reshape(chars, [-1])
            got.append(chars.numpy()[0].decode("utf-8"))
        case.check(got == expected, "characters: the states given must be used (generate_one_step(next_chars, "
                   "states=states) continues from `states`, the state the call before returned, not from zero)",
                   expected, got)

    # ... also on its first call, given states the model never returned (as if it had read 5 characters).
    read, char = 5, "c"
    with report.case(f"generate_one_step(tf.constant([{char!r}]), states=<the state after {read} characters>) "
                     "at temperature 0.0 on a new generator") as case:
        generator = GenerativeModel(toy, voc, temperature=0.0)
        given = tf.constant([[float(read)] + [0.0] * (U - 1)])
        expected = toy.cycle[toy._next(toy.cycle.find(char), read + 1)]
        chars, _ = generator.generate_one_step(tf.constant([char]), states=given)
        got = tf.reshape(chars, [-1]).numpy()[0].decode("utf-8")
        case.check(got == expected, "character: generate_one_step continues from the states it is given, not from "
                   "zero or from what it read before", expected, got)

    prefix, n = "KING HENRY\t", _SAMPLE_LENGTH
    with report.case(f"generate_n_chars({n}, {prefix!r}) at temperature 1.0") as case:
        got = _as_text(GenerativeModel(lm, voc, temperature=1.0).generate_n_chars(n, prefix))
        case.check(got.startswith(prefix), "starts with the prefix", repr(prefix) + " ...", repr(got))
        case.check(len(got) == len(prefix) + n, "length: the prefix and n characters", len(prefix) + n, len(got))
        case.check("[UNK]" not in got, "no '[UNK]'", "no '[UNK]'", repr(got))

    # Sampling: a batch of prompts, one step, against the distribution at each temperature. Within
    # 6 standard errors, a correct generator fails one of these cases about once in 10^8 runs.
    chars, p = "abcd", np.array([0.55, 0.25, 0.15, 0.05])
    fixed = _FixedLM(voc, chars, p, U)
    for temperature in (1.0, 0.5):
        want = np.exp(np.log(p) / temperature)
        want /= want.sum()
        with report.case(f"generate_one_step on {_SAMPLE_ROWS} prompts at temperature {temperature} with a model "
                         f"that predicts p = {p.tolist()} over {chars!r}") as case:
            generator = GenerativeModel(fixed, voc, temperature=temperature)
            got, _ = generator.generate_one_step(tf.constant(["O, "] * _SAMPLE_ROWS), states=None)
            drawn = [c.decode("utf-8") for c in _np(got).reshape(-1).tolist()]
            case.check(len(drawn) == _SAMPLE_ROWS, "one character per prompt (text_from_ids joins each row of ids "
                       "into one string: give it a column, `predicted_ids[:, tf.newaxis]`)", _SAMPLE_ROWS, len(drawn))
            freq = np.array([drawn.count(c) for c in chars]) / max(1, len(drawn))
            se = np.sqrt(want * (1 - want) / _SAMPLE_ROWS)
            case.check(np.all(np.abs(freq - want) <= 6 * se),
                       "frequencies of the characters: softmax(log_probs / temperature) (is the temperature "
                       "used, and is it sampling rather than always taking the most likely?)",
                       np.round(want, 3), np.round(freq, 3))

    prefix, n = "O, ", _SAMPLE_LENGTH
    with report.case(f"generate_n_chars({n}, {prefix!r}) at temperature 1.0 with a model that predicts p = "
                     f"{p.tolist()} over {chars!r}") as case:
        got = _as_text(GenerativeModel(fixed, voc, temperature=1.0).generate_n_chars(n, prefix))
        case.check(got.startswith(prefix) and set(got[len(prefix):]) <= set(chars),
                   "the characters after the prefix: each drawn from the model's predictions",
                   f"{prefix!r} and {n} of {chars!r}", repr(got))

    prefix, n = "O, ", 30
    with report.case(f"generate_n_chars({n}, {prefix!r}) at temperature 1.0 with a model that "
                     f"prefers '[UNK]' and padding") as case:
        got = _as_text(GenerativeModel(_BiasedLM(lm), voc, temperature=1.0).generate_n_chars(n, prefix))
        case.check("[UNK]" not in got, "never '[UNK]'", "no '[UNK]'", repr(got))
        case.check(len(got) == len(prefix) + n, "length: the prefix and n characters, never the padding ''",
                   len(prefix) + n, len(got))
    report.finish()
