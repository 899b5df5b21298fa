"""The exported generator: a SavedModel that runs without deepngrams and writes what `generate` writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from deepngrams.lm import export as exporting
from deepngrams.lm import generate as sample
from test_generate_batch import LENGTH, PROMPTS, VOCAB, tiny_model, write_model_dir

# Run by a fresh interpreter in isolated mode from an empty folder: only TensorFlow, no deepngrams.
FRESH_PROCESS = textwrap.dedent("""
    import importlib.util, json, sys
    assert importlib.util.find_spec("deepngrams") is None, "deepngrams is importable"
    import tensorflow as tf

    m = tf.saved_model.load(sys.argv[1])
    serve = m.signatures["serving_default"]
    cases = json.loads(sys.argv[2])
    out = []
    for prompts, length, temperature, seed in cases:
        texts = serve(prompts=tf.constant(prompts), length=tf.constant(length, tf.int32),
                      temperature=tf.constant(temperature, tf.float32), seed=tf.constant(seed, tf.int64))["texts"]
        out.append([t.decode("utf-8") for t in texts.numpy().tolist()])
    direct = m.generate(tf.constant(cases[0][0]), cases[0][1], cases[0][2], tf.constant(cases[0][3], tf.int64))
    assert [t.decode("utf-8") for t in direct["texts"].numpy().tolist()] == out[0]
    errors = []
    for prompts, length, temperature in ([["Speak", "Fx"], 5, 1.0], [["Speak", ""], 5, 1.0], [["F"], -1, 1.0],
                                         [["F"], 5, -0.5]):
        try:
            serve(prompts=tf.constant(prompts), length=tf.constant(length), temperature=tf.constant(temperature),
                  seed=tf.constant(0, tf.int64))
            errors.append("no error")
        except tf.errors.InvalidArgumentError as e:
            errors.append(e.message)
    print(json.dumps({"texts": out, "errors": errors}))
""")

CASES = [(PROMPTS, LENGTH, 1.0, 5), (PROMPTS, LENGTH, 0.8, 123), (PROMPTS, LENGTH, 0.0, 0), (["All"], LENGTH, 1.0, 5)]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    return exporting.export(model, VOCAB, tmp_path_factory.mktemp("export") / "generator")


@pytest.mark.slow
def test_the_savedmodel_in_a_fresh_process_writes_what_generate_writes(model, exported, tmp_path):
    done = subprocess.run([sys.executable, "-I", "-c", FRESH_PROCESS, str(exported), json.dumps(CASES)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    expected = [sample.generate_many(model, VOCAB, prompts, length, temperature=temperature, seed=seed)
                for prompts, length, temperature, seed in CASES]
    assert result["texts"] == expected
    # Greedy too, and a lone prompt writes the single-prompt `generate` text of the same seed.
    assert result["texts"][3] == sample.generate(model, VOCAB, "All", LENGTH, temperature=1.0, seed=5)
    oov, empty, length, temperature = result["errors"]
    assert "prompt] [1] [(counting from 0) has the character] [x]" in oov and "vocabulary" in oov
    assert "prompt] [1] [(counting from 0) is empty" in empty
    assert "length must be >= 0" in length
    assert "temperature must be a finite number >= 0" in temperature


@pytest.mark.slow
def test_the_keras_file_reloads_with_custom_objects(model, exported):
    import keras

    path = exported / exporting.KERAS_NAME
    with pytest.raises(TypeError, match="SavedGRULM"):
        keras.saving.load_model(path)  # Keras cannot find the class unless told
    for reloaded in (keras.saving.load_model(path, custom_objects={"SavedGRULM": exporting.SavedGRULM}),
                     exporting.load_keras(path)):
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reloaded.get_weights()))
        ids = tf.constant([[3, 4, 5, 6]])
        np.testing.assert_array_equal(reloaded(ids).numpy(), model(ids).numpy())
    assert sample.generate_many(reloaded, VOCAB, PROMPTS, LENGTH, seed=1) == \
        sample.generate_many(model, VOCAB, PROMPTS, LENGTH, seed=1)


@pytest.mark.slow
def test_the_folder_is_marked_as_an_export(exported):
    marker = json.loads((exported / exporting.MARKER).read_text())
    assert marker["format"] == exporting.FORMAT and marker["vocab"] == VOCAB
    assert {"saved_model.pb", "variables", exporting.KERAS_NAME, exporting.MARKER} <= {p.name for p in exported.iterdir()}
    assert exporting.is_export(exported) and not exporting.is_export(exported / "variables")


def test_a_folder_that_is_not_an_export_is_refused_and_left_alone(model, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(exporting.ExportError, match="is not empty and holds no previous export"):
        exporting.export(model, VOCAB, tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["keep.txt"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(exporting.ExportError, match="is not a folder"):
        exporting.export(model, VOCAB, tmp_path / "a-file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "notes"]  # no temporary folder left


def test_a_failed_export_leaves_the_previous_one_and_no_temporary_folder(model, tmp_path, monkeypatch):
    out = tmp_path / "generator"
    out.mkdir()
    (out / exporting.MARKER).write_text(json.dumps({"format": exporting.FORMAT}))
    (out / "saved_model.pb").write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(exporting.tf.saved_model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        exporting.export(model, VOCAB, out)
    assert (out / "saved_model.pb").read_bytes() == b"previous" and exporting.is_export(out)
    assert [p.name for p in tmp_path.iterdir()] == ["generator"]


@pytest.mark.slow
def test_export_command_replaces_a_previous_export_and_refuses_other_folders(tmp_path, capsys):
    from deepngrams.__main__ import main

    other = tiny_model(seed=1)
    folder = write_model_dir(other, tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()  # an empty folder may be written to
    assert main(["export", "--model", str(folder), "--out", str(out)]) == 0
    assert main(["export", "--model", str(folder), "--out", str(out)]) == 0  # a previous export is replaced
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny"]
    loaded = tf.saved_model.load(str(out))
    np.testing.assert_array_equal(loaded.weights[0].numpy(), other.embedding.embeddings.numpy())

    assert main(["export", "--model", str(folder), "--out", str(folder)]) == 2  # the model folder is no export
    err = capsys.readouterr().err
    assert f"error: {folder} is not empty and holds no previous export" in err and "name a new or empty folder" in err
