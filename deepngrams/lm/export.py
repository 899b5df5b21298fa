"""Export the generator as a TensorFlow SavedModel that runs without this package, and the model as .keras.

    python -m deepngrams export [--model DIR] --out DIR

The folder written holds:

- the SavedModel (saved_model.pb, variables/): its serving signature takes `prompts` (a batch
  of tf.string), `length` (int32), `temperature` (float32) and `seed` (int64) and returns
  `texts`, each prompt followed by its generated characters. It is `generate.sample_texts`
  itself, behind checks of its arguments, so it writes what `python -m deepngrams generate`
  writes for the same seed. Load it with `tf.saved_model.load(folder)` alone:
  `m.signatures["serving_default"](prompts=..., length=..., temperature=..., seed=...)["texts"]`,
  or `m.generate(prompts, length, temperature, seed)["texts"]`.
- grulm.keras, the model in Keras 3's format. `solution.GRULM` (the students' code) cannot be
  rebuilt from such a file, so the file holds a `SavedGRULM`, the same model that says its own
  configuration; load it with `load_keras`, i.e. `keras.saving.load_model(path,
  custom_objects={"SavedGRULM": SavedGRULM})`.
- export.json, which marks the folder as an export (so a later export may replace it) and
  records the vocabulary and the signature.

The folder is written under a temporary name beside --out and renamed into place, so no one
sees half an export; an --out that is neither empty nor a previous export is left alone.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.lm.charlm import CELLS, KerasCharLM
from deepngrams.lm.generate import WEIGHT_NAMES, cell_of, char_ids, load_model, model_weights, sample_texts

MARKER = "export.json"
FORMAT = "deepngrams generator export"
KERAS_NAME = "grulm.keras"


class ExportError(RuntimeError):
    """The export cannot be written where it was asked for."""


# ------------------------------------------------------------------ the SavedModel

class Generator(tf.Module):
    """The exported generator: the model's weights, its vocabulary and `sample_texts` behind argument checks."""

    def __init__(self, model, vocab: list[str]):
        super().__init__()
        self.weights = [tf.Variable(w, trainable=False, name=name)
                        for name, w in zip(WEIGHT_NAMES, model_weights(model))]
        self.vocab = tf.Variable(vocab, trainable=False, name="vocab")
        self.cell = cell_of(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompts"),
                                  tf.TensorSpec([], tf.int32, name="length"),
                                  tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.int64, name="seed")])
    def generate(self, prompts, length, temperature, seed):
        vocab = tf.convert_to_tensor(self.vocab)
        checks = _graph_checks(prompts, length, temperature, vocab)
        with tf.control_dependencies(checks):
            texts = sample_texts(tuple(tf.convert_to_tensor(w) for w in self.weights), vocab,
                                 tf.identity(prompts), length, temperature, seed, self.cell)
        return {"texts": texts}


def _graph_checks(prompts: tf.Tensor, length: tf.Tensor, temperature: tf.Tensor, vocab: tf.Tensor) -> list:
    """The checks `generate` makes in Python, as graph asserts (an InvalidArgumentError says which failed)."""
    _, known = char_ids(prompts, vocab)
    lengths = known.row_lengths()
    # Index of the first empty prompt and of the first unknown character; one past the end when there is none
    # (the sentinel keeps the message's tensors computable when all is well).
    first_empty = tf.argmax(tf.concat([tf.equal(lengths, 0), [True]], 0))
    unknown = tf.concat([tf.logical_not(known.flat_values), [True]], 0)
    first_unknown = tf.argmax(unknown)
    chars = tf.concat([tf.strings.unicode_split(prompts, "UTF-8").flat_values, [""]], 0)
    rows = tf.concat([known.value_rowids(), tf.constant([-1], tf.int64)], 0)
    return [
        tf.debugging.Assert(tf.size(prompts) > 0, ["give at least one prompt"]),
        tf.debugging.Assert(length >= 0, ["length must be >= 0 (characters to generate), got", length]),
        tf.debugging.Assert(tf.logical_and(tf.math.is_finite(temperature), temperature >= 0),
                            ["temperature must be a finite number >= 0 (0 is greedy, 1 samples the model), got",
                             temperature]),
        tf.debugging.Assert(tf.reduce_all(lengths > 0),
                            ["prompt", first_empty, "(counting from 0) is empty: each prompt needs a character "
                             "to start from"]),
        tf.debugging.Assert(tf.reduce_all(known.flat_values),
                            ["prompt", rows[first_unknown], "(counting from 0) has the character",
                             chars[first_unknown], "which is not in the model's vocabulary: use the characters "
                             "the model was trained on"]),
    ]


# ------------------------------------------------------------------ the .keras model

class SavedGRULM(solution.GRULM):
    """The course's GRULM as Keras 3 saves and rebuilds it.

    solution.GRULM takes no Keras keyword arguments (trainable, dtype), and Keras 3 records a
    subclassed model's default constructor arguments rather than those it was built with, so a
    GRULM written to .keras cannot be read back. This subclass states its configuration.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, rnn_units: int, **keras_kwargs):
        super().__init__(vocab_size=vocab_size, embedding_dim=embedding_dim, rnn_units=rnn_units)
        self.sizes = {"vocab_size": int(vocab_size), "embedding_dim": int(embedding_dim), "rnn_units": int(rnn_units)}

    def get_config(self) -> dict:
        return dict(self.sizes)


def savable(model: solution.GRULM) -> SavedGRULM:
    """A SavedGRULM with the weights of `model` (sizes read from its variables)."""
    v = {name: w.shape for name, w in zip(WEIGHT_NAMES, model_weights(model))}
    copy = SavedGRULM(vocab_size=v["embedding"][0], embedding_dim=v["embedding"][1],
                      rnn_units=v["recurrent_kernel"][0])
    copy(tf.zeros((1, 1), tf.int64))
    copy.set_weights(model.get_weights())
    return copy


def keras_name(model) -> str:
    """The .keras file's name: grulm.keras for a GRULM, lstmlm.keras for an LSTM model of `train --cell lstm`."""
    return KERAS_NAME if cell_of(model) == "gru" else f"{CELLS['lstm'].lower()}.keras"


def keras_model(model) -> keras.Model:
    """What the .keras file holds: a GRULM as a SavedGRULM, an LSTM model as it is (its class states its
    configuration)."""
    return savable(model) if cell_of(model) == "gru" else model


def load_keras(path: Path) -> keras.Model:
    """A model written by `export` as .keras: Keras needs to be told the class (custom_objects)."""
    return keras.saving.load_model(path, custom_objects={"SavedGRULM": SavedGRULM, "KerasCharLM": KerasCharLM})


# ------------------------------------------------------------------ writing the folder

def is_export(folder: Path) -> bool:
    """Whether `folder` holds an export this module wrote (its marker file says so)."""
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"{out} is not a folder: --out names a folder to write the export to")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise ExportError(f"{out} is not empty and holds no previous export (no {MARKER} of ours), so the export "
                          f"will not replace it: name a new or empty folder, or empty this one first")


def export(model: solution.GRULM, vocab: list[str], out: Path, card: dict | None = None) -> Path:
    """Write the SavedModel, the .keras model and the marker to `out`, atomically; return `out`."""
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.writing-"))
    try:
        generator = Generator(model, vocab)
        tf.saved_model.save(generator, str(tmp), signatures={"serving_default": generator.generate})
        keras_path = tmp / keras_name(model)
        keras_model(model).save(keras_path)
        reloaded = load_keras(keras_path)
        if not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reloaded.get_weights())):
            raise ExportError(f"{keras_path.name} did not read back with the model's weights")
        marker = {
            "format": FORMAT,
            "serving_default": {"inputs": {"prompts": "string [batch]", "length": "int32", "temperature": "float32",
                                           "seed": "int64"},
                                "outputs": {"texts": "string [batch]: each prompt followed by `length` characters"}},
            "keras": {"file": keras_path.name, "load": "deepngrams.lm.export.load_keras(path), i.e. keras.saving.load_model("
                                                  "path, custom_objects={'SavedGRULM': SavedGRULM, 'KerasCharLM': "
                                                  "KerasCharLM})"},
            "vocab": list(vocab),
            "hparams": (card or {}).get("hparams"),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's folder is the owner's alone
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; a previous export (or an empty folder) there is set aside first, then removed."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, old / "export")
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old / "export", out)
        raise
    finally:
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)


def export_cli(out: Path, model_dir: Path | None = None) -> int:
    """`python -m deepngrams export`: export the pretrained model (or `model_dir`'s); 2 when --out is refused."""
    out = Path(out)
    try:
        _check_out(out)  # before loading the model, so a wrong --out costs nothing
        model, vocab, card = load_model(model_dir)
        export(model, vocab, out, card)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the SavedModel (tf.saved_model.load; signature serving_default) and {keras_name(model)}")
    return 0
