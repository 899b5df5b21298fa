"""The pretrained weights: loadable by code written from the brief, clear errors otherwise."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from deepngrams.config import CARD_PATH, CORPUS_PATH, WEIGHTS_PATH
from deepngrams.lm.data import build_vocab, load_lines
from deepngrams.lm.run_record import sha256_file
from deepngrams.lm.weights import WeightsError, load_pretrained


class BriefGRULM(tf.keras.Model):
    """A GRULM written independently from the brief: only the attribute names are shared."""

    def __init__(self, vocab_size, embedding_dim, rnn_units):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(input_dim=vocab_size, output_dim=embedding_dim)
        self.gru = tf.keras.layers.GRU(units=rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(units=vocab_size, activation="log_softmax")

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs)
        if states is None:
            states = self.gru.get_initial_state(batch_size=tf.shape(x)[0])
        x, states = self.gru(x, initial_state=states)
        x = self.dense(x)
        return (x, states) if return_state else x


def test_model_card_matches_corpus_and_weights():
    card = json.loads(CARD_PATH.read_text())
    lines = load_lines()
    assert card["vocab"] == build_vocab(lines)
    assert card["corpus"]["sha256"] == sha256_file(CORPUS_PATH)
    assert card["weights_sha256"] == sha256_file(WEIGHTS_PATH)
    assert len(card["history"]) == card["epochs"] and card["epochs"] >= 1
    for key in ("hardware", "wall_time_s", "device"):
        assert card["training"][key]


def test_weights_load_into_a_grulm_written_from_the_brief():
    model, vocab, card = load_pretrained()
    tf.keras.layers.Embedding(3, 3)  # layer names shift; loading must not depend on them
    other = BriefGRULM(len(vocab), card["hparams"]["embedding_dim"], card["hparams"]["rnn_units"])
    other(tf.zeros((1, 1), tf.int64))
    other.load_weights(WEIGHTS_PATH)
    ids = tf.constant([[5, 9, 30, 41, 2, 60]])
    np.testing.assert_allclose(other(ids), model(ids), atol=1e-5)


@pytest.fixture
def model_dir(tmp_path):
    shutil.copy(WEIGHTS_PATH, tmp_path / WEIGHTS_PATH.name)
    shutil.copy(CARD_PATH, tmp_path / CARD_PATH.name)
    return tmp_path


def test_missing_weights_name_the_file_and_the_fix(model_dir):
    (model_dir / WEIGHTS_PATH.name).unlink()
    with pytest.raises(WeightsError, match=r"weights not found: .*grulm\.weights\.h5.*make weights"):
        load_pretrained(model_dir / WEIGHTS_PATH.name, model_dir / CARD_PATH.name)


def test_corrupt_weights_name_the_file_and_the_fix(model_dir):
    (model_dir / WEIGHTS_PATH.name).write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(WeightsError, match=r"cannot load .*grulm\.weights\.h5.*make weights"):
        load_pretrained(model_dir / WEIGHTS_PATH.name, model_dir / CARD_PATH.name)


def test_weights_of_another_shape_are_refused(model_dir):
    card = json.loads((model_dir / CARD_PATH.name).read_text())
    card["hparams"]["rnn_units"] = 64
    (model_dir / CARD_PATH.name).write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"(?s)cannot load .*make weights"):
        load_pretrained(model_dir / WEIGHTS_PATH.name, model_dir / CARD_PATH.name)


def test_vocabulary_mismatch_is_refused(model_dir):
    vocab = build_vocab(load_lines()) + ["§"]
    with pytest.raises(WeightsError, match=r"vocabulary .* does not match .*make weights"):
        load_pretrained(model_dir / WEIGHTS_PATH.name, model_dir / CARD_PATH.name, vocab=vocab)


def test_corrupt_card_is_refused(model_dir):
    (model_dir / CARD_PATH.name).write_text("{not json")
    with pytest.raises(WeightsError, match=r"model card .* is corrupt.*make weights"):
        load_pretrained(model_dir / WEIGHTS_PATH.name, model_dir / CARD_PATH.name)
