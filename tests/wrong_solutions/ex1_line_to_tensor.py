"""line_to_tensor(line, vocab)."""
import json
from pathlib import Path

import tensorflow as tf

from deepngrams.lm.solution import line_to_tensor as reference

TESTS = ("test_line_to_tensor",)
_CARD = Path(__file__).resolve().parents[2] / "model" / "model_card.json"


# --- wrong
def mask_token_empty(line, vocab):
    """The Keras 2 habit: mask_token='' (Keras 3 rejects '' at index 1)."""
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=vocab, mask_token="")(chars)


def int32_ids(line, vocab):
    return tf.cast(reference(line, vocab), tf.int32)


def int32_rows_for_a_list(line, vocab):
    """int64 ids for one line, int32 rows for a list of lines."""
    ids = reference(line, vocab)
    return ids if isinstance(line, str) else tf.cast(ids, tf.int32)


def byte_split(line, vocab):
    """Splits bytes, not characters: 'é' becomes two unknown ids."""
    chars = tf.strings.bytes_split(line)
    return tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)(chars)


def vocab_without_specials(line, vocab):
    """Lets StringLookup add its own OOV token: every id is one too small."""
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=vocab[2:], mask_token=None)(chars)


def global_vocab(line, vocab):
    """Ignores its vocab argument."""
    return reference(line, json.loads(_CARD.read_text())["vocab"])


def joins_a_list(line, vocab):
    """A list of lines becomes one row."""
    if not isinstance(line, str):
        line = "\n".join(line)
    return reference(line, vocab)


def always_a_batch(line, vocab):
    """A single line comes back as a (1, n) ragged batch."""
    if isinstance(line, str):
        line = [line]
    return reference(line, vocab)


def numpy_ids(line, vocab):
    out = reference(line, vocab)
    return out.numpy() if isinstance(out, tf.Tensor) else [row.numpy() for row in out]


# --- correct
def static_hash_table(line, vocab):
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)),
        default_value=0)
    chars = tf.strings.unicode_split(line, "UTF-8")
    if isinstance(chars, tf.RaggedTensor):
        return tf.ragged.map_flat_values(table.lookup, chars)
    return table.lookup(chars)


def lookup_with_set_vocabulary(line, vocab):
    lookup = tf.keras.layers.StringLookup(mask_token=None, num_oov_indices=1, oov_token="[UNK]", output_mode="int")
    lookup.set_vocabulary(vocab)
    return lookup(tf.strings.unicode_split(tf.constant(line), input_encoding="UTF-8", errors="replace"))


def python_dict(line, vocab):
    """Python's dict, also for a tf.string tensor of lines (as GenerativeModel passes them)."""
    index = {c: i for i, c in enumerate(vocab)}

    def ids(text):
        return [index.get(c, 0) for c in text]

    if isinstance(line, tf.Tensor):
        line = [text.decode("utf-8") for text in line.numpy().tolist()]
    if isinstance(line, str):
        return tf.constant(ids(line), dtype=tf.int64)
    return tf.ragged.constant([ids(text) for text in line], dtype=tf.int64)


# --- wrong again
def python_dict_without_tensors(line, vocab):
    """Python's dict for a line or a list of lines; a tf.string tensor of lines (GenerativeModel's) fails."""
    def ids(text):
        return [vocab.index(c) if c in vocab[2:] else 0 for c in text]

    if isinstance(line, str):
        return tf.constant(ids(line), dtype=tf.int64)
    return tf.ragged.constant([ids(text) for text in line], dtype=tf.int64)


WRONG = {f.__name__: (f, TESTS) for f in (mask_token_empty, int32_ids, int32_rows_for_a_list, byte_split,
                                          vocab_without_specials, global_vocab, joins_a_list, always_a_batch,
                                          numpy_ids, python_dict_without_tensors)}
CORRECT = {f.__name__: f for f in (static_hash_table, lookup_with_set_vocabulary, python_dict)}


# --- correct (more styles)
def lookup_adds_its_own_unknown(line, vocab):
    """StringLookup adds '[UNK]' itself (its default oov_token) in front of vocab[1:]: the same ids."""
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=vocab[1:], mask_token=None)(chars)


def code_point_table(line, vocab):
    """unicode_decode to code points, then a dense table from code point to id (tf.gather)."""
    import numpy as np
    singles = [(i, ord(c)) for i, c in enumerate(vocab) if i >= 2 and len(c) == 1]
    table = np.zeros(max([cp for _, cp in singles], default=0) + 2, dtype=np.int64)
    for i, cp in singles:
        table[cp] = i
    table = tf.constant(table)
    points = tf.strings.unicode_decode(line, "UTF-8")
    clipped = lambda cp: tf.gather(table, tf.minimum(tf.cast(cp, tf.int64), len(table) - 1))  # noqa: E731
    if isinstance(points, tf.RaggedTensor):
        return tf.ragged.map_flat_values(clipped, points)
    return clipped(points)


_LOOKUPS = {}


def lookup_built_once_per_vocab(line, vocab):
    """One StringLookup per vocabulary, made at the first call and kept (keyed by the vocab itself)."""
    key = tuple(vocab)
    if key not in _LOOKUPS:
        _LOOKUPS[key] = tf.keras.layers.StringLookup(vocabulary=list(vocab), mask_token=None)
    return _LOOKUPS[key](tf.strings.unicode_split(line, "UTF-8"))


def ragged_stack_of_rows(line, vocab):
    """One call per line for a list (or a tf.string tensor) of lines, stacked into a ragged tensor."""
    def one(text):
        chars = tf.strings.unicode_split(text, "UTF-8")
        return tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)(chars)
    if isinstance(line, str) or (isinstance(line, tf.Tensor) and line.shape.rank == 0):
        return one(line)
    return tf.ragged.stack([one(text) for text in line])


def lookup_with_an_index_table(line, vocab):
    """tf.lookup.index_table_from_tensor's successor: StaticVocabularyTable would hash; a StaticHashTable
    over the characters from id 2 on, unknown -> 0, int64 ids cast explicitly."""
    keys = tf.constant(vocab[2:])
    values = tf.range(2, len(vocab), dtype=tf.int64)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=tf.constant(0, tf.int64))
    chars = tf.strings.unicode_split(tf.convert_to_tensor(line), "UTF-8")
    return tf.cast(tf.ragged.map_flat_values(table.lookup, chars) if isinstance(chars, tf.RaggedTensor)
                   else table.lookup(chars), tf.int64)


CORRECT.update({f.__name__: f for f in (lookup_adds_its_own_unknown, code_point_table, lookup_built_once_per_vocab,
                                        ragged_stack_of_rows, lookup_with_an_index_table)})


@tf.function
def traced_reference(line, vocab):
    """The reference under @tf.function (a new trace for every Python string, list or vocabulary)."""
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)(chars)


CORRECT["traced_reference"] = traced_reference


# --- correct: StringLookup spelled out further
def lookup_with_the_oov_token_named(line, vocab):
    """oov_token='[UNK]' and num_oov_indices=1 given (Keras' defaults), with the vocabulary's own '[UNK]'."""
    chars = tf.strings.unicode_split(line, "UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=vocab, oov_token="[UNK]", mask_token=None, num_oov_indices=1)(chars)


def lookup_of_a_vocabulary_tensor(line, vocab):
    """The vocabulary handed to StringLookup as a tf.string tensor; output_mode='int' given."""
    chars = tf.strings.unicode_split(tf.convert_to_tensor(line), input_encoding="UTF-8")
    return tf.keras.layers.StringLookup(vocabulary=tf.constant(vocab), mask_token=None, output_mode="int")(chars)


CORRECT.update({f.__name__: f for f in (lookup_with_the_oov_token_named, lookup_of_a_vocabulary_tensor)})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
def map_fn_over_lines(line, vocab):
    """One line at a time with tf.map_fn over a tensor of lines (ragged output signature)."""
    lookup = tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)
    t = tf.convert_to_tensor(line)
    if t.shape.rank == 0:
        return lookup(tf.strings.unicode_split(t, "UTF-8"))
    return tf.map_fn(lambda s: lookup(tf.strings.unicode_split(s, "UTF-8")), t,
                     fn_output_signature=tf.RaggedTensorSpec(shape=[None], dtype=tf.int64))


def numpy_vectorised_dict(line, vocab):
    """numpy: a dict lookup vectorised with np.vectorize over the characters."""
    import numpy as np
    index = {c: i for i, c in enumerate(vocab)}
    get = np.vectorize(lambda c: index.get(c, 0), otypes=[np.int64])

    def one(text):
        return get(np.array(list(text), dtype=object)) if text else np.zeros(0, np.int64)
    if isinstance(line, tf.Tensor):
        line = [s.decode("utf-8") for s in line.numpy().tolist()]
    if isinstance(line, str):
        return tf.constant(one(line), dtype=tf.int64)
    return tf.ragged.stack([tf.constant(one(text), dtype=tf.int64) for text in line])


CORRECT.update({"map_fn_over_lines": map_fn_over_lines, "numpy_vectorised_dict": numpy_vectorised_dict})
