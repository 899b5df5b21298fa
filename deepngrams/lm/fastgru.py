"""A fast GRU recurrence for training and sampling the course model on a CPU.

Keras' GRU recomputes the input projection inside its time loop and lets autodiff
unroll the backward pass step by step. Here the input projection is a lookup in the
embedding table multiplied once by the GRU kernel, the recurrence has a hand-written backward pass whose
weight gradients are again single large products, and the products run in bfloat16
(oneDNN uses the CPU's AMX/AVX-512 units for them) while the gates and the state
stay in float32, and the batch's streams run as independent time loops side by side, one
per core. The math is exactly Keras' GRU (reset_after=True, sigmoid gates), so
the weights trained here are the weights of a plain `GRULM`.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

# Groups of streams whose time loops run side by side: one per core, at most two, the case the
# side-by-side loops were built and benchmarked for (`make bench`, docs/figures.md).
CHAINS = max(1, min(2, os.cpu_count() or 1))


def _mm(a: tf.Tensor, b: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Matrix product computed in `dtype`, returned in float32."""
    if dtype == tf.float32:
        return tf.matmul(a, b)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype)), tf.float32)


@tf.function(jit_compile=True)
def _cell_forward(xzr, xh, hp, bh, h):
    """Gates of one step, fused by XLA into one kernel: new state and what backprop needs."""
    units = h.shape[-1]
    zr = tf.sigmoid(xzr + hp[:, : 2 * units])
    z, r = zr[:, :units], zr[:, units:]
    hh = hp[:, 2 * units :] + bh
    n = tf.tanh(xh + r * hh)
    d = h - n
    return n + z * d, zr, n, hh, d


@tf.function(jit_compile=True)
def _cell_backward(dh, zr, n, hh, d):
    """Backprop through the gates of one step (fused by XLA)."""
    units = dh.shape[-1]
    z, r = zr[:, :units], zr[:, units:]
    dz = dh * d
    dan = dh * (1.0 - z) * (1.0 - n * n)
    dzr = tf.concat([dz, dan * hh], -1) * zr * (1.0 - zr)
    return tf.concat([dzr, dan], -1), tf.concat([dzr, dan * r], -1), dh * z


def gru_recurrence(xp: tf.Tensor, rk: tf.Tensor, b_rec: tf.Tensor, h0: tf.Tensor,
                   dtype: tf.DType = tf.bfloat16, chains: int = CHAINS) -> tf.Tensor:
    """States of a GRU over time, with a hand-written backward pass.

    xp: (T, B, 3U) input projections x @ kernel + input bias, gates in Keras order z, r, h.
    rk: (U, 3U) recurrent kernel; b_rec: (3U,) recurrent bias; h0: (B, U) initial state.
    Returns hs: (T, B, U), the state after each step. T and B must be static (the loop is unrolled).

    The streams of a batch are independent, so they are cut into `chains` groups, each with its
    own time loop. TensorFlow runs the loops side by side: on two cores each keeps one core busy
    with its small products, where one loop over the whole batch leaves a core idle between
    steps.
    """
    sizes = [len(group) for group in np.array_split(np.arange(h0.shape[0]), min(chains, h0.shape[0]))]
    if len(sizes) == 1:
        return _recurrence(xp, rk, b_rec, h0, dtype)
    parts = zip(tf.split(xp, sizes, axis=1), tf.split(h0, sizes, axis=0))
    return tf.concat([_recurrence(x, rk, b_rec, h, dtype) for x, h in parts], axis=1)


def _recurrence(xp: tf.Tensor, rk: tf.Tensor, b_rec: tf.Tensor, h0: tf.Tensor,
                dtype: tf.DType) -> tf.Tensor:
    """One time loop over all the streams of `xp` (see `gru_recurrence`)."""

    @tf.custom_gradient
    def run(xp, rk, b_rec, h0):
        steps, units = xp.shape[0], h0.shape[-1]
        # The z and r parts of the recurrent bias simply add to the input projection.
        xp = xp + tf.concat([b_rec[: 2 * units], tf.zeros([units])], 0)
        xzr, xh = tf.unstack(xp[:, :, : 2 * units]), tf.unstack(xp[:, :, 2 * units :])
        bh = b_rec[2 * units :]
        rk_c = tf.cast(rk, dtype)
        h, saved, hs = h0, [], []
        for t in range(steps):
            h_prev = h
            h, zr, n, hh, d = _cell_forward(xzr[t], xh[t], _mm(h, rk_c, dtype), bh, h)
            saved.append((h_prev, zr, n, hh, d))
            hs.append(h)

        def grad(dhs):
            rk_t = tf.cast(tf.transpose(rk), dtype)
            dhs = tf.unstack(dhs)
            dh = tf.zeros_like(h0)
            dxps, dhps = [None] * steps, [None] * steps
            for t in reversed(range(steps)):
                _, zr, n, hh, d = saved[t]
                dxps[t], dhps[t], dh_z = _cell_backward(dh + dhs[t], zr, n, hh, d)
                dh = dh_z + _mm(dhps[t], rk_t, dtype)
            dhp = tf.reshape(tf.stack(dhps), (-1, 3 * units))
            h_prev = tf.reshape(tf.stack([s[0] for s in saved]), (-1, units))
            drk = _mm(tf.transpose(h_prev), dhp, dtype)
            return tf.stack(dxps), drk, tf.reduce_sum(dhp, axis=0), dh

        return tf.stack(hs), grad

    # Tensors, not variables: the gradient with respect to rk is returned explicitly.
    return run(*(tf.convert_to_tensor(a) for a in (xp, rk, b_rec, h0)))


def model_variables(model) -> dict:
    """The GRULM's variables by role, read from its `embedding`, `gru` and `dense` layers."""
    kernel, recurrent_kernel, bias = model.gru.cell.kernel, model.gru.cell.recurrent_kernel, model.gru.cell.bias
    return {
        "embedding": model.embedding.embeddings,
        "kernel": kernel,
        "recurrent_kernel": recurrent_kernel,
        "bias": bias,
        "dense_kernel": model.dense.kernel,
        "dense_bias": model.dense.bias,
    }


def sequence_log_probs(v: dict, ids: tf.Tensor, h0: tf.Tensor | None = None,
                       dtype: tf.DType = tf.bfloat16, dropout: float = 0.0,
                       seed: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Log probabilities (B, T, V) of the next character and the final state, like GRULM.call.

    With `dropout`, the GRU outputs fed to the dense layer are dropped at that rate (training
    only), by a stateless mask drawn from `seed` (two integers), so a run is reproducible.
    """
    batch, steps = ids.shape
    units = v["recurrent_kernel"].shape[0]
    # Embedding then projection equals a lookup in the projected table: (V, 3U) instead of (T*B, 3U) work.
    table = tf.matmul(v["embedding"], v["kernel"]) + v["bias"][0]
    xp = tf.gather(table, tf.transpose(ids))  # (T, B, 3U)
    if h0 is None:
        h0 = tf.zeros((batch, units))
    hs = gru_recurrence(xp, v["recurrent_kernel"], v["bias"][1], h0, dtype)
    outputs = hs
    if dropout:
        keep = tf.random.stateless_uniform(tf.shape(hs), seed) >= dropout
        outputs = tf.where(keep, hs / (1.0 - dropout), 0.0)
    logits = _mm(tf.reshape(outputs, (-1, units)), v["dense_kernel"], dtype) + v["dense_bias"]
    log_probs = tf.nn.log_softmax(logits)
    log_probs = tf.transpose(tf.reshape(log_probs, (steps, batch, -1)), (1, 0, 2))
    return log_probs, hs[-1]


def make_train_step(model, optimizer, dtype: tf.DType = tf.bfloat16, dropout: float = 0.0):
    """A compiled training step: mean cross-entropy of the batch, one Adam update.

    `train_step(inputs, targets, h0=None, seed=None)` returns the loss and the final GRU state,
    which the next batch of the same streams starts from (`h0`); `seed` draws the dropout mask.
    """
    v = model_variables(model)
    params = list(v.values())

    @tf.function(reduce_retracing=True)
    def train_step(inputs: tf.Tensor, targets: tf.Tensor, h0: tf.Tensor | None = None,
                   seed: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            log_probs, h = sequence_log_probs(v, inputs, h0, dtype, dropout, seed)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(targets, log_probs))
        grads = tape.gradient(loss, params)
        optimizer.apply_gradients(zip(grads, params))
        return loss, h

    return train_step
