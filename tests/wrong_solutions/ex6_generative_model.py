"""GenerativeModel(model, vocab, temperature): generate_one_step and generate_n_chars."""
import numpy as np
import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.lm.solution import line_to_tensor, temperature_random_sampling, text_from_ids

TESTS = ("test_GenerativeModel",)
Reference = solution.GenerativeModel


class IgnoresStates(Reference):
    def generate_one_step(self, inputs, states=None):
        return super().generate_one_step(inputs, states=None)


class OneStepIgnoresStatesFeedsWholeText(Reference):
    """generate_one_step starts from zero whatever states it is given; generate_n_chars hides it by
    feeding the whole text so far at every step and keeping the last character (its text is right)."""
    def generate_one_step(self, inputs, states=None):
        return super().generate_one_step(inputs, states=None)

    def generate_n_chars(self, num_chars, prefix):
        text = prefix
        for _ in range(num_chars):
            next_char, _ = self.generate_one_step(tf.constant([text]), states=None)
            text += next_char.numpy().reshape(-1)[-1].decode("utf-8")
        return text


class KeepsItsOwnHistory(Reference):
    """generate_one_step never passes states to the model: it keeps the text of each prompt so far and
    runs all of it from zero at every call: its text and the states it returns are right, but states
    it did not return itself are ignored."""

    def generate_one_step(self, inputs, states=None):
        texts = [t.decode("utf-8") for t in tf.reshape(inputs, [-1]).numpy().tolist()]
        history = getattr(self, "history", None)
        if states is not None and history is not None and len(history) == len(texts):
            texts = [h + t for h, t in zip(history, texts)]
        self.history = texts
        return super().generate_one_step(tf.constant(texts), states=None)


class NoMask(Reference):
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.prediction_mask = tf.zeros(len(vocab))


class MasksOnlyUnknown(Reference):
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.prediction_mask = tf.constant([-np.inf] + [0.0] * (len(vocab) - 1))


class WithoutPrefix(Reference):
    def generate_n_chars(self, num_chars, prefix):
        return super().generate_n_chars(num_chars, prefix)[len(prefix):]


class OneShort(Reference):
    def generate_n_chars(self, num_chars, prefix):
        return super().generate_n_chars(num_chars - 1, prefix)


class OneTooMany(Reference):
    def generate_n_chars(self, num_chars, prefix):
        return super().generate_n_chars(num_chars + 1, prefix)


class RefeedsPrefix(Reference):
    """Feeds the prefix again at every step instead of the character just generated."""
    def generate_n_chars(self, num_chars, prefix):
        states, result = None, [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(tf.constant([prefix]), states=states)
            result.append(next_char)
        return tf.strings.join(result)[0].numpy().decode("utf-8")


class JoinsTheBatch(Reference):
    """Gives text_from_ids one row of all the batch's ids (as code written for one prompt at a time
    does): the whole batch comes back as one string."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids([ids], self.vocab), states


class FirstRowOnly(Reference):
    """Reads the first prompt's log probabilities only (code written for one prompt at a time, as it
    circulates for this assignment): a batch gets one character back."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[0, -1, :] + self.prediction_mask, self.temperature)
        return tf.expand_dims(text_from_ids([ids], self.vocab), 0), states


class FirstPositionLogProbs(Reference):
    """Takes the log probabilities of the first position instead of the last."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, 0, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class StartsFromLastPrefixChar(Reference):
    """Feeds only the prefix's last character to the first step (the rest of the prefix is never read)."""
    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = None, tf.constant([prefix[-1]]), [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char)
        return tf.strings.join(result)[0].numpy().decode("utf-8")


class AlwaysGreedy(Reference):
    """Ignores the temperature: always takes the most likely character."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature=0.0)


class IgnoresTemperature(Reference):
    """Samples, but always at temperature 1."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature=1.0)


class MultipliesTemperature(Reference):
    """Scales the log probabilities by the temperature instead of dividing them by it."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        last = (log_probs[:, -1, :] + self.prediction_mask) * self.temperature
        ids = temperature_random_sampling(last, 1.0)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class SamplesLettersWithoutTheModel(Reference):
    """Greedy text from the model, but above temperature 0 the prefix and random letters: generate_n_chars
    never asks the model what comes next."""

    def generate_n_chars(self, num_chars, prefix):
        if self.temperature == 0:
            return super().generate_n_chars(num_chars, prefix)
        letters = [c for c in self.vocab[2:] if c.isalpha()]
        return prefix + "".join(np.random.default_rng().choice(letters, size=num_chars))


class PositionalFlag(Reference):
    """Passes return_state by position, model(ids, states, True): Keras 3 refuses it (only tensors may
    be passed by position), so this generator fails on the course's GRULM and on the tests' models alike."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(input_ids, states, True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


# --- correct
class GraphModeStep(Reference):
    """generate_one_step compiled with tf.function, as the TensorFlow text-generation tutorial does."""
    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class CallsTheModelsCall(Reference):
    """Calls the model's `call` method, which every Keras model has, rather than the model itself."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model.call(input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class PythonStrings(tf.keras.Model):
    """Masks with tensor_scatter_nd_update, returns chars of shape (1,), joins Python strings."""

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.model, self.vocab, self.temperature = model, vocab, temperature

    def generate_one_step(self, inputs, states=None):
        ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(ids, states, return_state=True)
        last = log_probs[:, -1, :]
        rows = tf.shape(last)[0]
        index = tf.stack([tf.repeat(tf.range(rows), 2), tf.tile([0, 1], [rows])], axis=1)
        last = tf.tensor_scatter_nd_update(last, index, tf.fill([2 * rows], -1e9))
        next_ids = temperature_random_sampling(last, self.temperature)
        return tf.gather(tf.constant(self.vocab), next_ids), states

    def generate_n_chars(self, num_chars, prefix):
        text, states, step = prefix, None, tf.constant([prefix])
        for _ in range(num_chars):
            step, states = self.generate_one_step(step, states)
            text += step.numpy()[0].decode("utf-8")
        return text


WRONG = {cls.__name__: (cls, TESTS) for cls in (IgnoresStates, OneStepIgnoresStatesFeedsWholeText, KeepsItsOwnHistory,
                                                NoMask,
                                                MasksOnlyUnknown, WithoutPrefix, OneShort, OneTooMany, RefeedsPrefix,
                                                FirstPositionLogProbs, JoinsTheBatch, FirstRowOnly, StartsFromLastPrefixChar,
                                                AlwaysGreedy, IgnoresTemperature, MultipliesTemperature,
                                                PositionalFlag, SamplesLettersWithoutTheModel)}
CORRECT = {cls.__name__: cls for cls in (PythonStrings, GraphModeStep, CallsTheModelsCall)}


# --- correct (more styles)
class SamplesAmongRealCharacters(Reference):
    """Drops the '[UNK]' and padding columns (log_probs[:, -1, 2:]) and adds 2 to the sampled ids."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, 2:], self.temperature) + 2
        return text_from_ids(tf.expand_dims(ids, -1), self.vocab), states


class ArgmaxAtZeroWhereMask(Reference):
    """tf.argmax itself at temperature 0; the mask applied with tf.where before taking the last position."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True, training=False)
        forbidden = tf.math.is_inf(self.prediction_mask)
        log_probs = tf.where(forbidden, tf.constant(-np.inf, log_probs.dtype), log_probs)[:, -1, :]
        if self.temperature == 0:
            ids = tf.argmax(log_probs, axis=-1)
        else:
            ids = temperature_random_sampling(log_probs, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class CategoricalInsideTheStep(Reference):
    """Samples with tf.random.categorical(log_probs / T) inside generate_one_step (argmax at T = 0);
    passes the states by position (a tensor or None, which Keras allows)."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(input_ids, states, return_state=True)
        last = log_probs[:, -1, :] + self.prediction_mask
        if self.temperature > 0:
            ids = tf.random.categorical(last / self.temperature, 1)[:, 0]
        else:
            ids = tf.argmax(last, axis=-1)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class ReturnsAColumn(Reference):
    """Returns the characters as a column, shape (batch, 1) (w1_unittest accepts (1, 1)), and takes a
    column or a vector back."""
    def generate_one_step(self, inputs, states=None):
        inputs = tf.reshape(inputs, [-1])
        chars, states = super().generate_one_step(inputs, states=states)
        return tf.reshape(chars, [-1, 1]), states

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = None, tf.constant([prefix]), [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(tf.reshape(next_char, [-1]))
        return tf.strings.join(result)[0].numpy().decode("utf-8")


class NumpyIdsPythonText(Reference):
    """numpy after the model: argmax or Gumbel noise with numpy, characters from a numpy array of the
    vocabulary turned into a tf.string tensor; generate_n_chars keeps a Python list of characters."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        last = log_probs[:, -1, :].numpy() + self.prediction_mask.numpy()
        ids = temperature_random_sampling(tf.constant(last), self.temperature).numpy()
        chars = tf.constant(np.array(self.vocab, dtype=object)[ids].astype(str).tolist())
        return chars, states

    def generate_n_chars(self, num_chars, prefix):
        states, step, chars = None, tf.constant([prefix]), []
        for _ in range(num_chars):
            step, states = self.generate_one_step(step, states)
            chars.append(step.numpy()[0].decode("utf-8"))
        return prefix + "".join(chars)


class MaskOverTheWholeSequence(Reference):
    """Adds the mask to every position (it broadcasts over time), then keeps the last; returns a 0-d string
    tensor from generate_n_chars."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        last = (log_probs + self.prediction_mask)[:, -1]
        ids = temperature_random_sampling(last, self.temperature)
        return text_from_ids(tf.reshape(ids, [-1, 1]), self.vocab), states

    def generate_n_chars(self, num_chars, prefix):
        states = None
        next_char = tf.constant([prefix])
        result = [next_char]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char)
        return tf.strings.reduce_join(tf.concat(result, axis=0))


class PrefixOneCharacterAtATime(Reference):
    """Reads the prefix one character at a time (the model's state carried), then generates."""
    def generate_n_chars(self, num_chars, prefix):
        states = None
        for ch in prefix[:-1]:
            _, states = self.model(inputs=line_to_tensor([ch], self.vocab).to_tensor(), states=states,
                                   return_state=True)
        text, next_char = prefix, tf.constant([prefix[-1]])
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            text += next_char.numpy()[0].decode("utf-8")
        return text


CORRECT.update({cls.__name__: cls for cls in (SamplesAmongRealCharacters, ArgmaxAtZeroWhereMask,
                                              CategoricalInsideTheStep, ReturnsAColumn, NumpyIdsPythonText,
                                              MaskOverTheWholeSequence, PrefixOneCharacterAtATime)})


class TutorialOneStep(Reference):
    """The TensorFlow text-generation tutorial's OneStep, adapted: @tf.function, StringLookup layers for
    both directions (chars_from_ids on a vector of ids, no reduce_join), the logits divided by the
    temperature, then the mask, tf.random.categorical and a squeeze; argmax at temperature 0."""
    @tf.function
    def generate_one_step(self, inputs, states=None):
        ids_from_chars = tf.keras.layers.StringLookup(vocabulary=list(self.vocab), mask_token=None)
        chars_from_ids = tf.keras.layers.StringLookup(vocabulary=list(self.vocab), mask_token=None, invert=True)
        input_chars = tf.strings.unicode_split(inputs, "UTF-8")
        input_ids = ids_from_chars(input_chars).to_tensor()
        predicted_logits, states = self.model(inputs=input_ids, states=states, return_state=True)
        predicted_logits = predicted_logits[:, -1, :]
        if self.temperature == 0:
            predicted_ids = tf.argmax(predicted_logits + self.prediction_mask, axis=-1)
        else:
            predicted_logits = predicted_logits / self.temperature
            predicted_logits = predicted_logits + self.prediction_mask
            predicted_ids = tf.random.categorical(predicted_logits, num_samples=1)
            predicted_ids = tf.squeeze(predicted_ids, axis=-1)
        predicted_chars = chars_from_ids(predicted_ids)
        return predicted_chars, states


class StatesAsAListToTheModel(Reference):
    """Hands the model its states as a list of one tensor (Keras' form of an RNN's states); keeps
    every state in a list in generate_n_chars."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, new_states = self.model(inputs=input_ids, states=None if states is None else [states],
                                           return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), new_states

    def generate_n_chars(self, num_chars, prefix):
        history, next_char, result = [None], tf.constant([prefix]), [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, state = self.generate_one_step(next_char, states=history[-1])
            history.append(state)
            result.append(next_char)
        return tf.strings.join(result)[0].numpy().decode("utf-8")


CORRECT.update({cls.__name__: cls for cls in (TutorialOneStep, StatesAsAListToTheModel)})


# --- correct: generators that read the sizes of the model's layers (embedding, gru, dense), as a GRULM
# has them. Every model the tests and the grader hand to GenerativeModel has those layers' sizes.
class ZerosFromTheGRUsUnits(Reference):
    """Starts from zero states it builds itself, (batch, model.gru.units), rather than states=None."""
    def generate_one_step(self, inputs, states=None):
        if states is None:
            states = tf.zeros((tf.shape(inputs)[0], self.model.gru.units))
        return super().generate_one_step(inputs, states=states)


class TheGRUsInitialState(Reference):
    """Starts from model.gru.get_initial_state(batch_size) (Keras 3: a list of one zero tensor), handed to
    the model as it comes; generate_n_chars starts from it too, for one prompt."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states = self.model.gru.get_initial_state(tf.shape(input_ids)[0])
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = self.model.gru.get_initial_state(batch_size=1), tf.constant([prefix]), []
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char.numpy()[0].decode("utf-8"))
        return prefix + "".join(result)


class GraphModeInitialStateTaken(Reference):
    """Inside tf.function: the first state of model.gru.get_initial_state(batch), a (batch, units) tensor."""
    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states = self.model.gru.get_initial_state(tf.shape(input_ids)[0])[0]
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class MaskSizedByTheDenseLayer(Reference):
    """Builds its mask to the size of the model's output, model.dense.units, rather than len(vocab)."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.prediction_mask = tf.concat([tf.fill([2], -np.inf), tf.zeros([model.dense.units - 2])], axis=0)


class ForbiddenIdsOverTheEmbeddingsInputs(Reference):
    """Finds '[UNK]' and padding with one_hot over model.embedding.input_dim ids (the vocabulary size),
    states of zeros as a list of one tensor of model.gru.units."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states = [tf.zeros([tf.shape(input_ids)[0], self.model.gru.units], tf.float32)]
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        forbidden = tf.reduce_sum(tf.one_hot([0, 1], self.model.embedding.input_dim), axis=0) > 0
        last = tf.where(forbidden, -np.inf, log_probs[:, -1, :])
        ids = temperature_random_sampling(last, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


CORRECT.update({cls.__name__: cls for cls in (ZerosFromTheGRUsUnits, TheGRUsInitialState, GraphModeInitialStateTaken,
                                              MaskSizedByTheDenseLayer, ForbiddenIdsOverTheEmbeddingsInputs)})


# --- correct: more styles (the tutorial's OneStep as written, sizes read from the model's layers)
class TutorialLayersMadeInInit(tf.keras.Model):
    """The TensorFlow tutorial's OneStep as it stands: StringLookup layers made in __init__, the mask a
    SparseTensor made dense to the lookup's vocabulary size, @tf.function, tf.random.categorical of the logits
    divided by the temperature; with a branch for temperature 0, and the tutorial's loop in generate_n_chars."""

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.temperature = temperature
        self.model = model
        self.vocab = vocab
        self.ids_from_chars = tf.keras.layers.StringLookup(vocabulary=list(vocab), mask_token=None)
        self.chars_from_ids = tf.keras.layers.StringLookup(vocabulary=list(vocab), invert=True, mask_token=None)
        skip_ids = self.ids_from_chars(["[UNK]", ""])[:, None]
        sparse_mask = tf.SparseTensor(values=[-float("inf")] * 2, indices=skip_ids,
                                      dense_shape=[len(self.ids_from_chars.get_vocabulary())])
        self.prediction_mask = tf.sparse.to_dense(tf.sparse.reorder(sparse_mask))

    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_chars = tf.strings.unicode_split(inputs, "UTF-8")
        input_ids = self.ids_from_chars(input_chars).to_tensor()
        predicted_logits, states = self.model(inputs=input_ids, states=states, return_state=True)
        predicted_logits = predicted_logits[:, -1, :]
        predicted_logits = predicted_logits + self.prediction_mask
        if self.temperature == 0:
            predicted_ids = tf.argmax(predicted_logits, axis=-1)
        else:
            predicted_ids = tf.random.categorical(predicted_logits / self.temperature, num_samples=1)
            predicted_ids = tf.squeeze(predicted_ids, axis=-1)
        predicted_chars = self.chars_from_ids(predicted_ids)
        return predicted_chars, states

    def generate_n_chars(self, num_chars, prefix):
        states = None
        next_char = tf.constant([prefix])
        result = [next_char]
        for n in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char)
        result = tf.strings.join(result)
        return result[0].numpy().decode("utf-8")


class SizesReadInInitZerosInGraph(Reference):
    """model.gru.units and model.embedding.input_dim read in __init__; inside tf.function, zero states of
    (inputs.shape[0], units) and the mask built there from the vocabulary size."""

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.units = model.gru.units
        self.vocab_size = model.embedding.input_dim

    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states = tf.zeros([inputs.shape[0], self.units])
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True)
        mask = tf.concat([[-np.inf, -np.inf], tf.zeros(self.vocab_size - 2)], axis=0)
        ids = temperature_random_sampling(log_probs[:, -1, :] + mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class GraphStepReducedRetracing(Reference):
    """tf.function(reduce_retracing=True) around the reference step."""
    @tf.function(reduce_retracing=True)
    def generate_one_step(self, inputs, states=None):
        return super().generate_one_step(inputs, states=states)


class GraphStepInitialStateByKeyword(Reference):
    """Inside tf.function: `states, = model.gru.get_initial_state(batch_size=...)` (the list unpacked)."""
    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states, = self.model.gru.get_initial_state(batch_size=tf.shape(input_ids)[0])
        log_probs, states = self.model(inputs=input_ids, states=states, return_state=True, training=False)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class NumpyMaskFromTheDenseUnits(Reference):
    """A numpy mask of model.dense.units entries, '[UNK]' and '' found with vocab.index; generate_n_chars
    keeps every state in a list and builds a Python string."""

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        mask = np.zeros(model.dense.units, dtype=np.float32)
        mask[[vocab.index("[UNK]"), vocab.index("")]] = -np.inf
        self.prediction_mask = mask

    def generate_n_chars(self, num_chars, prefix):
        all_states, next_char, out = [None], tf.constant([prefix]), prefix
        for _ in range(num_chars):
            next_char, s = self.generate_one_step(next_char, states=all_states[-1])
            all_states.append(s)
            out += next_char.numpy()[0].decode()
        return out


CORRECT.update({cls.__name__: cls for cls in (TutorialLayersMadeInInit, SizesReadInInitZerosInGraph,
                                              GraphStepReducedRetracing, GraphStepInitialStateByKeyword,
                                              NumpyMaskFromTheDenseUnits)})


# --- correct: generators that run the model's layers themselves (embedding, then gru, then dense), as
# the course's GRULM.call does. Every model the tests and the grader hand to GenerativeModel has layers
# that compute, one after the other, what calling the model computes.
class RunsTheLayersByHand(Reference):
    """GRULM.call's three lines in generate_one_step, each layer given training=False."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        x = self.model.embedding(input_ids, training=False)
        x, states = self.model.gru(x, initial_state=states, training=False)
        log_probs = self.model.dense(x, training=False)
        ids = temperature_random_sampling(log_probs[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class LayersByHandInGraphLastStepDense(Reference):
    """Inside tf.function: the states given to the GRU by position, and the dense layer applied to the
    last step only, a (batch, units) tensor."""
    @tf.function
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        sequence, states = self.model.gru(self.model.embedding(input_ids), states)
        log_probs = self.model.dense(sequence[:, -1, :])
        ids = temperature_random_sampling(log_probs + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class LayersFromTheModelsList(Reference):
    """The layers taken from model.layers in __init__, run in turn, from model.gru.get_initial_state."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.steps = list(model.layers)

    def generate_one_step(self, inputs, states=None):
        embedding, gru, dense = self.steps
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        if states is None:
            states = gru.get_initial_state(tf.shape(input_ids)[0])
        x, states = gru(embedding(input_ids), initial_state=states)
        ids = temperature_random_sampling(dense(x)[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class ZerosOfTheCellsUnits(Reference):
    """Starts generate_one_step from zeros of (batch, model.gru.cell.units), and generate_n_chars from
    zeros of (1, *model.gru.state_size)."""
    def generate_one_step(self, inputs, states=None):
        if states is None:
            states = tf.zeros((tf.shape(inputs)[0], self.model.gru.cell.units))
        return super().generate_one_step(inputs, states=states)

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = tf.zeros([1, *self.model.gru.state_size]), tf.constant([prefix]), [prefix]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char.numpy()[0].decode("utf-8"))
        return "".join(result)


CORRECT.update({cls.__name__: cls for cls in (RunsTheLayersByHand, LayersByHandInGraphLastStepDense,
                                              LayersFromTheModelsList, ZerosOfTheCellsUnits)})


# --- what generate_one_step returns: a string tensor of one character per prompt, (batch,) or (batch, 1)
class SqueezedChars(Reference):
    """tf.squeeze on the characters: a 0-d string for one prompt, not one per prompt."""
    def generate_one_step(self, inputs, states=None):
        chars, states = super().generate_one_step(tf.reshape(inputs, [-1]), states=states)
        return tf.squeeze(chars), states


class NumpyChars(Reference):
    """The characters as a numpy array of bytes rather than a string tensor."""
    def generate_one_step(self, inputs, states=None):
        chars, states = super().generate_one_step(inputs, states=states)
        return chars.numpy(), states


WRONG.update({cls.__name__: (cls, TESTS) for cls in (SqueezedChars, NumpyChars)})


class CharsAsAColumn(Reference):
    """generate_one_step returns a (batch, 1) column of characters; generate_n_chars flattens each before
    feeding it back."""
    def generate_one_step(self, inputs, states=None):
        chars, states = super().generate_one_step(inputs, states=states)
        return chars[:, tf.newaxis], states

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, text = None, tf.constant([prefix]), prefix
        for _ in range(num_chars):
            column, states = self.generate_one_step(next_char, states=states)
            next_char = tf.reshape(column, [-1])
            text += next_char.numpy()[0].decode("utf-8")
        return text


CORRECT.update({"CharsAsAColumn": CharsAsAColumn})


class TextInANumpyArray(Reference):
    """generate_n_chars returns its text inside a numpy array of one element, not as a string."""
    def generate_n_chars(self, num_chars, prefix):
        return np.array([super().generate_n_chars(num_chars, prefix)])


class TextAsAStringTensor(Reference):
    """generate_n_chars returns its text as a string tensor of one element (read as its string)."""
    def generate_n_chars(self, num_chars, prefix):
        return tf.constant([super().generate_n_chars(num_chars, prefix)])


WRONG.update({"TextInANumpyArray": (TextInANumpyArray, TESTS)})
CORRECT.update({"TextAsAStringTensor": TextAsAStringTensor})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
class TensorArrayOfChars(Reference):
    """generate_n_chars writes the characters into a tf.TensorArray and joins them with tf.strings.reduce_join."""
    def generate_n_chars(self, num_chars, prefix):
        states, next_char = None, tf.constant([prefix])
        out = tf.TensorArray(tf.string, size=num_chars)
        for k in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            out = out.write(k, next_char[0])
        return prefix + tf.strings.reduce_join(out.stack()).numpy().decode("utf-8")


class InputSignatureOnInputs(Reference):
    """generate_one_step as a tf.function with an input_signature (a vector of strings, and states of
    any batch and width); generate_n_chars starts it from zeros of the GRU's width."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        units = model.gru.units
        self._step = tf.function(self._one_step, input_signature=[tf.TensorSpec([None], tf.string),
                                                                   tf.TensorSpec([None, units], tf.float32)])

    def _one_step(self, inputs, states):
        return super().generate_one_step(inputs, states=states)

    def generate_one_step(self, inputs, states=None):
        inputs = tf.reshape(inputs, [-1])
        if states is None:
            states = tf.zeros([tf.shape(inputs)[0], self.model.gru.units])
        return self._step(inputs, tf.convert_to_tensor(states, tf.float32))


class StepAsKerasCall(Reference):
    """The step written as the Keras model's call; generate_one_step and generate_n_chars go through self(...)."""
    def call(self, inputs, states=None):
        return Reference.generate_one_step(self, inputs, states=states)

    def generate_one_step(self, inputs, states=None):
        return self(inputs, states=states)

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = None, tf.constant([prefix]), [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, states = self(next_char, states=states)
            result.append(next_char)
        return tf.strings.join(result)[0].numpy().decode("utf-8")


CORRECT.update({"TensorArrayOfChars": TensorArrayOfChars, "InputSignatureOnInputs": InputSignatureOnInputs,
                "StepAsKerasCall": StepAsKerasCall})


class ModelInATfFunction(Reference):
    """The model called through tf.function(model), made once in __init__, as the notebook's evaluation
    cell calls it: Keras' __call__ takes (*args, **kwargs), so tf.function keeps the keywords."""
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__(model, vocab, temperature)
        self.fast_model = tf.function(model)

    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        predicted_logits, states = self.fast_model(input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(predicted_logits[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


class ModelInATfFunctionAllByKeyword(Reference):
    """tf.function(self.model) called with every argument by keyword."""
    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab).to_tensor()
        predicted_logits, states = tf.function(self.model)(inputs=input_ids, states=states, return_state=True)
        ids = temperature_random_sampling(predicted_logits[:, -1, :] + self.prediction_mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states


CORRECT.update({cls.__name__: cls for cls in (ModelInATfFunction, ModelInATfFunctionAllByKeyword)})
