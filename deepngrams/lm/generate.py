"""Fast text generation with a trained GRULM: the whole sampling loop is one XLA program.

The course's `GenerativeModel` makes one TensorFlow call per character, each of which
re-embeds the input, goes through Keras' GRU layer and builds string lookups: much work for
one character (`make bench` compares the two generators: docs/figures.md). Here the embedding
and the GRU's input kernel are folded into one table (V, 3U), so feeding a character is a row
lookup, and the loop over steps (recurrent product, gates, dense layer, sampling) is compiled
by XLA into a single program that runs without returning to Python. A step then costs about
one pass over the recurrent kernel. The math is the Keras model's (float32, GRU with reset_after=True), and
the sampling is the course's Gumbel-max trick with stateless random numbers, so a seed
always gives the same text.

Several prompts, of any lengths, run as one batch, one row each. The rule: row i's text
depends only on its prompt, the seed, the temperature and i, never on the other rows, and a
longer `length` only extends it. So the first prompt writes what it writes alone, and prompt
i writes what `generate(..., prompt_i, batch=i + 1)[i]` writes. `sample_texts` is the whole
generator as one TensorFlow function, strings in and strings out: `generate` runs it and
`deepngrams.lm.export` saves it, so the two agree by construction.

`generate_at_temperatures` writes from one prompt at several temperatures with one seed, and
`temperature_table` lays the texts side by side, so that what the temperature does can be read across.
"""
from __future__ import annotations

import math
import sys
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.config import PADDING_ID, UNK_ID
from deepngrams.lm.weights import load_model_dir, load_pretrained


# ------------------------------------------------------------------ one step, as Keras does it

def _gru_step(x_proj: tf.Tensor, h: tf.Tensor, recurrent_kernel: tf.Tensor, recurrent_bias: tf.Tensor) -> tf.Tensor:
    """The next GRU state from the projected input x @ kernel + input bias (Keras' GRU, reset_after=True).

    Gates in Keras' order z, r, h: z and r are sigmoids of input plus recurrent parts, the
    candidate is tanh(x_h + r * (h @ U_h + b_h)), and the state moves towards it by 1 - z.
    """
    x_z, x_r, x_h = tf.split(x_proj, 3, axis=-1)
    h_z, h_r, h_h = tf.split(tf.matmul(h, recurrent_kernel) + recurrent_bias, 3, axis=-1)
    z = tf.sigmoid(x_z + h_z)
    r = tf.sigmoid(x_r + h_r)
    candidate = tf.tanh(x_h + r * h_h)
    return z * h + (1.0 - z) * candidate


def _next_log_probs(h: tf.Tensor, dense_kernel: tf.Tensor, dense_bias: tf.Tensor) -> tf.Tensor:
    """Log probabilities of the next character, with '[UNK]' and the padding '' made impossible."""
    log_probs = tf.nn.log_softmax(tf.matmul(h, dense_kernel) + dense_bias)
    # As in solution.GenerativeModel: ids 0 and 1 are '[UNK]' and ''. The vocabulary's size is read
    # at run time: once models of several sizes have been sampled, the trace no longer knows it.
    return tf.where(tf.range(tf.shape(log_probs)[-1]) < 2, -math.inf, log_probs)


def _gumbel_max(log_probs: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The course's sampling (solution.temperature_random_sampling) with stateless random numbers.

    Row b of a batch gets the same numbers whatever the batch size (the stateless generator
    fills the (batch, V) block row after row), so a row's text does not depend on how many
    rows there are.
    """
    u = tf.random.stateless_uniform(tf.shape(log_probs), seed=seed, minval=1e-6, maxval=1.0 - 1e-6)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.math.argmax(log_probs + gumbel * temperature, axis=-1, output_type=tf.int32)


# ------------------------------------------------------------------ the compiled loop

def _lstm_step(x_proj: tf.Tensor, state: tf.Tensor, recurrent_kernel: tf.Tensor) -> tf.Tensor:
    """The next LSTM state [h, c] (one tensor, h first) from the projected input x @ kernel + bias (Keras' LSTM).

    Gates in Keras' order i, f, c, o: the cell keeps f of what it held and adds i of the
    candidate tanh(...), and the output h is o of tanh(cell).
    """
    h, c = tf.split(state, 2, axis=-1)
    i, f, g, o = tf.split(x_proj + tf.matmul(h, recurrent_kernel), 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.concat([tf.sigmoid(o) * tf.tanh(c), c], axis=-1)


@tf.function(jit_compile=True)
def _sample_ids(embedding, kernel, recurrent_kernel, bias, dense_kernel, dense_bias,
                prompt_ids, prompt_lengths, length, seed, temperature, out, cell="gru") -> tf.Tensor:
    """Feed each row's prompt, then sample `length` ids for every row: (rows, capacity) ids.

    `prompt_ids` (rows, width) holds each prompt from column 0, padded on the right, and
    `prompt_lengths` their lengths. The prompts are fed right-aligned, so that all end at the
    same step; a row's state stays exactly zero until its prompt starts, so each prompt leads
    to the state it leads to alone. `out` (capacity, rows) is the buffer the ids are written
    to: XLA needs its shape and the width of `prompt_ids` to be static, `length` and the
    prompt lengths need not be, so one compiled program serves every length up to `capacity`.
    Only the first `length` columns are written.

    `cell` says whose the weights are: a GRU model's (Keras' GRU keeps two biases, input and
    recurrent: `bias` is (2, 3U)) or an LSTM model's ("lstm": one bias, (4U,); the state carries
    h and the cell c). It is a Python string, so each kind gets its own trace.
    """
    units = tf.shape(recurrent_kernel)[0]  # shapes of any model (see _next_log_probs)
    lstm = cell == "lstm"
    # Row i is the input projection of character i: the embedding and the kernel multiplied once.
    table = tf.matmul(embedding, kernel) + (bias if lstm else bias[0])

    def step(x, state):
        new = _lstm_step(x, state, recurrent_kernel) if lstm else _gru_step(x, state, recurrent_kernel, bias[1])
        return tf.ensure_shape(new, [None, None])  # (rows, state width), whatever the trace knows of the sizes

    longest = tf.reduce_max(prompt_lengths)
    starts = longest - prompt_lengths  # the step at which each row's prompt starts
    state = tf.zeros((tf.shape(prompt_ids)[0], units * (2 if lstm else 1)))
    # All but the last prompt character build the state; rows whose prompt has not started keep theirs.
    # `while` loops, not `for ... in tf.range`: under XLA, AutoGraph gives a range loop its length as
    # maximum_iterations, which XLA needs as a constant, so each new length would compile a new program.
    t = tf.constant(0)
    while t < longest - 1:
        # Traces shared by models of several sizes know no state width (see _next_log_probs): say so.
        tf.autograph.experimental.set_loop_options(shape_invariants=[(state, tf.TensorShape([None, None]))])
        column = t - starts
        x = tf.gather(table, tf.gather(prompt_ids, tf.maximum(column, 0), batch_dims=1))
        state = tf.where((column >= 0)[:, tf.newaxis], step(x, state), state)
        t += 1
    ids = tf.gather(prompt_ids, prompt_lengths - 1, batch_dims=1)
    t = tf.constant(0)
    while t < length:
        tf.autograph.experimental.set_loop_options(shape_invariants=[(state, tf.TensorShape([None, None])),
                                                                     (ids, tf.TensorShape([None]))])
        state = step(tf.gather(table, ids), state)
        log_probs = _next_log_probs(state[:, :units], dense_kernel, dense_bias)
        ids = _gumbel_max(log_probs, temperature, tf.stack([seed, tf.cast(t, tf.int64)]))
        out = tf.tensor_scatter_nd_update(out, [[t]], ids[tf.newaxis])
        t += 1
    return tf.transpose(out)


def _bucket(n: tf.Tensor) -> tf.Tensor:
    """A power of two >= n (at least 64): XLA compiles once per shape, so nearby sizes share a program."""
    return tf.while_loop(lambda size: size < n, lambda size: (size * 2,), (tf.constant(64),))[0]


def char_ids(prompts: tf.Tensor, vocab: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """The ids of each prompt's characters (a ragged row a prompt), and whether each is in `vocab`.

    A character outside `vocab` gets the id of '[UNK]', as `solution.line_to_tensor` reads it.
    """
    chars = tf.strings.unicode_split(prompts, "UTF-8")
    matches = tf.equal(chars.flat_values[:, tf.newaxis], vocab[tf.newaxis, :])
    known = tf.reduce_any(matches, axis=1)
    ids = tf.where(known, tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32), UNK_ID)
    return chars.with_flat_values(ids), chars.with_flat_values(known)


@tf.function(reduce_retracing=True)
def sample_texts(weights: tuple[tf.Tensor, ...], vocab: tf.Tensor, prompts: tf.Tensor, length: tf.Tensor,
                 temperature: tf.Tensor, seed: tf.Tensor, cell: str = "gru") -> tf.Tensor:
    """Each prompt (tf.string, one a row) followed by `length` sampled characters.

    The one generator that both `generate` runs and `export` saves. `weights` are the model's
    variables in WEIGHT_NAMES' order; `length` is int32, `temperature` float32, `seed` int64.
    The arguments are not checked here: `generate` checks them in Python, the export in its graph.
    """
    ids, _ = char_ids(prompts, vocab)
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    rows = tf.shape(prompts)[0]
    prompt_ids = ids.to_tensor(default_value=PADDING_ID, shape=tf.stack([rows, _bucket(tf.reduce_max(lengths))]))
    out = tf.zeros(tf.stack([_bucket(length), rows]), tf.int32)
    new_ids = _sample_ids(*weights, prompt_ids, lengths, length, seed, temperature, out, cell)
    return prompts + tf.strings.reduce_join(tf.gather(vocab, new_ids[:, :length]), axis=1)


WEIGHT_NAMES = ("embedding", "kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias")


def cell_of(model) -> str:
    """The recurrent layer of a model: "lstm" for one of `train --cell lstm`, else "gru"."""
    return "lstm" if hasattr(model, "lstm") else "gru"


def model_weights(model) -> tuple[tf.Tensor, ...]:
    """The model's variables as `sample_texts` takes them: a GRULM's, or an LSTM model's (its `lstm` layer)."""
    rnn = getattr(model, cell_of(model))
    return tuple(tf.convert_to_tensor(w) for w in (model.embedding.embeddings, rnn.cell.kernel, rnn.cell.recurrent_kernel,
                                                   rnn.cell.bias, model.dense.kernel, model.dense.bias))


# ------------------------------------------------------------------ checks

def _which(k: int, prompts: list[str]) -> str:
    """How a message names prompt k (1-based): by its place when there are several, and its start."""
    shown = prompts[k - 1] if len(prompts[k - 1]) <= 40 else prompts[k - 1][:37] + "..."
    return f"the prompt {shown!r}" if len(prompts) == 1 else f"prompt {k} of {len(prompts)} ({shown!r})"


def _check_args(prompts: list[str], length: int, temperature: float, batch: int = 1) -> None:
    """Reject arguments the generator cannot honour, saying which and why."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"give at least one prompt, as a list of strings; got {prompts!r}")
    for k, prompt in enumerate(prompts, start=1):
        if not isinstance(prompt, str) or not prompt:
            where = "prompt" if len(prompts) == 1 else f"prompt {k} of {len(prompts)}"
            raise ValueError(f"{where} must be a non-empty string (the model needs a character to start from), "
                             f"got {prompt!r}")
    if int(length) != length or length < 0:
        raise ValueError(f"length must be a whole number >= 0 (characters to generate), got {length!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy, 1 samples the model), got {temperature!r}")
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1 (texts to generate), got {batch!r}")


def check_vocabulary(prompts: list[str], vocab: list[str]) -> None:
    """Refuse a prompt character the model has no id for, naming the character and its prompt."""
    known = set(vocab)
    for k, prompt in enumerate(prompts, start=1):
        for position, ch in enumerate(prompt, start=1):
            if ch not in known:
                raise ValueError(f"{_which(k, prompts)} has the character {ch!r} (U+{ord(ch):04X}) at position "
                                 f"{position}, which is not in the model's vocabulary: write it with the characters "
                                 f"the model was trained on (its model card lists them)")


def _check_model(model, vocab: list[str]) -> None:
    predicted = model.dense.bias.shape[0]
    if predicted != len(vocab):
        raise ValueError(f"the vocabulary has {len(vocab)} entries but the model predicts "
                         f"{predicted}: use the vocabulary the model was trained with")
    if len(vocab) <= 2:
        raise ValueError("the vocabulary has no characters besides '[UNK]' and ''")


# ------------------------------------------------------------------ samples side by side

TABLE_WIDTH = 100  # characters: the table fits a terminal 100 columns wide
COLUMN_GAP = " | "
MIN_COLUMN_WIDTH = 10  # the longest escape, \U000e0001, fits in a column: many temperatures widen the table instead


def _char_width(ch: str) -> int:
    """Columns a terminal gives a character: 0 for a combining mark, 2 for a wide (East Asian) one, else 1."""
    if unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _width(text: str) -> int:
    return sum(_char_width(ch) for ch in text)


def _cells(line: str) -> list[str]:
    """A line's characters as shown: a tab or another character that moves the cursor or is invisible
    becomes its escape (\\t, \\x1b, \\u202e), which is never split across rows; the rest as written."""
    return [ch if ch == " " or ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in line]


def _wrap_line(cells: list[str], width: int) -> list[str]:
    """Rows of at most `width` columns, each broken after its last space so that words move whole to the next row.

    Every cell is kept, spaces included (a space never starts a row unless a word filled the row
    before it): a word longer than a row is cut where the row ends.
    """
    rows, row = [], []
    for cell in cells:
        if _width("".join(row + [cell])) > width:
            spaces = [i for i, c in enumerate(row) if c == " "]
            cut = spaces[-1] + 1 if spaces else len(row)
            rows.append("".join(row[:cut]))
            row = row[cut:]
            if _width("".join(row + [cell])) > width:  # a wide character or an escape after a word nearly a row long
                rows.append("".join(row))
                row = []
        row.append(cell)
    return rows + ["".join(row)]


def _wrap(text: str, width: int) -> list[str]:
    """A text's rows in a column `width` wide: each newline of the text starts a row."""
    return [row for line in text.split("\n") for row in _wrap_line(_cells(line), width)]


def _join_columns(columns: list[list[str]], width: int) -> list[str]:
    """Lines made of the columns' rows side by side, each row padded to `width` (a shorter column leaves blanks)."""
    depth = max(len(rows) for rows in columns)
    padded = [[row + " " * (width - _width(row)) for row in rows + [""] * (depth - len(rows))] for rows in columns]
    return [COLUMN_GAP.join(parts).rstrip(" ") for parts in zip(*padded)]


def side_by_side(texts: Sequence[str], headings: Sequence[str], width: int = TABLE_WIDTH) -> str:
    """The texts as columns of plain text under their headings, `width` characters wide in all.

    Samples of one prompt compare best read across, line by line. Any character passes as
    written except tabs and other control or invisible characters, shown as escapes, so no
    text can shift the columns; a wide character counts two columns.
    """
    if not texts or len(texts) != len(headings):
        raise ValueError(f"give one heading a text and at least one text; got {len(texts)} texts and "
                         f"{len(headings)} headings")
    column = max(MIN_COLUMN_WIDTH, (width - len(COLUMN_GAP) * (len(texts) - 1)) // len(texts))
    head = _join_columns([_wrap(heading, column) for heading in headings], column)
    rule = "-+-".join("-" * column for _ in texts)
    return "\n".join(head + [rule] + _join_columns([_wrap(text, column) for text in texts], column))


def temperature_table(prompt: str, temperatures: Sequence[float], texts: Sequence[str], seed: int,
                      width: int = TABLE_WIDTH) -> str:
    """What followed `prompt` at each temperature, side by side under T=..., the prompt and seed above once."""
    written = [text[len(prompt):] if text.startswith(prompt) else text for text in texts]
    return (f"prompt {prompt!r}, seed {seed}:\n"
            + side_by_side(written, [f"T={float(t)}" for t in temperatures], width))


# ------------------------------------------------------------------ public API

def _run(model, vocab: list[str], prompts: list[str], length: int, temperature: float, seed: int) -> list[str]:
    texts = sample_texts(model_weights(model), tf.constant(vocab), tf.constant(prompts),
                         tf.constant(int(length), tf.int32), tf.constant(temperature, tf.float32),
                         tf.constant(seed, tf.int64), cell_of(model))
    return [text.decode("utf-8") for text in texts.numpy().tolist()]


def generate(model, vocab: list[str], prompt: str, length: int, temperature: float = 1.0,
             seed: int = 0, batch: int = 1) -> list[str]:
    """`batch` texts, each `prompt` followed by `length` sampled characters.

    Temperature 0 picks the most likely character at every step; 1 samples the model's
    distribution. Characters of the prompt that are not in `vocab` are read as '[UNK]', as
    `solution.line_to_tensor` does; '[UNK]' and the padding '' are never generated.
    """
    _check_args([prompt], length, temperature, batch)
    _check_model(model, vocab)
    return _run(model, vocab, [prompt] * int(batch), length, temperature, seed)


def generate_many(model, vocab: list[str], prompts: list[str], length: int, temperature: float = 1.0,
                  seed: int = 0) -> list[str]:
    """Each prompt followed by `length` sampled characters, all prompts in one batch.

    Prompts may differ in length. Prompt i's text depends only on it, the seed, the
    temperature and i (the module's rule): the first prompt writes what `generate` writes for
    it alone. Every character of every prompt must be in `vocab`.
    """
    _check_args(prompts, length, temperature)
    _check_model(model, vocab)
    check_vocabulary(prompts, vocab)
    return _run(model, vocab, list(prompts), length, temperature, seed)


def generate_at_temperatures(model, vocab: list[str], prompt: str, length: int, temperatures: Sequence[float],
                             seed: int = 0) -> list[str]:
    """`prompt` followed by `length` characters at each temperature: `generate`'s text at that temperature and seed.

    One seed draws the same random numbers at every temperature, so the texts differ by the
    temperature alone and can be read side by side (`temperature_table`).
    """
    if not temperatures:
        raise ValueError("give at least one temperature")
    for temperature in temperatures:
        _check_args([prompt], length, temperature)
    _check_model(model, vocab)
    return [_run(model, vocab, [prompt], length, temperature, seed)[0] for temperature in temperatures]


def _straightforward_model(model, vocab: list[str], temperature: float) -> solution.GenerativeModel:
    """The course's GenerativeModel with its step compiled: the baseline the fast path is measured against."""
    gen = solution.GenerativeModel(model, vocab, temperature=temperature)
    gen.generate_one_step = tf.function(gen.generate_one_step)
    return gen


def straightforward_generate(model, vocab: list[str], prompt: str, length: int,
                             temperature: float = 1.0, seed: int = 0) -> str:
    """One text from the course's generator: one TensorFlow call per character."""
    _check_args([prompt], length, temperature)
    tf.random.set_seed(seed)
    return _straightforward_model(model, vocab, temperature).generate_n_chars(int(length), prompt)


def throughput(model, vocab: list[str], *, length: int = 2000, batch: int = 1, seed: int = 0) -> float:
    """Generated characters per second of `generate`, after a first call that compiles it."""
    prompt = vocab[2]
    generate(model, vocab, prompt, length, seed=seed, batch=batch)
    start = time.perf_counter()
    generate(model, vocab, prompt, length, seed=seed, batch=batch)
    return batch * length / (time.perf_counter() - start)


def straightforward_throughput(model, vocab: list[str], *, length: int = 300) -> float:
    """Characters per second of the course's generator, after a first call that traces it."""
    gen = _straightforward_model(model, vocab, temperature=1.0)
    tf.random.set_seed(0)
    gen.generate_n_chars(2, vocab[2])  # traces both signatures (without and with a state)
    start = time.perf_counter()
    gen.generate_n_chars(length, vocab[2])
    return length / (time.perf_counter() - start)


def load_model(model_dir: Path | None = None) -> tuple:
    """The GRULM, vocabulary and model card of `model_dir` (laid out as model/), or of the bundled model/."""
    return load_pretrained() if model_dir is None else load_model_dir(model_dir)


def _check_sweep(prompts: list[str], batch: int, temperatures: Sequence[float]) -> None:
    """Refuse a temperature sweep the command line cannot lay out: one prompt, one sample a temperature."""
    if not temperatures:
        raise ValueError("--temperatures needs at least one temperature, e.g. 0.2,0.5,1.0,1.2")
    if len(prompts) > 1:
        raise ValueError(f"--temperatures samples one prompt at several temperatures; give one --prompt, "
                         f"not {len(prompts)}")
    if batch > 1:
        raise ValueError("--temperatures writes one sample at each temperature; leave out --batch")


def generate_cli(prompts: str | list[str], length: int, temperature: float, seed: int, batch: int = 1,
                 model_dir: Path | None = None, temperatures: Sequence[float] | None = None) -> int:
    """`python -m deepngrams generate`: print texts from the pretrained model; 2 on bad arguments.

    One prompt gives `batch` samples of it; several prompts give one text each, in one batch.
    With `temperatures` (which then replace `temperature`), one prompt's text at each, side by side.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    try:
        for t in [temperature] if temperatures is None else temperatures:
            _check_args(prompts, length, t, batch)
        if temperatures is not None:
            _check_sweep(prompts, batch, temperatures)
        if len(prompts) > 1 and batch > 1:
            raise ValueError("--batch gives several samples of one prompt; with several --prompt, give a prompt "
                             "more than once to get more samples of it")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model, vocab, _ = load_model(model_dir)
    try:
        check_vocabulary(prompts, vocab)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if temperatures is not None:
        texts = generate_at_temperatures(model, vocab, prompts[0], length, temperatures, seed=seed)
        print(temperature_table(prompts[0], temperatures, texts, seed))
        return 0
    if len(prompts) == 1:
        texts, heading = generate(model, vocab, prompts[0], length, temperature=temperature, seed=seed,
                                  batch=batch), "sample"
    else:
        texts, heading = generate_many(model, vocab, prompts, length, temperature=temperature, seed=seed), "prompt"
    for k, text in enumerate(texts, start=1):
        if len(texts) > 1:
            print(("\n" if k > 1 else "") + f"--- {heading} {k} ---")
        print(text)
    return 0
