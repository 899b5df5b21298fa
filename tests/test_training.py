"""The fast training step, the training command, checkpoints and resume."""
import json
import re
import shutil
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from deepngrams.lm import fastgru
from deepngrams.lm import solution
from deepngrams.lm import train
from deepngrams.config import COURSE, CORPUS_PATH, SAMPLE_TEMPERATURES
from deepngrams.lm.data import training_data
from deepngrams.lm.run_record import (LAST_WEIGHTS, CheckpointError, checkpoint_arrays, curve_figure, load_average,
                               output_paths, sha256_file, update_mean)
from deepngrams.lm.weights import load_pretrained

# Runs check the training machinery, which a small model exercises as well as the course's (and in a
# fraction of the time: the step is traced afresh for every run, and its loop unrolls over a sequence).
SMOKE = replace(COURSE, epochs=2, seed=3, embedding_dim=16, rnn_units=32, seq_length=25)
AVERAGING = replace(SMOKE, average_from_epoch=2)


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


@pytest.mark.slow
@pytest.mark.parametrize("chains", [2, 3, 5])
def test_streams_split_into_chains_give_the_same_states_and_gradients(chains):
    rng = np.random.default_rng(5)
    xp, rk, b_rec, h0 = (tf.constant(rng.normal(size=shape), tf.float32)
                         for shape in [(6, 5, 12), (4, 12), (12,), (5, 4)])
    weights = tf.constant(rng.normal(size=(6, 5, 4)), tf.float32)  # a loss that weighs every state

    def states_and_grads(chains):
        with tf.GradientTape() as tape:
            tape.watch([xp, rk, b_rec, h0])
            hs = fastgru.gru_recurrence(xp, rk, b_rec, h0, tf.float32, chains=chains)
            loss = tf.reduce_sum(hs * weights)
        return hs, tape.gradient(loss, [xp, rk, b_rec, h0])

    hs_one, grads_one = states_and_grads(1)
    hs, grads = states_and_grads(chains)
    np.testing.assert_allclose(hs, hs_one, atol=1e-6)
    for g, g_one in zip(grads, grads_one):
        np.testing.assert_allclose(g, g_one, atol=1e-5)


def test_bfloat16_products_stay_close_to_float32():
    model = small_model()
    ids = tf.constant(np.random.default_rng(2).integers(0, 20, size=(2, 12)))
    v = fastgru.model_variables(model)
    f32 = fastgru.sequence_log_probs(v, ids, dtype=tf.float32)[0]
    bf16 = fastgru.sequence_log_probs(v, ids, dtype=tf.bfloat16)[0]
    assert float(tf.reduce_max(tf.abs(f32 - bf16))) < 0.05


@pytest.mark.slow
def test_train_step_lowers_the_loss():
    model = small_model()
    step = fastgru.make_train_step(model, tf.keras.optimizers.Adam(0.01))
    ids = tf.constant(np.random.default_rng(3).integers(2, 20, size=(8, 10)))
    first = float(step(ids[:, :-1], ids[:, 1:])[0])
    for _ in range(60):
        last = float(step(ids[:, :-1], ids[:, 1:])[0])
    assert last < first - 0.5  # it memorises the batch


def test_the_train_step_carries_the_state_and_drops_outputs_reproducibly():
    model = small_model()
    v = fastgru.model_variables(model)
    ids = tf.constant(np.random.default_rng(4).integers(2, 20, size=(2, 12)))
    whole, h_whole = fastgru.sequence_log_probs(v, ids, dtype=tf.float32)
    first, h = fastgru.sequence_log_probs(v, ids[:, :5], dtype=tf.float32)
    second, h_end = fastgru.sequence_log_probs(v, ids[:, 5:], h, dtype=tf.float32)
    np.testing.assert_allclose(tf.concat([first, second], 1), whole, atol=1e-5)
    np.testing.assert_allclose(h_end, h_whole, atol=1e-6)
    seed = tf.constant([7, 1])
    a = fastgru.sequence_log_probs(v, ids, dtype=tf.float32, dropout=0.5, seed=seed)[0]
    b = fastgru.sequence_log_probs(v, ids, dtype=tf.float32, dropout=0.5, seed=seed)[0]
    c = fastgru.sequence_log_probs(v, ids, dtype=tf.float32, dropout=0.5, seed=tf.constant([7, 2]))[0]
    np.testing.assert_array_equal(a, b)
    assert float(tf.reduce_max(tf.abs(a - whole))) > 0.01 and float(tf.reduce_max(tf.abs(a - c))) > 0.01


def smoke(tmp_path, name, epochs=2, hp=SMOKE, **kw):
    hp = replace(hp, epochs=epochs)
    return train.train(hp, out_dir=tmp_path / name, checkpoint_dir=tmp_path / "ckpt", max_lines=1500,
                       max_steps=2, progress=False, **kw)


# Runs shared by the tests of this module: each is trained once, in a folder of its own (out/ and ckpt/,
# as `smoke` lays them out). A test that resumes or changes a run works on a copy (copy_run).

@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """(folder, card) of a smoke run stopped after its first epoch: where the resume tests start."""
    folder = tmp_path_factory.mktemp("one_epoch")
    return folder, smoke(folder, "out", epochs=1)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """(folder, card) of a smoke run of 2 epochs, without a weight mean, run straight through."""
    folder = tmp_path_factory.mktemp("two_epochs")
    return folder, smoke(folder, "out", epochs=2)


@pytest.fixture(scope="module")
def averaged_two(tmp_path_factory):
    """(folder, card) of a smoke run of 2 epochs whose second epoch is averaged."""
    folder = tmp_path_factory.mktemp("averaged_two")
    return folder, smoke(folder, "out", epochs=2, hp=AVERAGING)


@pytest.fixture(scope="module")
def averaged_three(tmp_path_factory):
    """A smoke run of 3 epochs averaged from epoch 2, run straight through, with what it called on the way:
    (folder, card, the count of each update_mean call, each compiled forward pass made)."""
    folder = tmp_path_factory.mktemp("averaged_three")
    counts, forwards = [], []

    def counting(mean, weights, count):
        counts.append(count)
        return update_mean(mean, weights, count)

    def recording(model):
        forwards.append(real_forward(model))
        return forwards[-1]

    real_forward = train.compiled_forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "update_mean", counting)
        patch.setattr(train, "compiled_forward", recording)
        card = smoke(folder, "out", epochs=3, hp=AVERAGING)
    return folder, card, counts, forwards


def copy_run(run: tuple, tmp_path) -> None:
    """Copy a shared run's folder into the test's `tmp_path` (the test may resume or change it there)."""
    shutil.copytree(run[0], tmp_path, dirs_exist_ok=True)


@pytest.mark.slow
def test_smoke_run_writes_weights_card_and_curve(two_epochs):
    folder, card = two_epochs
    out = folder / "out"
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "model_card.json").read_text())
    assert saved == card
    assert [h["epoch"] for h in card["history"]] == [1, 2]
    for h in card["history"]:
        assert h["steps"] == 2 and np.isfinite(h["train_loss"]) and np.isfinite(h["eval_log_perplexity"])
    assert card["hparams"]["rnn_units"] == SMOKE.rnn_units and card["training"]["smoke"] is True
    assert card["corpus"]["sha256"] == sha256_file(CORPUS_PATH)
    model, vocab, _ = load_pretrained(out / "grulm.weights.h5", out / "model_card.json")
    assert vocab == card["vocab"] and model.count_params() == card["parameters"]
    assert not list(out.glob("*.tmp*"))


def sample_entries(path) -> dict[int, str]:
    """A samples file's entries by epoch, each the table as printed (the file indents it)."""
    parts = re.split(r"^## Epoch (\d+)\n", path.read_text(), flags=re.M)
    numbers = [int(n) for n in parts[1::2]]
    assert len(set(numbers)) == len(numbers), f"an epoch recorded twice: {numbers}"
    return {n: textwrap.dedent(text.split("\n\n", 1)[1]).strip("\n") for n, text in zip(numbers, parts[2::2])}


@pytest.mark.slow
def test_a_run_prints_and_keeps_each_epochs_samples_from_the_weights_it_would_ship(tmp_path, capsys):
    # Epoch 2 ships the weight mean; a high rate moves the small model's weights enough in 2 steps that
    # the mean and the last weights write differently.
    smoke(tmp_path, "out", epochs=2, hp=replace(AVERAGING, learning_rate=0.05))
    entries = sample_entries(tmp_path / "out" / "samples.md")
    assert list(entries) == [1, 2]
    out = capsys.readouterr().out
    for epoch, table in entries.items():
        heading = table.split("\n")[1]
        assert [h.strip() for h in heading.split(" | ")] == [f"T={float(t)}" for t in SAMPLE_TEMPERATURES]
        assert out.index(f"epoch {epoch}: train loss") < out.index(table)  # printed after the epoch's line
    model, vocab, _ = load_pretrained(tmp_path / "out" / "grulm.weights.h5", tmp_path / "out" / "model_card.json")
    assert entries[2] == train.epoch_samples(model, vocab)
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    model.set_weights(checkpoint_arrays(ckpt, "model/"))
    assert entries[2] != train.epoch_samples(model, vocab)  # the last weights, not the mean, write otherwise
    assert entries[1] != entries[2]
    assert not list((tmp_path / "out").glob(".*tmp*"))


@pytest.mark.slow
def test_a_resumed_run_records_each_epochs_samples_once(tmp_path, monkeypatch, one_epoch):
    copy_run(one_epoch, tmp_path)
    samples = tmp_path / "out" / "samples.md"
    first = sample_entries(samples)

    def crash(*a, **k):  # the samples of epoch 2 are written, its checkpoint is not
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        smoke(tmp_path, "out", epochs=2)
    assert list(sample_entries(samples)) == [1, 2]
    monkeypatch.undo()
    smoke(tmp_path, "out", epochs=2)  # redoes epoch 2
    resumed = sample_entries(samples)
    assert list(resumed) == [1, 2] and resumed[1] == first[1]
    before = samples.read_bytes()
    smoke(tmp_path, "out", epochs=2)  # nothing left to train
    assert samples.read_bytes() == before
    smoke(tmp_path, "out", epochs=1, fresh=True)  # a fresh start drops the old run's later epochs
    assert list(sample_entries(samples)) == [1]


@pytest.mark.slow
def test_the_course_run_keeps_its_samples_beside_its_checkpoint(tmp_path, monkeypatch):
    """The course run writes model/; its samples must not change the bundled folder."""
    model_dir = tmp_path / "model"
    monkeypatch.setattr(train, "output_paths", lambda out_dir: tuple(model_dir / p.name for p in output_paths(None)))
    # The course's model sizes make a course run, which writes model/ (run_record.same_model); shorter
    # sequences than the course's keep its training step quick to trace.
    train.train(replace(COURSE, epochs=1, seed=3, seq_length=SMOKE.seq_length), checkpoint_dir=tmp_path / "ckpt",
                max_lines=1500, max_steps=2, progress=False)
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    assert list(sample_entries(ckpt.with_suffix(".samples.md"))) == [1]
    assert sorted(p.name for p in model_dir.iterdir()) == ["grulm.weights.h5", "learning_curve.png", "model_card.json"]


def test_the_learning_curve_zooms_in_on_the_second_half_and_marks_where_the_mean_begins():
    history = [{"epoch": e, "train_loss": 1.2 + 2 / e, "eval_log_perplexity": 1.2 + 1.9 / e} for e in range(1, 13)]
    for record in history[8:]:  # a weight mean from epoch 9, the last weights beside it
        record[LAST_WEIGHTS], record["eval_log_perplexity"] = record["eval_log_perplexity"], 1.2
    whole, zoomed = curve_figure(history).axes
    assert whole.get_xlim()[0] < 1 < 6 < zoomed.get_xlim()[0]
    assert zoomed.get_ylim()[1] < 1.6 < 3 < whole.get_ylim()[1]  # the first epochs' losses are off the zoom
    for ax in (whole, zoomed):
        mark = [line for line in ax.get_lines() if line.get_label() == "weight mean from epoch 9"]
        assert len(mark) == 1 and list(mark[0].get_xdata()) == [8.5, 8.5]
    assert [ax.get_title() for ax in (whole, zoomed)] == ["whole run", "epochs 7 to 12, zoomed"]
    assert len(curve_figure(history[:7]).axes) == 1  # too short a run to zoom
    for record in history[2:8]:  # a mean from epoch 3, before the zoom: marked on the whole run only
        record[LAST_WEIGHTS] = record["eval_log_perplexity"]
    whole, zoomed = curve_figure(history).axes
    assert [line.get_label() for line in whole.get_lines()][-1] == "weight mean from epoch 3"
    assert not any(line.get_label().startswith("weight mean") for line in zoomed.get_lines())
    assert zoomed.get_xlim()[0] > 6


@pytest.mark.slow
def test_resume_gives_the_same_run_as_no_interruption(tmp_path, one_epoch, two_epochs):
    straight = two_epochs[1]
    copy_run(one_epoch, tmp_path)  # "interrupted" after its first epoch
    resumed = smoke(tmp_path, "out", epochs=2)
    # The first epoch was not redone: its record (including its wall time) is the one saved.
    first_run = one_epoch[1]
    assert resumed["history"][0] == first_run["history"][0]
    for key in ("train_loss", "eval_log_perplexity"):
        assert [h[key] for h in resumed["history"]] == pytest.approx([h[key] for h in straight["history"]], abs=1e-4)


@pytest.mark.slow
def test_exporting_a_finished_run_again_keeps_its_date_and_wall_time(tmp_path, monkeypatch, one_epoch):
    copy_run(one_epoch, tmp_path)
    first = one_epoch[1]
    monkeypatch.setattr("deepngrams.lm.run_record.today", lambda: "2099-01-01")
    again = smoke(tmp_path, "out", epochs=1)  # nothing left to train: a plain export
    assert again["training"]["finished"] == first["training"]["finished"] != "2099-01-01"
    assert again["training"]["wall_time_s"] == first["training"]["wall_time_s"] == first["history"][0]["seconds"]
    assert smoke(tmp_path, "out", epochs=2)["training"]["finished"] == "2099-01-01"  # a new epoch, a new date


def test_update_mean_is_the_plain_mean_of_all_the_weights_it_was_given():
    rng = np.random.default_rng(0)
    steps = [[rng.normal(size=3).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)] for _ in range(7)]
    expected = [np.mean(np.array([w[i] for w in steps], dtype=np.float64), axis=0) for i in range(2)]
    mean = None
    for count, weights in enumerate(steps, start=1):
        assert (mean := update_mean(mean, weights, count)) is not weights
    steps[0][0][:] = 0  # the mean started as a copy, not a view
    for m, e in zip(mean, expected, strict=True):
        assert m.dtype == np.float64
        np.testing.assert_allclose(m, e, rtol=1e-12)


@pytest.mark.slow
def test_a_checkpoint_with_an_older_kind_of_average_restarts_the_mean(tmp_path, averaged_two):
    """Checkpoints from before the mean held an exponential moving average and no step count."""
    copy_run(averaged_two, tmp_path)
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    state = json.loads(str(arrays["state"]))
    assert state["averaged_steps"] == 2 and load_average(ckpt) is not None
    del state["averaged_steps"]
    arrays["state"] = np.array(json.dumps(state))
    np.savez(ckpt, **arrays)
    smoke(tmp_path, "out", epochs=3, hp=AVERAGING)  # resumes at epoch 3: its 2 steps start the mean anew
    assert json.loads(str(np.load(ckpt)["state"]))["averaged_steps"] == 2


@pytest.mark.slow
def test_the_shipped_weights_are_the_mean_over_the_last_epochs(averaged_three):
    folder, card, counts, _ = averaged_three
    assert counts == [1, 2, 3, 4]  # each step of epochs 2 and 3
    history = card["history"]
    assert "eval_log_perplexity_last_weights" not in history[0]
    assert all(h["eval_log_perplexity_last_weights"] != h["eval_log_perplexity"] for h in history[1:])
    assert "mean of the weights after every step of epochs 2 to 3" in card["training"]["method"]

    model, vocab, _ = load_pretrained(folder / "out" / "grulm.weights.h5", folder / "out" / "model_card.json")
    (ckpt,) = (folder / "ckpt").glob("*.npz")
    average, last = load_average(ckpt), checkpoint_arrays(ckpt, "model/")
    for shipped, avg in zip(model.get_weights(), average, strict=True):
        np.testing.assert_array_equal(shipped, avg.astype(np.float32))
    assert not all(np.allclose(a, b) for a, b in zip(average, last))
    _, _, eval_lines = training_data(1500)
    assert train.evaluate_log_perplexity(model, eval_lines, vocab) == pytest.approx(
        history[-1]["eval_log_perplexity"], abs=1e-4)


@pytest.mark.slow
def test_resume_keeps_the_weight_average(tmp_path, monkeypatch, averaged_three):
    real_save, saved = train.save_checkpoint, []

    def stop_after_epoch_2(*a, **k):  # interrupted with an average under way
        real_save(*a, **k)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        smoke(tmp_path, "out", epochs=3, hp=AVERAGING)
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    smoke(tmp_path, "out", epochs=3, hp=AVERAGING)
    straight, resumed = (load_pretrained(folder / "out" / "grulm.weights.h5", folder / "out" / "model_card.json")[0]
                         for folder in (averaged_three[0], tmp_path))
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_a_mean_begun_at_another_epoch_restarts_where_the_recipe_begins_it(tmp_path, monkeypatch, averaged_two):
    """An instructor moves average_from_epoch later and resumes: the old mean must not leak into the new one."""
    copy_run(averaged_two, tmp_path)
    first = averaged_two[1]  # epoch 2 averaged
    counts = []

    def counting(mean, weights, count):
        counts.append(count)
        return update_mean(mean, weights, count)

    monkeypatch.setattr(train, "update_mean", counting)
    card = smoke(tmp_path, "out", epochs=3, hp=replace(AVERAGING, average_from_epoch=3))
    assert counts == [1, 2]  # the mean starts afresh with epoch 3's two steps
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    assert json.loads(str(np.load(ckpt)["state"]))["averaged_steps"] == 2
    # Epoch 2's record is now what the recipe records before its mean: the last weights' evaluation.
    expected = dict(first["history"][1])
    expected["eval_log_perplexity"] = expected.pop("eval_log_perplexity_last_weights")
    assert card["history"][1] == expected
    assert "eval_log_perplexity_last_weights" in card["history"][2]
    assert "epochs 3 to 3" in card["training"]["method"]


@pytest.mark.slow
def test_a_mean_begun_at_another_epoch_is_refused_once_the_recipe_mean_has_begun(tmp_path, averaged_three,
                                                                                 two_epochs):
    copy_run(averaged_three, tmp_path)  # mean from epoch 2
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=r"mean from epoch 2, but the recipe averages from epoch 3.*back to 2, "
                                              r"or start over with --fresh"):
        smoke(tmp_path, "out", epochs=4, hp=replace(AVERAGING, average_from_epoch=3))
    assert ckpt.read_bytes() == before
    copy_run(two_epochs, tmp_path / "off")  # its own checkpoint, without a mean
    with pytest.raises(CheckpointError, match="epochs 1 to 2 with no weight mean, but the recipe averages from epoch 2.*"
                                              "to 0 or to an epoch after 2, or start over with --fresh"):
        smoke(tmp_path / "off", "out", epochs=3, hp=AVERAGING)


@pytest.mark.slow
def test_a_run_compiles_its_evaluation_once(averaged_three):
    """A compiled pass made afresh each epoch recompiled every time (and TensorFlow warned of retracing).

    The run evaluates 5 times: each epoch's weights, and from epoch 2 the mean beside them."""
    made = averaged_three[3]
    assert len(made) == 1 and made[0].experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_a_crash_mid_epoch_keeps_the_finished_epochs(tmp_path, monkeypatch, one_epoch):
    copy_run(one_epoch, tmp_path)
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


KERAS_HP = replace(AVERAGING, epochs=3)


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """(folder, card) of one run of deepngrams.lm.train_keras on the TensorFlow backend, averaged from epoch 2.

    Its held-out slice is short (max_lines 1000 holds out 10 lines): on TensorFlow the trainer evaluates
    it with an eager call of the model, 5 times in this run."""
    from deepngrams.lm import train_keras

    folder = tmp_path_factory.mktemp("keras")
    card = train_keras.train(KERAS_HP, out_dir=folder / "out", checkpoint_dir=folder / "ckpt", max_lines=1000,
                             max_steps=2)
    return folder, card


@pytest.mark.slow
def test_backend_neutral_trainer_writes_weights_the_notebook_model_loads(keras_run):
    """deepngrams.lm.train_keras (the GPU path) checked here on the CPU with the TensorFlow backend."""
    from deepngrams.lm import train_keras

    folder, card = keras_run
    assert [h["steps"] for h in card["history"]] == [2, 2, 2]
    assert card["training"]["device"] == "cpu" and "keras" in card["training"]["backend"]
    assert card["history"][1]["train_loss"] < card["history"][0]["train_loss"] + 0.5
    model, vocab, _ = load_pretrained(folder / "out" / "grulm.weights.h5", folder / "out" / "model_card.json")
    twin = train_keras.build(len(vocab), KERAS_HP)
    twin.load_weights(folder / "out" / "grulm.weights.h5")
    ids = np.array([[5, 9, 30, 41, 2, 60, 7]])
    np.testing.assert_allclose(model(ids), twin(ids), atol=1e-5)
    # Its evaluation agrees with the notebook's.
    text = "\n".join(["To be, or not to be", "that is the question"])
    enc = train_keras.encode(text, vocab)
    assert abs(train_keras.eval_log_perplexity(twin, enc)
               - train.evaluate_log_perplexity(model, text.split("\n"), vocab)) < 1e-4


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_keras_trainers_evaluation_runs_the_recurrent_step_compiled(cell):
    """The held-out text is read as one long sequence: run eagerly, the recurrent cell would be one
    Python call a character (minutes an epoch on the course's text); compiled, it is traced once."""
    from deepngrams.lm import train_keras
    from deepngrams.lm.charlm import build

    model = build(12, SMOKE, cell=cell)
    ids = np.random.default_rng(0).integers(2, 12, size=300)
    step, calls = model.rnn.cell.call, []
    model.rnn.cell.call = lambda *a, **k: (calls.append(1), step(*a, **k))[1]
    value = train_keras.eval_log_perplexity(model, ids)
    assert 0 < len(calls) < 10, len(calls)
    model.rnn.cell.call = step
    preds = np.asarray(model(ids[None, :-1]))[0]  # the same value as the plain call
    assert value == pytest.approx(float(-preds[np.arange(299), ids[1:]].mean()), abs=1e-5)


@pytest.mark.slow
def test_backend_neutral_trainer_ships_the_weight_mean(keras_run):
    folder, card = keras_run
    assert [("eval_log_perplexity_last_weights" in h) for h in card["history"]] == [False, True, True]
    assert "mean of the weights after every step of epochs 2 to 3" in card["training"]["method"]
    model, _, _ = load_pretrained(folder / "out" / "grulm.weights.h5", folder / "out" / "model_card.json")
    (ckpt,) = (folder / "ckpt").glob("*.npz")
    for shipped, avg in zip(model.get_weights(), load_average(ckpt), strict=True):
        np.testing.assert_array_equal(shipped, avg.astype(np.float32))


def test_stream_batches_continue_each_row_and_move_with_the_seed():
    from deepngrams.lm.data import stream_batches

    ids = np.arange(100)
    batches = list(stream_batches(ids, batch_size=3, seq_length=4, seed=1))
    offset = int(batches[0][0][0, 0])
    assert 0 <= offset < 4 and len(batches) == (100 - offset - 1) // 12
    for x, y in batches:
        np.testing.assert_array_equal(y, x + 1)  # targets are the next ids
    for before, after in zip(batches, batches[1:]):
        np.testing.assert_array_equal(after[0][:, 0], before[0][:, -1] + 1)  # each row reads on
    rows = np.concatenate([x for x, _ in batches], axis=1)
    np.testing.assert_array_equal(rows.ravel(), np.arange(offset, offset + rows.size))  # no id twice
    again = [x.tolist() for x, _ in stream_batches(ids, 3, 4, seed=1)]
    assert again == [x.tolist() for x, _ in batches]
    offsets = {int(next(stream_batches(ids, 3, 4, seed=s))[0][0, 0]) for s in range(20)}
    assert len(offsets) > 1


def test_the_recipe_rate_is_the_students_compile_model_rate():
    model = solution.GRULM(10, embedding_dim=4, rnn_units=8)
    assert float(solution.compile_model(model).optimizer.learning_rate.numpy()) == pytest.approx(COURSE.learning_rate)


@pytest.mark.slow
def test_training_runs_at_the_recipe_rate_also_over_a_decayed_checkpoint(tmp_path, monkeypatch):
    """compile_model's Adam is built at 0.00125, and a checkpoint restores its optimizer's rate:
    the recipe's rate must win over both (earlier recipes decayed the rate before checkpointing)."""
    rates, real = [], fastgru.make_train_step

    def recording(model, optimizer, *args):
        step = real(model, optimizer, *args)

        def recorded(*a):
            rates.append(float(optimizer.learning_rate.numpy()))
            return step(*a)
        return recorded

    monkeypatch.setattr(train.fastgru, "make_train_step", recording)
    hp = replace(SMOKE, learning_rate=0.002)
    smoke(tmp_path, "out", epochs=1, hp=hp)
    (ckpt,) = (tmp_path / "ckpt").glob("*.npz")
    arrays = dict(np.load(ckpt))
    assert float(arrays["opt/1"]) == pytest.approx(0.002)  # Adam's variables: iteration, learning_rate, ...
    arrays["opt/1"] = np.float32(0.0002)
    np.savez(ckpt, **arrays)
    smoke(tmp_path, "out", epochs=2, hp=hp)
    assert rates == pytest.approx([0.002] * 4)
