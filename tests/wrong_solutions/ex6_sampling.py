"""temperature_random_sampling(log_probs, temperature)."""
import keras
import numpy as np
import tensorflow as tf

TESTS = ("test_temperature_random_sampling",)


def _gumbel(log_probs):
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return -tf.math.log(-tf.math.log(u))


def multiplies_log_probs(log_probs, temperature):
    return tf.math.argmax(log_probs * temperature + _gumbel(log_probs), axis=-1)


def divides_noise(log_probs, temperature):
    return tf.math.argmax(log_probs + _gumbel(log_probs) / temperature, axis=-1)


def argmin(log_probs, temperature):
    return tf.math.argmin(log_probs + _gumbel(log_probs) * temperature, axis=-1)


def uniform_noise(log_probs, temperature):
    return tf.math.argmax(log_probs + tf.random.uniform(tf.shape(log_probs)) * temperature, axis=-1)


def missing_minus(log_probs, temperature):
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return tf.math.argmax(log_probs + tf.math.log(-tf.math.log(u)) * temperature, axis=-1)


def float_ids(log_probs, temperature):
    return tf.cast(tf.math.argmax(log_probs + _gumbel(log_probs) * temperature, axis=-1), tf.float32)


def keeps_last_axis(log_probs, temperature):
    return tf.math.argmax(log_probs + _gumbel(log_probs) * temperature, axis=-1)[:, tf.newaxis]


def argmax_over_batch(log_probs, temperature):
    return tf.math.argmax(log_probs + _gumbel(log_probs) * temperature, axis=0)


def _gumbel_argmax(log_probs, temperature, u):
    return tf.math.argmax(log_probs - temperature * tf.math.log(-tf.math.log(u)), axis=-1)


def keras_integer_seed(log_probs, temperature):
    """An integer seed makes keras.random repeat the same numbers at every call."""
    u = keras.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6, seed=42)
    return _gumbel_argmax(log_probs, temperature, u)


def generator_seeded_at_every_call(log_probs, temperature):
    u = tf.random.Generator.from_seed(0).uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return _gumbel_argmax(log_probs, temperature, u)


def stateless_uniform(log_probs, temperature):
    u = tf.random.stateless_uniform(tf.shape(log_probs), seed=[1, 2], minval=1e-6, maxval=1.0 - 1e-6)
    return _gumbel_argmax(log_probs, temperature, u)


def quantiles_not_samples(log_probs, temperature):
    """No randomness: row i takes the id where its cumulative distribution passes (i + 0.5) / rows.
    Over many rows that each hold the distribution in an order of their own, the frequencies come
    out right; a second call gives the same ids."""
    log_probs = np.asarray(log_probs, np.float64)
    if temperature == 0:
        return np.argmax(log_probs, axis=-1)
    p = np.exp(log_probs / temperature - (log_probs / temperature).max(axis=-1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    q = (np.arange(len(p)) + 0.5) / len(p)
    return np.minimum((cdf < q[:, None]).sum(axis=-1), p.shape[-1] - 1)


def greedy_unless_identical_rows(log_probs, temperature):
    """Samples only when it is given a thousand copies of one row (the shape of a frequency test)."""
    rows = np.asarray(log_probs)
    if len(rows) >= 1000 and (rows == rows[0]).all():
        return _gumbel_argmax(log_probs, temperature, tf.random.uniform(tf.shape(log_probs), 1e-6, 1.0 - 1e-6))
    return tf.math.argmax(log_probs, axis=-1)


# --- correct
def unclipped_uniform(log_probs, temperature):
    u = tf.random.uniform(tf.shape(log_probs))
    return tf.math.argmax(log_probs + temperature * -tf.math.log(-tf.math.log(u)), axis=-1)


def categorical(log_probs, temperature):
    """Another sampler with the same distribution: accepted, the tests check the distribution."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    return tf.random.categorical(log_probs / temperature, 1)[:, 0]


_SEEDS = keras.random.SeedGenerator(7)


def keras_seed_generator(log_probs, temperature):
    """A SeedGenerator moves on at every call: reproducible, and fresh numbers each time."""
    u = keras.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6, seed=_SEEDS)
    return _gumbel_argmax(log_probs, temperature, u)


def op_level_seed(log_probs, temperature):
    """tf.random.uniform's own seed does not repeat its numbers from one call to the next."""
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6, seed=7)
    return _gumbel_argmax(log_probs, temperature, u)


@tf.function
def traced_gumbel(log_probs, temperature):
    """Traced once per temperature: its random op keeps its state from one call to the next."""
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return tf.math.argmax(log_probs - temperature * tf.math.log(-tf.math.log(u)), axis=-1)


def numpy_gumbel(log_probs, temperature):
    log_probs = np.asarray(log_probs)
    u = np.random.default_rng().uniform(1e-6, 1 - 1e-6, size=log_probs.shape)
    return np.argmax(log_probs - temperature * np.log(-np.log(u)), axis=-1)


WRONG = {f.__name__: (f, TESTS) for f in (multiplies_log_probs, divides_noise, argmin, uniform_noise, missing_minus,
                                          float_ids, keeps_last_axis, argmax_over_batch, keras_integer_seed,
                                          generator_seeded_at_every_call, stateless_uniform, quantiles_not_samples,
                                          greedy_unless_identical_rows)}
CORRECT = {f.__name__: f for f in (unclipped_uniform, categorical, numpy_gumbel, keras_seed_generator, op_level_seed,
                                   traced_gumbel)}


# --- correct (more styles)
def course_student_static_shape(log_probs, temperature=1.0):
    """As the course's students write it: shape=log_probs.shape, a default temperature."""
    u = tf.random.uniform(minval=1e-6, maxval=1.0 - 1e-6, shape=log_probs.shape)
    g = -tf.math.log(-tf.math.log(u))
    return tf.math.argmax(log_probs + g * temperature, axis=-1)


def divides_log_probs_by_temperature(log_probs, temperature):
    """argmax(log_probs / T + g): the same argmax as argmax(log_probs + T g) for T > 0."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return tf.math.argmax(log_probs / temperature - tf.math.log(-tf.math.log(u)), axis=-1)


def numpy_global_gumbel(log_probs, temperature):
    """numpy's global generator and its own Gumbel draws."""
    log_probs = np.asarray(log_probs)
    return np.argmax(log_probs + temperature * np.random.gumbel(size=log_probs.shape), axis=-1)


def inverse_cdf(log_probs, temperature):
    """softmax(log_probs / T), its cumulative sum, and searchsorted of one uniform number per row."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    p = tf.nn.softmax(tf.cast(log_probs, tf.float64) / temperature, axis=-1)
    cdf = tf.math.cumsum(p, axis=-1)
    u = tf.random.uniform(tf.shape(cdf)[:-1], dtype=tf.float64)[:, None] * cdf[:, -1:]
    ids = tf.searchsorted(cdf, u, side="right")[:, 0]
    return tf.cast(tf.minimum(ids, tf.shape(cdf, out_type=tf.int32)[-1] - 1), tf.int64)


def stateless_with_fresh_seeds(log_probs, temperature):
    """stateless_categorical, with a new seed drawn at every call from the global generator."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.random.stateless_categorical(log_probs / temperature, 1, seed=seed)[:, 0]


_GENERATOR = tf.random.Generator.from_non_deterministic_state()


def generator_exponential_race(log_probs, temperature):
    """The exponential race: argmax(log p / T - log E), E ~ Exp(1), from a tf.random.Generator kept across calls."""
    if temperature <= 0.0:
        return tf.math.argmax(log_probs, axis=-1)
    e = -tf.math.log(_GENERATOR.uniform(tf.shape(log_probs), minval=1e-12, maxval=1.0))
    return tf.math.argmax(log_probs / temperature - tf.math.log(e), axis=-1)


def int32_ids_float64_noise(log_probs, temperature):
    """float64 noise; int32 ids (argmax output_type)."""
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6, dtype=tf.float64)
    noisy = tf.cast(log_probs, tf.float64) + temperature * -tf.math.log(-tf.math.log(u))
    return tf.math.argmax(noisy, axis=-1, output_type=tf.int32)


def keras_random_categorical(log_probs, temperature):
    """keras.random.categorical with no seed (Keras' global seed generator moves on at every call)."""
    if temperature == 0:
        return keras.ops.argmax(log_probs, axis=-1)
    return keras.random.categorical(log_probs / temperature, 1)[:, 0]


CORRECT.update({f.__name__: f for f in (course_student_static_shape, divides_log_probs_by_temperature,
                                        numpy_global_gumbel, inverse_cdf, stateless_with_fresh_seeds,
                                        generator_exponential_race, int32_ids_float64_noise, keras_random_categorical)})


def clamped_temperature(log_probs, temperature):
    """No branch for 0: the temperature is clamped to 1e-9 and the log probabilities divided by it."""
    t = max(float(temperature), 1e-9)
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return tf.math.argmax(log_probs / t - tf.math.log(-tf.math.log(u)), axis=-1)


CORRECT["clamped_temperature"] = clamped_temperature


def keras_uniform_no_seed(log_probs, temperature):
    """keras.random.uniform with no seed (Keras' global seed generator) and keras.ops.argmax (int32)."""
    u = keras.random.uniform(keras.ops.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return keras.ops.argmax(log_probs - temperature * keras.ops.log(-keras.ops.log(u)), axis=-1)


CORRECT["keras_uniform_no_seed"] = keras_uniform_no_seed


# --- correct: Keras' random numbers without a seed, numpy's Gumbel
def keras_random_uniform_without_a_seed(log_probs, temperature):
    """keras.random.uniform with no seed draws from Keras' global generator: new numbers at every call."""
    u = keras.random.uniform(keras.ops.shape(log_probs), minval=1e-6, maxval=1 - 1e-6)
    return keras.ops.argmax(log_probs + temperature * -keras.ops.log(-keras.ops.log(u)), axis=-1)


def numpy_generator_gumbel(log_probs, temperature):
    """Gumbel noise from a fresh numpy Generator, argmax with tf."""
    g = np.random.default_rng().gumbel(size=np.shape(log_probs))
    return tf.math.argmax(tf.convert_to_tensor(log_probs) + temperature * tf.constant(g, dtype=tf.float32), axis=-1)


CORRECT.update({f.__name__: f for f in (keras_random_uniform_without_a_seed, numpy_generator_gumbel)})


# --- correct: more styles (NumPy and Keras namespaces, other ways to the same values)
def gamma_exponential_gumbel(log_probs, temperature):
    """Gumbel noise as -log(E), E ~ Exp(1) drawn with tf.random.gamma(alpha=1)."""
    e = tf.random.gamma(tf.shape(log_probs), alpha=1.0)
    return tf.math.argmax(log_probs + temperature * -tf.math.log(e), axis=-1)


def numpy_inverse_cdf(log_probs, temperature):
    """numpy: the cumulative distribution of softmax(log_probs / T) and one uniform number per row."""
    log_probs = np.asarray(log_probs, np.float64)
    if temperature == 0:
        return log_probs.argmax(axis=-1)
    z = log_probs / temperature
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    u = np.random.random_sample((len(cdf), 1))
    return np.minimum((cdf <= u).sum(axis=-1), cdf.shape[-1] - 1)


def top_k_indices(log_probs, temperature):
    """The largest noisy log probability with tf.math.top_k(k=1): int32 ids."""
    u = tf.random.uniform(tf.shape(log_probs), minval=1e-6, maxval=1.0 - 1e-6)
    return tf.math.top_k(log_probs - temperature * tf.math.log(-tf.math.log(u)), k=1).indices[:, 0]


CORRECT.update({"gamma_exponential_gumbel": gamma_exponential_gumbel, "numpy_inverse_cdf": numpy_inverse_cdf,
                "top_k_indices": top_k_indices})
