"""The character model in backend-neutral Keras 3: the course's GRULM, or the same model with an LSTM.

It needs only Keras and numpy, so it runs where the GPU machines have JAX or PyTorch and no
TensorFlow (deepngrams.lm.train_keras trains it there), and Keras stores its variables by
attribute path (embedding, gru, dense), so the GRU model's weights load into the notebook's GRULM.
"""
from __future__ import annotations

import keras
import numpy as np

from deepngrams.config import HParams

# The recurrent layers a character model can have, and the model's name in its card and files.
CELLS = {"gru": "GRULM", "lstm": "LSTMLM"}


@keras.saving.register_keras_serializable(package="deepngrams")
class KerasCharLM(keras.Model):
    """The course's GRULM, written with backend-neutral Keras (same layers, same attribute names),
    or the same model with an LSTM (`cell="lstm"`, its layer then named `lstm`).

    `batch_size` builds the training twin: a stateful recurrent layer (each batch continues the
    streams of the one before) and dropout on its outputs. Neither adds weights.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, rnn_units: int, dropout: float = 0.0,
                 batch_size: int | None = None, seed: int | None = None, cell: str = "gru", **keras_kwargs):
        super().__init__(**keras_kwargs)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.sizes = {"vocab_size": int(vocab_size), "embedding_dim": int(embedding_dim),
                      "rnn_units": int(rnn_units), "cell": cell}
        self.cell_kind = cell
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim)
        layer = keras.layers.GRU if cell == "gru" else keras.layers.LSTM
        # The attribute's name is the weights' path in the file: `gru` loads into the notebook's GRULM.
        setattr(self, cell, layer(rnn_units, return_sequences=True, return_state=True, stateful=batch_size is not None))
        self.dense = keras.layers.Dense(vocab_size, activation="log_softmax")
        self.dropout = keras.layers.Dropout(dropout, seed=seed) if dropout else None

    @property
    def rnn(self):  # a property, not an attribute: the layer is tracked (and saved) under its own name only
        return getattr(self, self.cell_kind)

    def call(self, inputs, training=False):
        x = self.rnn(self.embedding(inputs), training=training)[0]
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return self.dense(x)

    def get_config(self) -> dict:  # the shipped model's (what .keras files keep)
        return dict(self.sizes)


def build(vocab_size: int, hp: HParams, training: bool = False, cell: str = "gru") -> KerasCharLM:
    """The model as shipped, or (`training`) its stateful twin with dropout."""
    if not training:
        model = KerasCharLM(vocab_size, hp.embedding_dim, hp.rnn_units, cell=cell)
        model(np.zeros((1, 1), dtype="int64"))
        return model
    model = KerasCharLM(vocab_size, hp.embedding_dim, hp.rnn_units, hp.output_dropout, hp.batch_size, hp.seed, cell)
    model(np.zeros((hp.batch_size, hp.seq_length), dtype="int64"))
    model.rnn.reset_state()
    return model


def layer_weights(model: KerasCharLM) -> list[np.ndarray]:
    """Layer by layer: the training twin also holds dropout's random state, which is not a weight."""
    return [w for name in ("embedding", model.cell_kind, "dense") for w in getattr(model, name).get_weights()]


def set_layer_weights(model: KerasCharLM, weights: list[np.ndarray]) -> None:
    """The inverse of layer_weights."""
    weights = list(weights)
    for name in ("embedding", model.cell_kind, "dense"):
        layer = getattr(model, name)
        n = len(layer.weights)
        layer.set_weights(weights[:n])
        weights = weights[n:]
