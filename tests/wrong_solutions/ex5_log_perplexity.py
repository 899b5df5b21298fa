"""log_perplexity(preds, target)."""
import numpy as np
import tensorflow as tf

TESTS = ("test_log_perplexity",)
PADDING_ID = 1


def _target_log_probs(preds, target):
    preds = tf.convert_to_tensor(preds, dtype=tf.float32)
    return tf.reduce_sum(tf.one_hot(target, preds.shape[-1]) * preds, axis=-1)


def wrong_sign(preds, target):
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    return float(tf.reduce_mean(tf.reduce_sum(log_p * non_pad, -1) / tf.reduce_sum(non_pad, -1)))


def no_padding_mask(preds, target):
    return -float(tf.reduce_mean(_target_log_probs(preds, target)))


def mean_over_all_tokens(preds, target):
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    return -float(tf.reduce_sum(log_p * non_pad) / tf.reduce_sum(non_pad))


def probabilities(preds, target):
    """Averages probabilities, not log probabilities."""
    p = tf.exp(_target_log_probs(preds, target))
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    return -float(tf.reduce_mean(tf.reduce_sum(p * non_pad, -1) / tf.reduce_sum(non_pad, -1)))


def divides_by_length(preds, target):
    """Masks the padding but divides by the full length."""
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    return -float(tf.reduce_mean(tf.reduce_mean(log_p * non_pad, -1)))


def empty_sequence_gives_zero(preds, target):
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    return -float(tf.reduce_mean(tf.math.divide_no_nan(tf.reduce_sum(log_p * non_pad, -1),
                                                       tf.reduce_sum(non_pad, -1))))


def empty_sequence_gives_infinity(preds, target):
    """A sequence that is all padding gives +inf, not NaN."""
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    per_sequence = tf.reduce_sum(log_p * non_pad, -1) / tf.reduce_sum(non_pad, -1)
    per_sequence = tf.where(tf.reduce_sum(non_pad, -1) > 0, per_sequence, -np.inf)
    return -float(tf.reduce_mean(per_sequence))


def masks_unknown_id(preds, target):
    """Masks id 0 ('[UNK]') instead of the padding id 1."""
    log_p = _target_log_probs(preds, target)
    non_pad = 1.0 - tf.cast(tf.equal(target, 0), tf.float32)
    return -float(tf.reduce_mean(tf.reduce_sum(log_p * non_pad, -1) / tf.reduce_sum(non_pad, -1)))


# --- correct
def numpy_style(preds, target):
    log_p = np.sum(preds * tf.one_hot(target, preds.shape[-1]), axis=-1)
    non_pad = 1.0 - np.equal(target, PADDING_ID)
    log_p = log_p * non_pad
    log_ppx = np.sum(log_p, axis=-1) / np.sum(non_pad, axis=-1)
    return -np.mean(log_ppx)


def gather_returns_tensor(preds, target):
    target = tf.cast(target, tf.int32)
    log_p = tf.gather(preds, target, batch_dims=2)
    mask = tf.not_equal(target, PADDING_ID)
    per_sequence = tf.reduce_sum(tf.where(mask, log_p, 0.0), axis=1) / tf.reduce_sum(tf.cast(mask, log_p.dtype), axis=1)
    return -tf.reduce_mean(per_sequence)


def take_along_axis_float64(preds, target):
    preds, target = np.asarray(preds, dtype=np.float64), np.asarray(target)
    log_p = np.take_along_axis(preds, target[..., None], axis=-1)[..., 0]
    mask = target != PADDING_ID
    return float(-np.mean((log_p * mask).sum(axis=1) / mask.sum(axis=1)))


WRONG = {f.__name__: (f, TESTS) for f in (wrong_sign, no_padding_mask, mean_over_all_tokens, probabilities,
                                          divides_by_length, empty_sequence_gives_zero, empty_sequence_gives_infinity,
                                          masks_unknown_id)}
@tf.function
def compiled_graph(preds, target):
    """TensorFlow ops only, compiled with tf.function; returns a scalar tensor."""
    preds = tf.cast(preds, tf.float32)
    log_p = tf.gather(preds, tf.cast(target, tf.int32), axis=-1, batch_dims=2)
    real = tf.cast(tf.not_equal(target, 1), tf.float32)
    return -tf.reduce_mean(tf.reduce_sum(log_p * real, axis=-1) / tf.reduce_sum(real, axis=-1))


CORRECT = {f.__name__: f for f in (numpy_style, gather_returns_tensor, take_along_axis_float64)}
CORRECT["compiled_graph"] = compiled_graph
