"""Tests of the fast generator: same math as the Keras model, right distribution, clean output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from deepngrams.lm import generate as sample
from deepngrams.lm import solution
from deepngrams.lm.data import build_vocab
from deepngrams.lm.fastgru import model_variables


LINES = ["First Citizen:", "Before we proceed any further, hear me speak.", "All:\tSpeak, speak."]
VOCAB = build_vocab(LINES)
LENGTH = 25  # one length (and prompts < 64 chars) keeps every test on the same compiled program


def _small_model(seed: int = 0) -> solution.GRULM:
    tf.keras.utils.set_random_seed(seed)
    model = solution.GRULM(len(VOCAB), embedding_dim=16, rnn_units=32)
    model(tf.zeros((1, 1), tf.int64))
    return model


def _copy_with(model: solution.GRULM, **replace: np.ndarray) -> solution.GRULM:
    """A model with the same weights as `model` except the variables named in `replace` (model_variables roles)."""
    other = _small_model()
    other.set_weights(model.get_weights())
    for role, value in replace.items():
        model_variables(other)[role].assign(value)
    return other


@pytest.fixture(scope="module")
def model() -> solution.GRULM:
    return _small_model()


def _ids(text: str) -> list[int]:
    return solution.line_to_tensor(text, VOCAB).numpy().tolist()


def test_step_log_probs_match_keras_model(model):
    """Feeding ids one step at a time gives the Keras model's log-probabilities (ids >= 2)."""
    ids = _ids("Before we proceed, All: speak!")
    expected = model(tf.constant([ids]))[0].numpy()
    v = model_variables(model)
    table = tf.matmul(v["embedding"], v["kernel"]) + v["bias"][0]
    h = tf.zeros((1, 32))
    for t, i in enumerate(ids):
        h = sample._gru_step(table[i][tf.newaxis], h, v["recurrent_kernel"], v["bias"][1])
        log_probs = sample._next_log_probs(h, v["dense_kernel"], v["dense_bias"])[0].numpy()
        np.testing.assert_allclose(log_probs[2:], expected[t, 2:], atol=1e-4)
        assert np.all(log_probs[:2] == -np.inf)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["First", "s", "Speak, x€"])  # "x" and "€" are not in the vocabulary
def test_greedy_matches_course_generator(model, prompt):
    expected = solution.GenerativeModel(model, VOCAB, temperature=0).generate_n_chars(LENGTH, prompt)
    assert sample.generate(model, VOCAB, prompt, LENGTH, temperature=0) == [expected]


def test_same_seed_same_text_other_seed_other_text(model):
    a = sample.generate(model, VOCAB, "All:", LENGTH, temperature=1.0, seed=3)
    assert sample.generate(model, VOCAB, "All:", LENGTH, temperature=1.0, seed=3) == a
    assert sample.generate(model, VOCAB, "All:", LENGTH, temperature=1.0, seed=4) != a


def test_batch_returns_batch_texts_and_row_zero_is_the_single_stream(model):
    texts = sample.generate(model, VOCAB, "hear", LENGTH, seed=7, batch=3)
    assert len(texts) == 3 and len(set(texts)) == 3
    assert all(t.startswith("hear") and len(t) == len("hear") + LENGTH for t in texts)
    assert texts[0] == sample.generate(model, VOCAB, "hear", LENGTH, seed=7)[0]


def test_length_zero_returns_the_prompt(model):
    assert sample.generate(model, VOCAB, "Speak", 0, batch=2) == ["Speak", "Speak"]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_never_emits_unknown_or_padding(model, temperature):
    bias = model_variables(model)["dense_bias"].numpy().copy()
    bias[:2] = 50.0  # '[UNK]' and '' would take nearly all the probability
    forced = _copy_with(model, dense_bias=bias)
    for text in sample.generate(forced, VOCAB, "All", LENGTH, temperature=temperature, batch=3):
        generated = text[len("All"):]
        assert len(generated) == LENGTH
        assert set(generated) <= set(VOCAB[2:])


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_distribution_is_softmax_of_log_probs_over_temperature(model, temperature):
    """With zero kernels the next character ignores the context: its law is softmax(bias / T) over ids >= 2."""
    v = model_variables(model)
    bias = np.linspace(-2.0, 2.0, len(VOCAB)).astype(np.float32)
    bias[:2] = 5.0  # masked: must get no samples and must not change the others' probabilities
    fixed = _copy_with(model, dense_bias=bias, **{k: np.zeros(v[k].shape, np.float32)
                                                 for k in ("kernel", "recurrent_kernel", "dense_kernel")})
    n = 4000
    texts = sample.generate(fixed, VOCAB, "F", 1, temperature=temperature, seed=11, batch=n)
    index = {ch: i for i, ch in enumerate(VOCAB)}
    counts = np.bincount([index[t[1]] for t in texts], minlength=len(VOCAB))
    logits = bias[2:] / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert counts[:2].sum() == 0
    standard_error = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts[2:] - n * p) <= 4 * standard_error + 1), (counts[2:], n * p)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt"),
    (dict(length=-1), "length"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=math.nan), "temperature"),
    (dict(batch=0), "batch"),
])
def test_bad_arguments_raise_clear_errors(model, kwargs, message):
    args = dict(prompt="All", length=5, temperature=1.0, seed=0, batch=1) | kwargs
    with pytest.raises(ValueError, match=message):
        sample.generate(model, VOCAB, **args)


def test_vocabulary_must_match_the_model(model):
    with pytest.raises(ValueError, match="vocabulary"):
        sample.generate(model, VOCAB[:-1], "All", 5)


def test_cli_prints_headed_samples(model, monkeypatch, capsys):
    monkeypatch.setattr("deepngrams.lm.generate.load_pretrained", lambda: (model, VOCAB, {}))
    assert sample.generate_cli("All", LENGTH, 0.8, 0, 3) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- sample 1 ---\nAll")
    assert "\n\n--- sample 2 ---\nAll" in out and "\n\n--- sample 3 ---\nAll" in out


def test_cli_rejects_bad_arguments_before_loading(monkeypatch, capsys):
    def no_load():
        raise AssertionError("weights loaded for invalid arguments")
    monkeypatch.setattr("deepngrams.lm.generate.load_pretrained", no_load)
    assert sample.generate_cli("All", -3, 0.8, 0, 1) == 2
    assert "length" in capsys.readouterr().err


def test_cli_lets_weights_errors_through(monkeypatch):
    from deepngrams.lm.weights import WeightsError

    def missing():
        raise WeightsError("weights not found")
    monkeypatch.setattr("deepngrams.lm.generate.load_pretrained", missing)
    with pytest.raises(WeightsError):
        sample.generate_cli("All", 5, 0.8, 0, 1)


@pytest.mark.slow
def test_straightforward_baseline_agrees_when_greedy(model):
    fast = sample.generate(model, VOCAB, "First", 10, temperature=0)[0]
    assert sample.straightforward_generate(model, VOCAB, "First", 10, temperature=0) == fast
    assert sample.throughput(model, VOCAB, length=LENGTH, batch=3) > 0
