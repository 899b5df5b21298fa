"""temperature_random_sampling(log_probs, temperature)."""
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


# --- correct
def unclipped_uniform(log_probs, temperature):
    u = tf.random.uniform(tf.shape(log_probs))
    return tf.math.argmax(log_probs + temperature * -tf.math.log(-tf.math.log(u)), axis=-1)


def categorical(log_probs, temperature):
    """Another sampler with the same distribution: accepted, the tests check the distribution."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    return tf.random.categorical(log_probs / temperature, 1)[:, 0]


def numpy_gumbel(log_probs, temperature):
    log_probs = np.asarray(log_probs)
    u = np.random.default_rng().uniform(1e-6, 1 - 1e-6, size=log_probs.shape)
    return np.argmax(log_probs - temperature * np.log(-np.log(u)), axis=-1)


WRONG = {f.__name__: (f, TESTS) for f in (multiplies_log_probs, divides_noise, argmin, uniform_noise, missing_minus,
                                          float_ids, keeps_last_axis, argmax_over_batch)}
CORRECT = {f.__name__: f for f in (unclipped_uniform, categorical, numpy_gumbel)}
