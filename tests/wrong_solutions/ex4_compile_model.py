"""compile_model(model)."""
import keras
import tensorflow as tf

TESTS = ("test_compile_model",)


def _make(loss=None, optimizer=None, returns=True):
    def compile_model(model):
        model.compile(optimizer=optimizer() if optimizer else tf.keras.optimizers.Adam(learning_rate=0.00125),
                      loss=loss() if loss else tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model if returns else None
    return compile_model


# --- correct
def positional_arguments(model):
    model.compile(tf.keras.optimizers.Adam(1.25e-3), tf.keras.losses.SparseCategoricalCrossentropy(True))
    return model


def keras_namespace_with_metrics(model):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adam(learning_rate=0.00125), metrics=["accuracy"])
    return model


WRONG = {name: (f, TESTS) for name, f in {
    "from_logits_false": _make(loss=lambda: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False)),
    "loss_by_name": _make(loss=lambda: "sparse_categorical_crossentropy"),
    "categorical_crossentropy": _make(loss=lambda: tf.keras.losses.CategoricalCrossentropy(from_logits=True)),
    "learning_rate_0_001": _make(optimizer=lambda: tf.keras.optimizers.Adam(learning_rate=0.001)),
    "adam_defaults": _make(optimizer=lambda: "adam"),
    "sgd": _make(optimizer=lambda: tf.keras.optimizers.SGD(learning_rate=0.00125)),
    "rmsprop": _make(optimizer=lambda: tf.keras.optimizers.RMSprop(learning_rate=0.00125)),
    "learning_rate_schedule": _make(optimizer=lambda: tf.keras.optimizers.Adam(
        tf.keras.optimizers.schedules.ExponentialDecay(0.00125, decay_steps=1, decay_rate=1e-9))),
    "returns_none": _make(returns=False),
}.items()}
CORRECT = {f.__name__: f for f in (positional_arguments, keras_namespace_with_metrics)}
