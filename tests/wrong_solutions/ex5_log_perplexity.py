"""log_perplexity(preds, target)."""
import keras
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


# --- correct (more styles)
def course_student_numpy(preds, target):
    """As the course's students write it: np.sum / np.equal / np.mean with axis=1, returns -log_ppx."""
    log_p = np.sum(preds * tf.one_hot(target, depth=preds.shape[-1]), axis=-1)
    non_pad = 1.0 - np.equal(target, PADDING_ID)
    log_p = log_p * non_pad
    log_ppx = np.sum(log_p, axis=1) / np.sum(non_pad, axis=1)
    log_ppx = np.mean(log_ppx)
    return -log_ppx


def ragged_boolean_mask(preds, target):
    """Keeps the real positions with tf.ragged.boolean_mask; reduce_mean per row (an empty row is NaN)."""
    log_p = tf.gather(preds, target, batch_dims=2)
    real = tf.ragged.boolean_mask(log_p, tf.not_equal(target, PADDING_ID))
    return -float(tf.reduce_mean(tf.reduce_mean(real, axis=1)))


def loop_over_rows(preds, target):
    """One row at a time with boolean_mask, means collected in a list."""
    means = []
    for b in range(preds.shape[0]):
        picked = tf.gather(preds[b], target[b], axis=-1, batch_dims=1)
        kept = tf.boolean_mask(picked, target[b] != PADDING_ID)
        means.append(tf.reduce_sum(kept) / tf.cast(tf.size(kept), kept.dtype))
    return -float(tf.reduce_mean(tf.stack(means)))


def keras_crossentropy_per_position(preds, target):
    """Keras' sparse cross-entropy per position (from_logits: a log-softmax of log probabilities changes
    nothing), masked and averaged per sequence in float64."""
    nll = tf.keras.losses.sparse_categorical_crossentropy(target, preds, from_logits=True)
    mask = tf.cast(target != PADDING_ID, tf.float64)
    nll = tf.cast(nll, tf.float64) * mask
    return float(tf.reduce_mean(tf.reduce_sum(nll, axis=1) / tf.reduce_sum(mask, axis=1)))


def where_and_divide(preds, target):
    """tf.where keeps the log probabilities of real positions; tf.math.divide; a 0-d float64 numpy value."""
    depth = tf.shape(preds)[-1]
    log_p = tf.reduce_sum(tf.cast(tf.one_hot(target, depth), preds.dtype) * preds, axis=-1)
    real = tf.not_equal(target, PADDING_ID)
    total = tf.reduce_sum(tf.where(real, log_p, tf.zeros_like(log_p)), axis=-1)
    count = tf.reduce_sum(tf.where(real, 1.0, 0.0), axis=-1)
    return np.float64(-tf.reduce_mean(tf.math.divide(total, count)).numpy())


def gather_nd_indices(preds, target):
    """tf.gather_nd with (batch, time, id) indices built from a meshgrid; the mean over the masked
    positions written as reduce_mean times length over count."""
    b, t = tf.shape(target)[0], tf.shape(target)[1]
    bi, ti = tf.meshgrid(tf.range(b, dtype=tf.int64), tf.range(t, dtype=tf.int64), indexing="ij")
    log_p = tf.gather_nd(preds, tf.stack([bi, ti, tf.cast(target, tf.int64)], axis=-1))
    mask = tf.cast(tf.math.not_equal(target, PADDING_ID), tf.float32)
    per_row = tf.reduce_mean(log_p * mask, axis=1) * tf.cast(t, tf.float32) / tf.reduce_sum(mask, axis=1)
    return -tf.reduce_mean(per_row).numpy().item()


CORRECT.update({f.__name__: f for f in (course_student_numpy, ragged_boolean_mask, loop_over_rows,
                                        keras_crossentropy_per_position, where_and_divide, gather_nd_indices)})


def keras_ops(preds, target):
    """keras.ops only: take_along_axis, a boolean mask as floats, mean of per-row ratios."""
    import keras
    log_p = keras.ops.squeeze(keras.ops.take_along_axis(preds, keras.ops.expand_dims(target, -1), axis=-1), -1)
    real = keras.ops.cast(keras.ops.not_equal(target, PADDING_ID), "float32")
    per_row = keras.ops.sum(log_p * real, axis=1) / keras.ops.sum(real, axis=1)
    return -float(keras.ops.convert_to_numpy(keras.ops.mean(per_row)))


CORRECT["keras_ops"] = keras_ops


# --- correct: more ways to pick and average
def one_hot_in_preds_dtype_numpy_scalar(preds, target):
    """one_hot in the predictions' dtype, depth from tf.shape; a numpy scalar returned."""
    preds = tf.convert_to_tensor(preds)
    log_p = tf.reduce_sum(preds * tf.one_hot(target, tf.shape(preds)[-1], dtype=preds.dtype), axis=-1)
    mask = tf.cast(tf.not_equal(target, 1), preds.dtype)
    per_row = tf.reduce_sum(log_p * mask, axis=1) / tf.reduce_sum(mask, axis=1)
    return -tf.reduce_mean(per_row).numpy()


def keras_ops_take_along_axis(preds, target):
    t = keras.ops.cast(target, "int32")
    log_p = keras.ops.take_along_axis(preds, keras.ops.expand_dims(t, -1), axis=-1)[..., 0]
    mask = keras.ops.cast(keras.ops.not_equal(t, 1), log_p.dtype)
    return -float(keras.ops.mean(keras.ops.sum(log_p * mask, 1) / keras.ops.sum(mask, 1)))


CORRECT.update({f.__name__: f for f in (one_hot_in_preds_dtype_numpy_scalar, keras_ops_take_along_axis)})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
def numpy_fancy_indexing(preds, target):
    """numpy arrays and fancy indexing preds[b, t, target[b, t]]."""
    preds, target = np.asarray(preds), np.asarray(target)
    b, t = np.indices(target.shape)
    log_p = preds[b, t, target]
    real = target != PADDING_ID
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = np.where(real, log_p, 0.0).sum(axis=1) / real.sum(axis=1)
    return -per_row.mean()


def nanmean_of_masked(preds, target):
    """Padding set to NaN, np.nanmean per row (an all-padding row: NaN, with numpy's warning), then np.mean."""
    preds, target = np.asarray(preds), np.asarray(target)
    log_p = np.take_along_axis(preds, target[..., None], axis=-1)[..., 0]
    per_row = np.nanmean(np.where(target == PADDING_ID, np.nan, log_p), axis=1)
    return -float(np.mean(per_row))


CORRECT.update({"numpy_fancy_indexing": numpy_fancy_indexing, "nanmean_of_masked": nanmean_of_masked})
