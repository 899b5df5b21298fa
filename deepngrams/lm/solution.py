"""Reference solutions of the six graded exercises, and the helpers students are given.

This module is the one source of truth for the solution code: `make release` copies each
block between ``# --- exercise NAME`` and ``# --- end`` into the solution cell NAME of the
source notebook (and each ``# --- helper NAME`` block into its locked cell), and every tool
(training, reference values, generation) imports from here. The ``### BEGIN SOLUTION`` /
``### END SOLUTION`` lines are nbgrader's markers: the student release replaces what lies
between them with a stub.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

PADDING_ID = 1


# --- helper text_from_ids
def text_from_ids(ids, vocab):
    """Turn a tensor of ids back into text (one string per row)."""
    chars_from_ids = tf.keras.layers.StringLookup(vocabulary=vocab, invert=True, mask_token=None)
    return tf.strings.reduce_join(chars_from_ids(ids), axis=-1)
# --- end


# --- helper split_input_target
def split_input_target(sequence):
    """The input is every id but the last, the target every id but the first."""
    input_text = sequence[:-1]
    target_text = sequence[1:]
    return input_text, target_text
# --- end


# --- exercise line_to_tensor
def line_to_tensor(line, vocab):
    """Convert a line of text (or a list of lines) into a tensor of integer ids."""
    ### BEGIN SOLUTION
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    ids = tf.keras.layers.StringLookup(vocabulary=vocab, mask_token=None)(chars)
    ### END SOLUTION
    return ids
# --- end


# --- exercise create_batch_dataset
def create_batch_dataset(lines, vocab, seq_length=100, batch_size=64):
    """Cut the joined lines into (input, target) pairs and batch them for training."""
    BUFFER_SIZE = 10000
    ### BEGIN SOLUTION
    single_line_data = "\n".join(lines)
    all_ids = line_to_tensor(single_line_data, vocab)
    ids_dataset = tf.data.Dataset.from_tensor_slices(all_ids)
    data_generator = ids_dataset.batch(seq_length + 1, drop_remainder=True)
    dataset_xy = data_generator.map(split_input_target)
    dataset = (
        dataset_xy.shuffle(BUFFER_SIZE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    ### END SOLUTION
    return dataset
# --- end


# --- exercise GRULM
class GRULM(tf.keras.Model):
    """Embedding, then a GRU, then a dense layer giving log probabilities of the next character."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        ### BEGIN SOLUTION
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)
        ### END SOLUTION

    def call(self, inputs, states=None, return_state=False, training=False):
        x = inputs
        ### BEGIN SOLUTION
        x = self.embedding(x, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        ### END SOLUTION
        if return_state:
            return x, states
        return x
# --- end


# --- exercise compile_model
def compile_model(model):
    """Attach the loss and the optimizer used to train the model."""
    ### BEGIN SOLUTION
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = tf.keras.optimizers.Adam(learning_rate=0.00125)
    model.compile(optimizer=opt, loss=loss)
    ### END SOLUTION
    return model
# --- end


# --- exercise log_perplexity
def log_perplexity(preds, target):
    """Mean negative log probability of the targets, ignoring padding positions."""
    PADDING_ID = 1
    ### BEGIN SOLUTION
    preds = tf.cast(preds, tf.float32)
    target = tf.convert_to_tensor(target)
    log_p = tf.reduce_sum(tf.one_hot(target, preds.shape[-1]) * preds, axis=-1)
    non_pad = 1.0 - tf.cast(tf.equal(target, PADDING_ID), tf.float32)
    log_p = log_p * non_pad
    log_ppx = tf.reduce_sum(log_p, axis=-1) / tf.reduce_sum(non_pad, axis=-1)
    log_ppx = tf.reduce_mean(log_ppx)
    ### END SOLUTION
    return -float(log_ppx)
# --- end


# --- exercise temperature_random_sampling
def temperature_random_sampling(log_probs, temperature):
    """Sample ids with the Gumbel-max trick; temperature 0 picks the most likely id."""
    ### BEGIN SOLUTION
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    g = -tf.math.log(-tf.math.log(u))
    return tf.math.argmax(log_probs + g * temperature, axis=-1)
    ### END SOLUTION
# --- end


# --- exercise GenerativeModel
class GenerativeModel(tf.keras.Model):
    """Wraps a trained GRULM to generate text one character at a time."""

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.temperature = temperature
        self.model = model
        self.vocab = vocab
        # Never sample '[UNK]' (id 0) or the padding '' (id 1).
        self.prediction_mask = tf.constant([-np.inf, -np.inf] + [0.0] * (len(vocab) - 2))

    def generate_one_step(self, inputs, states=None):
        """Feed `inputs` (a batch of strings) and return the next characters and the new state."""
        ### BEGIN SOLUTION
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        predicted_logits, states = self.model(inputs=input_ids, states=states, return_state=True)
        predicted_logits = predicted_logits[:, -1, :] + self.prediction_mask
        predicted_ids = temperature_random_sampling(predicted_logits, self.temperature)
        predicted_chars = text_from_ids(predicted_ids[:, tf.newaxis], self.vocab)
        ### END SOLUTION
        return predicted_chars, states

    def generate_n_chars(self, num_chars, prefix):
        """Return `prefix` followed by `num_chars` generated characters."""
        states = None
        next_char = tf.constant([prefix])
        result = [next_char]
        ### BEGIN SOLUTION
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char)
        ### END SOLUTION
        return tf.strings.join(result)[0].numpy().decode("utf-8")
# --- end
