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
"""
from __future__ import annotations

import math
import sys
import time

import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.config import PADDING_ID, UNK_ID
from deepngrams.lm.fastgru import model_variables
from deepngrams.lm.weights import load_pretrained


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
    # As in solution.GenerativeModel: ids 0 and 1 are '[UNK]' and ''.
    mask = tf.constant([-math.inf, -math.inf] + [0.0] * (log_probs.shape[-1] - 2))
    return log_probs + mask


def _gumbel_max(log_probs: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The course's sampling (solution.temperature_random_sampling) with stateless random numbers.

    Row b of a batch gets the same numbers whatever the batch size, so the first text of a
    batch is the text a single-stream call gives for the same seed.
    """
    u = tf.random.stateless_uniform(tf.shape(log_probs), seed=seed, minval=1e-6, maxval=1.0 - 1e-6)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.math.argmax(log_probs + gumbel * temperature, axis=-1, output_type=tf.int32)


# ------------------------------------------------------------------ the compiled loop

@tf.function(jit_compile=True)
def _sample_ids(embedding, kernel, recurrent_kernel, bias, dense_kernel, dense_bias,
                prompt_ids, prompt_len, length, seed, temperature, batch: int, capacity: int) -> tf.Tensor:
    """Feed the prompt, then sample `length` ids for each of `batch` rows: (batch, capacity) ids.

    Only the first `length` columns are written. `capacity` and the padded prompt length are
    static (XLA needs them), `length` and `prompt_len` are not, so one compiled program
    serves every length up to `capacity`.
    """
    # Row i is the input projection of character i: the embedding and the kernel multiplied once.
    table = tf.matmul(embedding, kernel) + bias[0]
    # All but the last prompt character build the state (identical for every row, so computed once).
    h = tf.zeros((1, recurrent_kernel.shape[0]))
    for t in tf.range(prompt_len - 1):
        h = _gru_step(tf.gather(table, prompt_ids[t])[tf.newaxis], h, recurrent_kernel, bias[1])
    h = tf.tile(h, [batch, 1])
    ids = tf.fill([batch], prompt_ids[prompt_len - 1])
    out = tf.TensorArray(tf.int32, size=capacity)
    for t in tf.range(length):
        h = _gru_step(tf.gather(table, ids), h, recurrent_kernel, bias[1])
        log_probs = _next_log_probs(h, dense_kernel, dense_bias)
        ids = _gumbel_max(log_probs, temperature, tf.stack([seed, tf.cast(t, tf.int64)]))
        out = out.write(t, ids)
    return tf.transpose(out.stack())


def _bucket(n: int) -> int:
    """A power of two >= n (at least 64): XLA compiles once per size, so nearby sizes share a program."""
    return max(64, 1 << (max(n, 1) - 1).bit_length())


def _check_args(prompt: str, length: int, temperature: float, batch: int) -> None:
    """Reject arguments the generator cannot honour, saying which and why."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string (the model needs a character to start from), got {prompt!r}")
    if int(length) != length or length < 0:
        raise ValueError(f"length must be a whole number >= 0 (characters to generate), got {length!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy, 1 samples the model), got {temperature!r}")
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1 (texts to generate), got {batch!r}")


# ------------------------------------------------------------------ public API

def generate(model, vocab: list[str], prompt: str, length: int, temperature: float = 1.0,
             seed: int = 0, batch: int = 1) -> list[str]:
    """`batch` texts, each `prompt` followed by `length` sampled characters.

    Temperature 0 picks the most likely character at every step; 1 samples the model's
    distribution. Characters of the prompt that are not in `vocab` are read as '[UNK]', as
    `solution.line_to_tensor` does; '[UNK]' and the padding '' are never generated.
    """
    _check_args(prompt, length, temperature, batch)
    v = model_variables(model)
    if v["dense_bias"].shape[0] != len(vocab):
        raise ValueError(f"the vocabulary has {len(vocab)} entries but the model predicts "
                         f"{v['dense_bias'].shape[0]}: use the vocabulary the model was trained with")
    if len(vocab) <= 2:
        raise ValueError("the vocabulary has no characters besides '[UNK]' and ''")
    length, batch = int(length), int(batch)
    if length == 0:
        return [prompt] * batch

    index = {ch: i for i, ch in enumerate(vocab)}
    prompt_ids = [index.get(ch, UNK_ID) for ch in prompt]
    padded = prompt_ids + [PADDING_ID] * (_bucket(len(prompt_ids)) - len(prompt_ids))
    weights = [tf.convert_to_tensor(v[k]) for k in
               ("embedding", "kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias")]
    ids = _sample_ids(*weights, tf.constant(padded, tf.int32), tf.constant(len(prompt_ids), tf.int32),
                      tf.constant(length, tf.int32), tf.constant(seed, tf.int64),
                      tf.constant(temperature, tf.float32), batch, _bucket(length))
    return [prompt + "".join(vocab[i] for i in row[:length]) for row in ids.numpy().tolist()]


def _straightforward_model(model, vocab: list[str], temperature: float) -> solution.GenerativeModel:
    """The course's GenerativeModel with its step compiled: the baseline the fast path is measured against."""
    gen = solution.GenerativeModel(model, vocab, temperature=temperature)
    gen.generate_one_step = tf.function(gen.generate_one_step)
    return gen


def straightforward_generate(model, vocab: list[str], prompt: str, length: int,
                             temperature: float = 1.0, seed: int = 0) -> str:
    """One text from the course's generator: one TensorFlow call per character."""
    _check_args(prompt, length, temperature, 1)
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


def generate_cli(prompt: str, length: int, temperature: float, seed: int, batch: int) -> int:
    """`python -m deepngrams generate`: print texts from the pretrained model; 2 on bad arguments."""
    try:
        _check_args(prompt, length, temperature, batch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model, vocab, _ = load_pretrained()
    texts = generate(model, vocab, prompt, length, temperature=temperature, seed=seed, batch=batch)
    for k, text in enumerate(texts, start=1):
        if batch > 1:
            print(("\n" if k > 1 else "") + f"--- sample {k} ---")
        print(text)
    return 0
