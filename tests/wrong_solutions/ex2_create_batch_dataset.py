"""create_batch_dataset(lines, vocab, seq_length=100, batch_size=64)."""
import numpy as np
import tensorflow as tf

from deepngrams.lm.solution import line_to_tensor, split_input_target

TESTS = ("test_create_batch_dataset",)
BUFFER_SIZE = 10000


def _make(join="\n", end="", chunk=1, drop_chunks=True, split=split_input_target, shuffle="before", drop_batches=True,
          dtype=None, skip=0, shuffle_ids=False, buffer=BUFFER_SIZE, reshuffle=True, cache=False):
    """The reference recipe with one ingredient changed."""
    def create_batch_dataset(lines, vocab, seq_length=100, batch_size=64):
        ids = line_to_tensor(join.join(lines) + end, vocab)[skip:]
        if dtype is not None:
            ids = tf.cast(ids, dtype)
        ds = tf.data.Dataset.from_tensor_slices(ids)
        if shuffle_ids:
            ds = ds.shuffle(BUFFER_SIZE)
        ds = ds.batch(seq_length + chunk, drop_remainder=drop_chunks).map(split)
        if shuffle == "before":
            ds = ds.shuffle(buffer, reshuffle_each_iteration=reshuffle)
        if cache:  # keeps the first pass's order for every later one
            ds = ds.cache()
        ds = ds.batch(batch_size, drop_remainder=drop_batches)
        if shuffle == "after":
            ds = ds.shuffle(BUFFER_SIZE)
        return ds.prefetch(tf.data.AUTOTUNE)
    return create_batch_dataset


def _chunks(lines, vocab, seq_length):
    ids = line_to_tensor("\n".join(lines), vocab).numpy()
    n = len(ids) // (seq_length + 1)
    return ids[: n * (seq_length + 1)].reshape(n, seq_length + 1)


def _in_order(chunks, order, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(chunks[order]).map(split_input_target)
    return ds.batch(batch_size, drop_remainder=True)


def shuffled_once_with_numpy(lines, vocab, seq_length=100, batch_size=64):
    """A uniform order, drawn once: every epoch reads the chunks in that same order."""
    chunks = _chunks(lines, vocab, seq_length)
    return _in_order(chunks, np.random.default_rng(0).permutation(len(chunks)), batch_size)


def stride_order(n: int) -> np.ndarray:
    """A fixed order with no tie to the text's: chunk k * 0.618 n (mod n) comes k-th."""
    stride = max(1, round(n * 0.6180339887))
    while np.gcd(stride, n) != 1:
        stride += 1
    return (np.arange(n) * stride) % n


def golden_ratio_stride(lines, vocab, seq_length=100, batch_size=64):
    """No randomness: the chunks in `stride_order`, the same at every pass."""
    chunks = _chunks(lines, vocab, seq_length)
    return _in_order(chunks, stride_order(len(chunks)), batch_size)


def _reversed_order(lines, vocab, seq_length=100, batch_size=64):
    """No shuffle: the chunks in the reverse of the text's order (a fixed order that is not the text's)."""
    chunks = _chunks(lines, vocab, seq_length)
    return _in_order(chunks, np.arange(len(chunks))[::-1], batch_size)


# --- correct
def map_with_lambda(lines, vocab, seq_length=100, batch_size=64):
    ids = line_to_tensor("\n".join(lines), vocab)
    chunks = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
    pairs = chunks.map(lambda chunk: (chunk[:-1], chunk[1:]), num_parallel_calls=tf.data.AUTOTUNE)
    return pairs.shuffle(10000, seed=7).batch(batch_size, drop_remainder=True).prefetch(1)


def window_flat_map(lines, vocab, seq_length=100, batch_size=64):
    ids = line_to_tensor("\n".join(lines), vocab)
    windows = tf.data.Dataset.from_tensor_slices(ids).window(seq_length + 1, shift=seq_length + 1,
                                                              drop_remainder=True)
    chunks = windows.flat_map(lambda w: w.batch(seq_length + 1, drop_remainder=True))
    return chunks.map(split_input_target).shuffle(10000).batch(batch_size, drop_remainder=True)


def window_of_unknown_length(lines, vocab, seq_length=100, batch_size=64):
    """window + flat_map whose inner batch keeps its remainder (the windows dropped it already): the
    right chunks, of a length element_spec cannot tell (None)."""
    ids = line_to_tensor("\n".join(lines), vocab)
    windows = tf.data.Dataset.from_tensor_slices(ids).window(seq_length + 1, shift=seq_length + 1,
                                                              drop_remainder=True)
    chunks = windows.flat_map(lambda w: w.batch(seq_length + 1))
    return chunks.map(split_input_target).shuffle(10000).batch(batch_size, drop_remainder=True)


def timeseries_dataset(lines, vocab, seq_length=100, batch_size=64):
    """Keras' timeseries_dataset_from_array cuts the chunks: element_spec (batch_size, None)."""
    ids = line_to_tensor("\n".join(lines), vocab)
    chunks = tf.keras.utils.timeseries_dataset_from_array(ids, None, sequence_length=seq_length + 1,
                                                          sequence_stride=seq_length + 1, batch_size=None)
    return chunks.map(split_input_target).shuffle(10000).batch(batch_size, drop_remainder=True).prefetch(2)


def from_a_generator(lines, vocab, seq_length=100, batch_size=64):
    """Chunks from a Python generator declared of any length: element_spec (batch_size, None)."""
    ids = line_to_tensor("\n".join(lines), vocab).numpy()
    size = seq_length + 1

    def chunks():
        for k in range(len(ids) // size):
            yield ids[k * size:(k + 1) * size]
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=tf.TensorSpec([None], tf.int64))
    return dataset.map(split_input_target).shuffle(10000).batch(batch_size, drop_remainder=True)


def numpy_reshape(lines, vocab, seq_length=100, batch_size=64):
    ids = line_to_tensor("\n".join(lines), vocab).numpy()
    n = len(ids) // (seq_length + 1)
    chunks = ids[: n * (seq_length + 1)].reshape(n, seq_length + 1)
    ds = tf.data.Dataset.from_tensor_slices((chunks[:, :-1], chunks[:, 1:]))
    return ds.shuffle(10000, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True)


WRONG = {name: (f, TESTS) for name, f in {
    "chunks_of_seq_length": _make(chunk=0),
    "chunks_of_seq_length_plus_2": _make(chunk=2),
    "chunks_keep_remainder": _make(drop_chunks=False),
    "batches_keep_remainder": _make(drop_batches=False),
    "no_shuffle": _make(shuffle=None),
    "shuffle_after_batch": _make(shuffle="after"),
    "reversed_order": _reversed_order,
    "tiny_shuffle_buffer": _make(buffer=2),
    "joined_with_space": _make(join=" "),
    "joined_without_separator": _make(join=""),
    "newline_after_the_last_line": _make(end="\n"),
    "target_not_shifted": _make(split=lambda c: (c[:-1], c[:-1])),
    "input_and_target_swapped": _make(split=lambda c: (c[1:], c[:-1])),
    "int32_ids": _make(dtype=tf.int32),
    "skips_first_id": _make(skip=1),
    "shuffles_ids_before_chunking": _make(shuffle_ids=True),
    "shuffled_once_with_numpy": shuffled_once_with_numpy,
    "golden_ratio_stride": golden_ratio_stride,
    "not_reshuffled_each_epoch": _make(reshuffle=False),
    "cached_after_the_shuffle": _make(cache=True),
}.items()}
def ids_in_a_dataset_map(lines, vocab, seq_length=100, batch_size=64):
    """line_to_tensor runs inside tf.data (graph mode), on the joined text."""
    text = tf.data.Dataset.from_tensors("\n".join(lines))
    ids = text.map(lambda t: line_to_tensor(t, vocab)).unbatch()
    chunks = ids.batch(seq_length + 1, drop_remainder=True).map(split_input_target)
    return chunks.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


CORRECT = {f.__name__: f for f in (map_with_lambda, window_flat_map, numpy_reshape, ids_in_a_dataset_map,
                                    window_of_unknown_length, timeseries_dataset, from_a_generator)}
