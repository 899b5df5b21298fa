"""GRULM(vocab_size, embedding_dim, rnn_units)."""
import keras
import numpy as np
import tensorflow as tf

from deepngrams.lm import solution

Reference = solution.GRULM  # the variants below that change only its call keep its layers
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


class LogSoftmaxOnlyWithoutState(_make(activation=None)):
    """Normalises on one path only: model(inputs) gives log probabilities, model(inputs, return_state=True)
    the logits (the path text generation takes)."""

    def call(self, inputs, states=None, return_state=False, training=False):
        out = super().call(inputs, states=states, return_state=return_state, training=training)
        return out if return_state else tf.nn.log_softmax(out)


class WrongOnGenerationsFirstCall(_make()):
    """Right when asked for log probabilities alone or when it continues from a state; on the call text
    generation makes first (no state given, the state asked back) its log probabilities are off."""

    def call(self, inputs, states=None, return_state=False, training=False):
        out = super().call(inputs, states=states, return_state=return_state, training=training)
        if return_state and states is None:
            log_probs, state = out
            return log_probs * 0.5, state
        return out


WRONG = {
    "tf_function_on_call": (TfFunctionOnCall, OUTPUTS),
    "wrong_on_generations_first_call": (WrongOnGenerationsFirstCall, OUTPUTS),
    "log_softmax_only_without_state": (LogSoftmaxOnlyWithoutState, OUTPUTS),  # (the grader fails its layers cell too)
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


# --- correct (more styles)
class CourseStudentStyle(tf.keras.Model):
    """As the course's students write it: activation by position, super(GRULM, self), tutorial initializer."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super(CourseStudentStyle, self).__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True,
                                       recurrent_initializer="glorot_uniform")
        self.dense = tf.keras.layers.Dense(vocab_size, tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = inputs
        x = self.embedding(x, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        if return_state:
            return x, states
        else:
            return x


class StateInAList(tf.keras.Model):
    """Gives the GRU its initial state as a list of one tensor (Keras' form for an RNN's states);
    training=None by default; returns a list [log_probs, state]."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.keras.activations.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=None):
        x = self.embedding(inputs)
        outputs = self.gru(x, initial_state=None if states is None else [states], training=training)
        x = self.dense(outputs[0])
        return [x, outputs[1]] if return_state else x


class LogsumexpInCall(tf.keras.Model):
    """Dense without activation; the log-softmax written out as x - logsumexp(x) in call."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size)

    def call(self, inputs, states=None, return_state=False, training=False):
        x, h = self.gru(self.embedding(inputs), initial_state=states, training=training)
        logits = self.dense(x)
        x = logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
        return (x, h) if return_state else x


class ActivationLayer(tf.keras.Model):
    """A separate Activation layer applies the log-softmax after the dense layer."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size)
        self.log_softmax = tf.keras.layers.Activation("log_softmax")

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(tf.cast(inputs, tf.int32))
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.log_softmax(self.dense(x))
        if return_state:
            return x, states
        return x


class GruDropoutOffAtInference(tf.keras.Model):
    """Explicit defaults spelled out (reset_after=True, use_bias=True); mask_zero=False said out loud."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(input_dim=vocab_size, output_dim=embedding_dim, mask_zero=False)
        self.gru = tf.keras.layers.GRU(units=rnn_units, activation="tanh", recurrent_activation="sigmoid",
                                       use_bias=True, reset_after=True, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(units=vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        if states is None:
            x, states = self.gru(x, training=training)
        else:
            x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x


class BuiltInInit(tf.keras.Model):
    """Builds its layers in __init__ (explicit build calls with unknown batch and time)."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)
        self.embedding.build((None, None))
        self.gru.build((None, None, embedding_dim))
        self.dense.build((None, None, rnn_units))

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x


CORRECT.update({"course_student_style": CourseStudentStyle, "state_in_a_list": StateInAList,
                "logsumexp_in_call": LogsumexpInCall, "activation_layer": ActivationLayer,
                "explicit_defaults_and_branch_on_states": GruDropoutOffAtInference, "built_in_init": BuiltInInit})


class BuiltInInitTracedCall(BuiltInInit):
    """Layers built in __init__ (their variables exist before any trace), call under @tf.function."""

    @tf.function
    def call(self, inputs, states=None, return_state=False, training=False):
        return super().call(inputs, states=states, return_state=return_state, training=training)


class OneStepAtATime(Reference):
    """Runs the GRU one time step at a time in a Python loop, carrying the state, and stacks the outputs."""

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs)
        outputs = []
        for t in range(x.shape[1]):
            out, states = self.gru(x[:, t:t + 1, :], initial_state=states, training=training)
            outputs.append(out)
        x = self.dense(tf.concat(outputs, axis=1))
        return (x, states) if return_state else x


CORRECT.update({"built_in_init_traced_call": BuiltInInitTracedCall, "one_step_at_a_time": OneStepAtATime})


class ExplicitZeroState(Reference):
    """Starts from tf.zeros((batch, units)) when no state is given (what None means)."""

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs)
        if states is None:
            states = tf.zeros((tf.shape(x)[0], self.gru.units), dtype=x.dtype)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x)
        return (x, states) if return_state else x


class SoftmaxThenLog(tf.keras.Model):
    """Dense with a softmax, then tf.math.log in call: the same log probabilities."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation="softmax")

    def call(self, inputs, states=None, return_state=False, training=False):
        x, states = self.gru(self.embedding(inputs), initial_state=states, training=training)
        x = tf.math.log(self.dense(x))
        return (x, states) if return_state else x


CORRECT.update({"explicit_zero_state": ExplicitZeroState, "softmax_then_log": SoftmaxThenLog})


# --- correct: the activation by name, and the tutorial's GRU with Keras 3's get_initial_state
class LogSoftmaxByName(tf.keras.Model):
    """Dense(vocab_size, activation="log_softmax"): Keras' activation of that name."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation="log_softmax")

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x


class TutorialGRUWithKeras3InitialState(tf.keras.Model):
    """keras.layers, recurrent_initializer='glorot_uniform' (the tutorial's), keras.activations.log_softmax,
    and the tutorial's `if states is None` with Keras 3's get_initial_state(batch_size)."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = keras.layers.GRU(rnn_units, return_sequences=True, return_state=True,
                                    recurrent_initializer="glorot_uniform")
        self.dense = keras.layers.Dense(vocab_size, activation=keras.activations.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = inputs
        x = self.embedding(x, training=training)
        if states is None:
            states = self.gru.get_initial_state(tf.shape(x)[0])
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        if return_state:
            return x, states
        else:
            return x


CORRECT.update({"log_softmax_by_name": LogSoftmaxByName,
                "tutorial_gru_with_keras3_initial_state": TutorialGRUWithKeras3InitialState})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
class KerasOpsLogSoftmaxWithConfig(keras.Model):
    """`import keras` (keras.Model, keras.layers), the log-softmax with keras.ops in call, get_config written."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.embedding_dim, self.rnn_units = vocab_size, embedding_dim, rnn_units
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = keras.layers.Dense(vocab_size)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs)
        x, states = self.gru(x, initial_state=states, training=training)
        x = keras.ops.log_softmax(self.dense(x), axis=-1)
        return (x, states) if return_state else x

    def get_config(self):
        return {"vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim, "rnn_units": self.rnn_units}


class UnrolledGRU(tf.keras.Model):
    """GRU(unroll=True): the same GRU, unrolled over the (known) time steps."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True, unroll=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x, states = self.gru(self.embedding(inputs), initial_state=states, training=training)
        x = self.dense(x)
        return (x, states) if return_state else x


class TutorialStarUnpack(tf.keras.Model):
    """`x, *rest = self.gru(...)` then `states = rest[0]` (unpacking Keras 3's list of outputs); math.log_softmax."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.math.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs)
        x, *rest = self.gru(x, initial_state=states, training=training)
        x = self.dense(x)
        return (x, rest[0]) if return_state else x


CORRECT.update({"KerasOpsLogSoftmaxWithConfig": KerasOpsLogSoftmaxWithConfig, "UnrolledGRU": UnrolledGRU,
                "TutorialStarUnpack": TutorialStarUnpack})
