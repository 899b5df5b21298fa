"""GRULM(vocab_size, embedding_dim, rnn_units)."""
import numpy as np
import tensorflow as tf

TESTS = ("test_GRULM_layers", "test_GRULM_outputs")
LAYERS, OUTPUTS = ("test_GRULM_layers",), ("test_GRULM_outputs",)
BOTH = TESTS


def _make(activation=tf.nn.log_softmax, use_state=True, return_sequences=True, gru_return_state=True, units=None,
          swap_embedding=False, always_tuple=False, post=None, mask_zero=False):
    class GRULM(tf.keras.Model):
        def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
            super().__init__()
            if swap_embedding:
                self.embedding = tf.keras.layers.Embedding(embedding_dim, vocab_size)
            else:
                self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero)
            self.gru = tf.keras.layers.GRU(units or rnn_units, return_sequences=return_sequences,
                                           return_state=gru_return_state)
            self.dense = tf.keras.layers.Dense(vocab_size, activation=activation)

        def call(self, inputs, states=None, return_state=False, training=False):
            x = self.embedding(inputs, training=training)
            out = self.gru(x, initial_state=states if use_state else None, training=training)
            x, new_states = out if gru_return_state else (out, None)
            x = self.dense(x, training=training)
            if post is not None:
                x = post(x)
            if return_state or always_tuple:
                return x, new_states
            return x
    return GRULM


# --- correct
class GetInitialState(tf.keras.Model):
    """Starts from get_initial_state(batch_size) when no state is given; 'log_softmax' by name."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf.keras.layers.Embedding(input_dim=vocab_size, output_dim=embedding_dim)
        self.gru = tf.keras.layers.GRU(units=rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(units=vocab_size, activation="log_softmax")

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        if states is None:
            states = self.gru.get_initial_state(tf.shape(x)[0])
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x


class LayersMadeInBuild(tf.keras.Model):
    """Makes its layers in build(), at the first call, as Keras allows: they do not exist before it."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.sizes = (vocab_size, embedding_dim, rnn_units)

    def build(self, input_shape):
        vocab_size, embedding_dim, rnn_units = self.sizes
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)
        super().build(input_shape)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x


class _IgnoresStates(_make()):
    """Never passes `states` to its GRU; what it answers when given some is up to a subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []  # (ids, log probs, final state) of each call so far

    def run(self, ids):
        x, state = self.gru(self.embedding(ids))
        return self.dense(x), state


class AnswersContinuationsFromItsCache(_IgnoresStates):
    """Given states, answers with the tail of an earlier call whose inputs ended with these inputs."""

    def call(self, inputs, states=None, return_state=False, training=False):
        ids = np.asarray(inputs)
        out, state = self.run(inputs)
        if states is not None:
            for before, before_out, before_state in reversed(self.seen):
                if before.shape[0] == ids.shape[0] and before.shape[1] > ids.shape[1] \
                        and (before[:, -ids.shape[1]:] == ids).all():
                    out, state = before_out[:, -ids.shape[1]:], before_state
                    break
        self.seen.append((ids, out, state))
        return (out, state) if return_state else out


class ReplaysWhatItRead(_IgnoresStates):
    """Given states, runs what it read in its call before followed by these inputs, from zero, and
    answers with the part of these inputs."""

    def call(self, inputs, states=None, return_state=False, training=False):
        ids = np.asarray(inputs)
        if states is not None and self.seen and self.seen[-1][0].shape[0] == ids.shape[0]:
            out, state = self.run(np.concatenate([self.seen[-1][0], ids], axis=1))
            out = out[:, -ids.shape[1]:]
        else:
            out, state = self.run(inputs)
        self.seen.append((ids, out, state))
        return (out, state) if return_state else out


class TfFunctionOnCall(_make()):
    """call under @tf.function: an input shape traced before load_weights keeps the weights it ran with."""

    @tf.function
    def call(self, inputs, states=None, return_state=False, training=False):
        return super().call(inputs, states=states, return_state=return_state, training=training)


WRONG = {
    "tf_function_on_call": (TfFunctionOnCall, OUTPUTS),  # (the grader fails its layers cell too)
    "answers_continuations_from_its_cache": (AnswersContinuationsFromItsCache, OUTPUTS),
    "replays_what_it_read_instead_of_the_states": (ReplaysWhatItRead, OUTPUTS),
    "logits": (_make(activation=None), BOTH),
    "softmax": (_make(activation="softmax"), BOTH),
    "ignores_incoming_state": (_make(use_state=False), OUTPUTS),
    "return_sequences_false": (_make(return_sequences=False), BOTH),
    "no_return_state": (_make(gru_return_state=False), BOTH),
    "units_hard_coded_512": (_make(units=512), LAYERS),
    "embedding_dims_swapped": (_make(swap_embedding=True), BOTH),
    "always_returns_a_tuple": (_make(always_tuple=True), BOTH),
    "log_softmax_twice_over_time_axis": (_make(post=lambda x: tf.nn.log_softmax(x, axis=1)), BOTH),
    "embedding_masks_unknown": (_make(mask_zero=True), OUTPUTS),  # skips '[UNK]' (id 0) as if it were padding
}
CORRECT = {
    "get_initial_state_and_activation_name": GetInitialState,
    "log_softmax_in_call": _make(activation=None, post=tf.nn.log_softmax),
    "layers_made_in_build": LayersMadeInBuild,
}
