"""The GPU path, run on the JAX backend (CPU jax from PyPI): what a lent GPU machine runs.

Those machines have JAX and PyTorch but no TensorFlow, so deepngrams.lm.train_keras is run
here in a fresh process with KERAS_BACKEND=jax and TensorFlow made unimportable. The weights
it writes must load into the notebook's GRULM (TensorFlow) and give the same outputs, and the
held-out log-perplexity it records must be the one the TensorFlow evaluation computes.
"""
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace

import numpy as np
import pytest

from deepngrams.config import COURSE, ROOT
from deepngrams.lm import train
from deepngrams.lm.data import training_data
from deepngrams.lm.weights import load_pretrained

pytestmark = pytest.mark.slow

# The course model's recipe at a size a CPU trains in seconds (the card carries the sizes, so the
# notebook's GRULM is built to match); the weight mean begins at epoch 2, as the course's does late.
SMALL = replace(COURSE, epochs=2, rnn_units=64, embedding_dim=32, batch_size=16, seq_length=50, average_from_epoch=2)
MAX_LINES, MAX_STEPS = 1500, 3
IDS = [[5, 9, 30, 41, 2, 60, 7, 1, 0, 12]]

RUN_ON_JAX = r"""
import json, sys
sys.modules["tensorflow"] = None  # as on the GPU machines: importing TensorFlow fails
import keras, numpy as np
from pathlib import Path
from deepngrams.config import HParams
from deepngrams.lm import train_keras
hp, out, ckpt, ids = HParams(**json.loads(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
card = train_keras.train(hp, out_dir=out, checkpoint_dir=ckpt, max_lines=int(sys.argv[5]), max_steps=int(sys.argv[6]))
twin = train_keras.build(len(card["vocab"]), hp)
twin.load_weights(out / "grulm.weights.h5")
np.save(out / "jax_outputs.npy", keras.ops.convert_to_numpy(twin(np.array(ids, dtype="int64"))))
print("BACKEND", keras.backend.backend())
"""


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", RUN_ON_JAX, json.dumps(asdict(SMALL)), str(tmp / "out"),
                           str(tmp / "ckpt"), json.dumps(IDS), str(MAX_LINES), str(MAX_STEPS)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "out", done.stdout


def test_the_keras_trainer_runs_on_jax_without_tensorflow(jax_run):
    out, stdout = jax_run
    assert "BACKEND jax" in stdout
    card = json.loads((out / "model_card.json").read_text())
    assert " on jax," in card["training"]["backend"] and card["training"]["device"] == "cpu"
    assert [h["steps"] for h in card["history"]] == [MAX_STEPS, MAX_STEPS]
    assert all(np.isfinite(h["eval_log_perplexity"]) for h in card["history"])
    assert "mean of the weights after every step of epochs 2 to 2" in card["training"]["method"]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert card["hparams"]["rnn_units"] == SMALL.rnn_units


def test_weights_trained_on_jax_load_into_the_notebook_model_with_the_same_outputs(jax_run):
    out, _ = jax_run
    model, vocab, card = load_pretrained(out / "grulm.weights.h5", out / "model_card.json")
    assert model.gru.units == SMALL.rnn_units
    np.testing.assert_allclose(np.asarray(model(np.array(IDS))), np.load(out / "jax_outputs.npy"), atol=1e-4)
    # The held-out score JAX recorded for the shipped weights is the TensorFlow evaluation's.
    _, _, eval_lines = training_data(MAX_LINES)
    assert abs(train.evaluate_log_perplexity(model, eval_lines, vocab)
               - card["history"][-1]["eval_log_perplexity"]) < 1e-3
