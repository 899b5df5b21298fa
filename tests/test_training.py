"""The fast training step, the training command, checkpoints and resume."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from deepngrams import fastgru, solution, train
from deepngrams.config import COURSE
from deepngrams.weights import build_model, load_pretrained

SMOKE = replace(COURSE, epochs=2, seed=3)


def small_model(vocab_size=20, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = solution.GRULM(vocab_size, embedding_dim=8, rnn_units=16)
    model(tf.zeros((1, 1), tf.int64))
    # Non-zero biases so every term of the GRU math is exercised.
    for var in (model.gru.cell.bias, model.dense.bias):
        var.assign(tf.random.normal(var.shape, stddev=0.3))
    return model


def test_fast_forward_equals_keras_gru():
    model = small_model()
    ids = tf.constant(np.random.default_rng(0).integers(0, 20, size=(3, 9)))
    expected, state = model(ids, return_state=True)
    got, got_state = fastgru.sequence_log_probs(fastgru.model_variables(model), ids, dtype=tf.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got_state, state, atol=1e-5)


def test_hand_written_backward_equals_autodiff():
    model = small_model()
    v = fastgru.model_variables(model)
    params = list(v.values())
    rng = np.random.default_rng(1)
    ids = tf.constant(rng.integers(0, 20, size=(4, 7)))
    targets = tf.constant(rng.integers(0, 20, size=(4, 7)))

    def loss_of(log_probs):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, log_probs))

    with tf.GradientTape() as tape:
        fast = loss_of(fastgru.sequence_log_probs(v, ids, dtype=tf.float32)[0])
    with tf.GradientTape() as ref_tape:
        ref = loss_of(model(ids))
    np.testing.assert_allclose(fast, ref, rtol=1e-6)
    for g, r, p in zip(tape.gradient(fast, params), ref_tape.gradient(ref, params), params):
        g, r = tf.convert_to_tensor(g), tf.convert_to_tensor(r)
        assert float(tf.norm(g - r) / tf.norm(r)) < 1e-5, p.path


def test_bfloat16_products_stay_close_to_float32():
    model = small_model()
    ids = tf.constant(np.random.default_rng(2).integers(0, 20, size=(2, 12)))
    v = fastgru.model_variables(model)
    f32 = fastgru.sequence_log_probs(v, ids, dtype=tf.float32)[0]
    bf16 = fastgru.sequence_log_probs(v, ids, dtype=tf.bfloat16)[0]
    assert float(tf.reduce_max(tf.abs(f32 - bf16))) < 0.05


def test_train_step_lowers_the_loss():
    model = small_model()
    opt = solution.compile_model(model).optimizer
    step = fastgru.make_train_step(model, opt)
    ids = tf.constant(np.random.default_rng(3).integers(2, 20, size=(8, 10)))
    first = float(step(ids[:, :-1], ids[:, 1:]))
    for _ in range(30):
        last = float(step(ids[:, :-1], ids[:, 1:]))
    assert last < first - 0.5


def smoke(tmp_path, name, epochs=2, **kw):
    hp = replace(SMOKE, epochs=epochs)
    return train.train(hp, out_dir=tmp_path / name, checkpoint_dir=tmp_path / "ckpt", max_lines=1500,
                       max_steps=2, progress=False, **kw)


def test_smoke_run_writes_weights_card_and_curve(tmp_path):
    card = smoke(tmp_path, "out")
    out = tmp_path / "out"
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "model_card.json").read_text())
    assert saved == card
    assert [h["epoch"] for h in card["history"]] == [1, 2]
    for h in card["history"]:
        assert h["steps"] == 2 and np.isfinite(h["train_loss"]) and np.isfinite(h["eval_log_perplexity"])
    assert card["hparams"]["rnn_units"] == 512 and card["training"]["smoke"] is True
    assert card["corpus"]["sha256"] == train.sha256_file(train.CORPUS_PATH)
    model, vocab, _ = load_pretrained(out / "grulm.weights.h5", out / "model_card.json")
    assert vocab == card["vocab"] and model.count_params() == card["parameters"]
    assert not list(out.glob("*.tmp*"))


def test_resume_gives_the_same_run_as_no_interruption(tmp_path):
    straight = smoke(tmp_path / "a", "out", epochs=2)
    smoke(tmp_path / "b", "out", epochs=1)  # "interrupted" after its first epoch
    resumed = smoke(tmp_path / "b", "out", epochs=2)
    # The first epoch was not redone: its record (including its wall time) is the one saved.
    first_run = json.loads((tmp_path / "b" / "out" / "model_card.json").read_text())
    assert resumed["history"][0] == first_run["history"][0]
    for key in ("train_loss", "eval_log_perplexity"):
        assert [h[key] for h in resumed["history"]] == pytest.approx([h[key] for h in straight["history"]], abs=1e-4)


def test_a_crash_mid_epoch_keeps_the_finished_epochs(tmp_path, monkeypatch):
    smoke(tmp_path, "out", epochs=1)
    real = train.evaluate_log_perplexity

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "evaluate_log_perplexity", crash)
    with pytest.raises(KeyboardInterrupt):
        smoke(tmp_path, "out", epochs=3)
    monkeypatch.setattr(train, "evaluate_log_perplexity", real)
    card = smoke(tmp_path, "out", epochs=2)
    assert [h["epoch"] for h in card["history"]] == [1, 2]
    assert not list((tmp_path / "ckpt").glob("*.tmp*"))
