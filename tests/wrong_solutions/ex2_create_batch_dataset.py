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


# --- correct (more styles)
def course_notebook_style(lines, vocab, seq_length=100, batch_size=64):
    """As the course's students write it: experimental.AUTOTUNE, an explicit reshuffle_each_iteration."""
    single_line_data = "\n".join(lines)
    all_ids = line_to_tensor(single_line_data, vocab)
    ids_dataset = tf.data.Dataset.from_tensor_slices(all_ids)
    data_generator = ids_dataset.batch(seq_length + 1, drop_remainder=True)
    dataset_xy = data_generator.map(split_input_target, num_parallel_calls=tf.data.experimental.AUTOTUNE)
    return (dataset_xy.shuffle(BUFFER_SIZE, reshuffle_each_iteration=True)
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.experimental.AUTOTUNE))


def shuffle_chunks_then_split(lines, vocab, seq_length=100, batch_size=64):
    """Shuffles the chunks before splitting them (split_input_target after the shuffle)."""
    ids = tf.data.Dataset.from_tensor_slices(line_to_tensor("\n".join(lines), vocab))
    chunks = ids.batch(seq_length + 1, drop_remainder=True).shuffle(BUFFER_SIZE)
    return chunks.map(split_input_target).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def split_whole_batches(lines, vocab, seq_length=100, batch_size=64):
    """Shuffles chunks of seq_length + 1, batches them, then splits each batch along its time axis."""
    ids = tf.data.Dataset.from_tensor_slices(line_to_tensor("\n".join(lines), vocab))
    batches = ids.batch(seq_length + 1, drop_remainder=True).shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True)
    return batches.map(lambda b: (b[:, :-1], b[:, 1:])).prefetch(tf.data.AUTOTUNE)


def signal_frame(lines, vocab, seq_length=100, batch_size=64):
    """tf.signal.frame cuts the chunks (no padding at the end: the remainder is dropped)."""
    ids = line_to_tensor("\n".join(lines), vocab)
    chunks = tf.signal.frame(ids, seq_length + 1, seq_length + 1)
    ds = tf.data.Dataset.from_tensor_slices(chunks).map(split_input_target)
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def shuffled_indices(lines, vocab, seq_length=100, batch_size=64):
    """Shuffles chunk numbers (Dataset.range) and gathers each chunk from a tf reshape of the ids."""
    ids = line_to_tensor("\n".join(lines), vocab)
    n = int(ids.shape[0]) // (seq_length + 1)
    chunks = tf.reshape(ids[: n * (seq_length + 1)], (n, seq_length + 1))
    ds = tf.data.Dataset.range(n).shuffle(BUFFER_SIZE).map(lambda k: split_input_target(tf.gather(chunks, k)))
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def cache_then_shuffle(lines, vocab, seq_length=100, batch_size=64):
    """cache() before the shuffle (the TensorFlow tutorials' habit): every pass is shuffled anew."""
    ids = tf.data.Dataset.from_tensor_slices(line_to_tensor("\n".join(lines), vocab))
    ds = ids.batch(seq_length + 1, drop_remainder=True).map(split_input_target).cache()
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def whole_dataset_shuffle(lines, vocab, seq_length=100, batch_size=64):
    """A shuffle buffer as large as the number of chunks (a full shuffle), padded_batch for the batches."""
    ids = line_to_tensor("\n".join(lines), vocab)
    chunks = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
    n = int(chunks.cardinality())
    return (chunks.map(split_input_target).shuffle(max(n, 1))
            .padded_batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def numpy_chunks_from_a_python_list(lines, vocab, seq_length=100, batch_size=64):
    """Python list of ids (a dict lookup), numpy chunks of int64, (x, y) slices."""
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index.get(c, 0) if c not in ("[UNK]", "") else 0 for c in "\n".join(lines)], dtype=np.int64)
    size = seq_length + 1
    chunks = ids[: len(ids) // size * size].reshape(-1, size)
    ds = tf.data.Dataset.from_tensor_slices((chunks[:, :-1], chunks[:, 1:]))
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


CORRECT.update({f.__name__: f for f in (course_notebook_style, shuffle_chunks_then_split, split_whole_batches,
                                        signal_frame, shuffled_indices, cache_then_shuffle, whole_dataset_shuffle,
                                        numpy_chunks_from_a_python_list)})


def filter_short_chunks(lines, vocab, seq_length=100, batch_size=64):
    """Keeps the short last chunk in batch(), then filters it out (element_spec (batch_size, None))."""
    ids = tf.data.Dataset.from_tensor_slices(line_to_tensor("\n".join(lines), vocab))
    chunks = ids.batch(seq_length + 1).filter(lambda c: tf.shape(c)[0] == seq_length + 1)
    return chunks.map(split_input_target).shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True)


def joined_with_reduce_join(lines, vocab, seq_length=100, batch_size=64):
    """Joins the lines with tf.strings.reduce_join(separator='\\n') and converts the 0-d string tensor."""
    text = tf.strings.reduce_join(tf.constant(lines), separator="\n")
    ids = tf.data.Dataset.from_tensor_slices(line_to_tensor(text, vocab))
    ds = ids.batch(seq_length + 1, drop_remainder=True).map(split_input_target)
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def permutation_at_every_pass(lines, vocab, seq_length=100, batch_size=64):
    """A Python generator that draws a new numpy permutation of the chunks at every pass."""
    ids = line_to_tensor("\n".join(lines), vocab).numpy()
    size = seq_length + 1
    chunks = ids[: len(ids) // size * size].reshape(-1, size)

    def shuffled():
        for k in np.random.permutation(len(chunks)):
            yield chunks[k, :-1], chunks[k, 1:]
    spec = (tf.TensorSpec([seq_length], tf.int64), tf.TensorSpec([seq_length], tf.int64))
    return tf.data.Dataset.from_generator(shuffled, output_signature=spec).batch(batch_size, drop_remainder=True)


CORRECT.update({f.__name__: f for f in (filter_short_chunks, joined_with_reduce_join, permutation_at_every_pass)})


# --- correct: more pipelines
def parallel_map_and_experimental_autotune(lines, vocab, seq_length=100, batch_size=64):
    """map with num_parallel_calls (tf.data keeps the order), reshuffle_each_iteration given, the old
    tf.data.experimental.AUTOTUNE."""
    ids = line_to_tensor("\n".join(lines), vocab)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
    ds = ds.map(split_input_target, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.shuffle(BUFFER_SIZE, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True).prefetch(
        tf.data.experimental.AUTOTUNE)


def shuffle_with_a_seed(lines, vocab, seq_length=100, batch_size=64):
    """shuffle(BUFFER_SIZE, seed=42): the same orders from run to run, a new one at every epoch."""
    ids = line_to_tensor("\n".join(lines), vocab)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True).map(split_input_target)
    return ds.shuffle(BUFFER_SIZE, seed=42).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def ids_through_a_python_list(lines, vocab, seq_length=100, batch_size=64):
    """The ids to a Python list and back to an int64 tensor; the split as a lambda."""
    all_ids = line_to_tensor("\n".join(lines), vocab).numpy().tolist()
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(all_ids, tf.int64))
    ds = ds.batch(seq_length + 1, drop_remainder=True).map(lambda s: (s[:-1], s[1:]))
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


CORRECT.update({f.__name__: f for f in (parallel_map_and_experimental_autotune, shuffle_with_a_seed,
                                        ids_through_a_python_list)})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
def sliding_window_view(lines, vocab, seq_length=100, batch_size=64):
    """numpy's sliding_window_view with a step of seq_length + 1, then (x, y) slices."""
    ids = line_to_tensor("\n".join(lines), vocab).numpy()
    size = seq_length + 1
    chunks = np.lib.stride_tricks.sliding_window_view(ids, size)[::size]
    ds = tf.data.Dataset.from_tensor_slices((chunks[:, :-1], chunks[:, 1:]))
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def flat_values_of_a_batch_of_one(lines, vocab, seq_length=100, batch_size=64):
    """line_to_tensor of a list of one text (as the notebook's evaluation cell does), its flat_values."""
    ids = line_to_tensor(["\n".join(lines)], vocab).flat_values
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True).map(split_input_target)
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def nondeterministic_parallel_calls(lines, vocab, seq_length=100, batch_size=64):
    """deterministic=False in the parallel map and batch (their order may change: it is shuffled anyway)."""
    ids = line_to_tensor("\n".join(lines), vocab)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
    ds = ds.map(split_input_target, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.shuffle(BUFFER_SIZE).batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE,
                                         deterministic=False).prefetch(tf.data.AUTOTUNE)


CORRECT.update({"sliding_window_view": sliding_window_view,
                "flat_values_of_a_batch_of_one": flat_values_of_a_batch_of_one,
                "nondeterministic_parallel_calls": nondeterministic_parallel_calls})
