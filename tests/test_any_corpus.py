"""Training on any text, GRU or LSTM: what is refused before training starts, and what a run leaves.

The text is a licence the system ships (not Shakespeare: its characters, lines and held-out part
are its own).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from deepngrams.__main__ import main
from dataclasses import replace

from deepngrams.config import COURSE, MODEL_DIR, SAMPLE_PROMPT
from deepngrams.lm import generate as sample
from deepngrams.lm import train, train_keras
from deepngrams.lm.charlm import build as build_charlm
from deepngrams.lm.data import build_vocab, encode, held_out_lines, load_lines, read_corpus, stream_batches
from deepngrams.lm.corpus import sha256_of
from deepngrams.lm.run_record import OutputError, corpus_run, sha256_file
from deepngrams.lm.weights import load_model_dir

# Apache-2.0 (11 KB), the shortest, first: a run's cost grows with its text (the LSTM's trainer evaluates the
# held-out tenth with an eager call of the model), and its lines train and hold out as any text's do.
CANDIDATES = [Path("/usr/share/common-licenses/Apache-2.0"), Path("/usr/share/common-licenses/GPL-3"),
              Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "LICENSE.txt"]
LICENCE = next((path for path in CANDIDATES if path.is_file()), None)
needs_licence = pytest.mark.skipif(LICENCE is None, reason="no licence text on this system: "
                                   + ", ".join(map(str, CANDIDATES)))
SIZES = ["--units", "16", "--embedding", "8", "--seq-length", "20"]


def folder_state(folder: Path) -> dict:
    """Every file under `folder` with its sha256: to show a refused run changed nothing."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Building a model fails the test: these runs must be refused before training starts. Checkpoints go
    to a folder of the test's, which must stay empty."""
    def started(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "build_model", started)
    monkeypatch.setattr(train_keras, "build", started)
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(train, "CHECKPOINT_DIR", checkpoints)
    monkeypatch.setattr(train_keras, "CHECKPOINT_DIR", checkpoints)
    yield
    assert not checkpoints.exists()


def refused(args: list[str], capsys) -> str:
    assert main(["train", *args]) == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------ bad input, refused before training

@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("data, where, encoding", [
    (b"first line\nsecond \xe9t\xe9\n", "0xe9 at line 2, character 8 (invalid continuation byte; offset 18", "latin1"),
    (b"a\nb\nc\x80d\n", "0x80 at line 3, character 2 (invalid start byte; offset 5", "latin1"),
    (b"fine\n" + "\u65e5\u672c".encode("utf-8")[:-1], "0xe6 at line 2, character 2 (unexpected end of data; offset 8",
     "latin1"),  # a character cut off at the end
    (b"one\r\ntwo\rthree \xff\r", "0xff at line 3, character 7 (invalid start byte; offset 15", "latin1"),
    ("text\nmore\n".encode("utf-16"), "at line 1, character 1 (invalid start byte; offset 0", "utf-16"),
])
def test_a_text_that_is_not_utf8_is_refused_with_where(tmp_path, capsys, no_training, cell, data, where, encoding):
    corpus, out = tmp_path / "text.txt", tmp_path / "out"
    corpus.write_bytes(data)
    err = refused(["--corpus", str(corpus), "--cell", cell, "--out", str(out)], capsys)
    assert f"{corpus} is not UTF-8 text: byte " in err and where in err and f"iconv -f {encoding} -t utf-8" in err
    assert not out.exists()


def test_a_text_is_split_into_lines_as_the_course_reads_its_corpus(tmp_path):
    """Universal newlines (\\n, \\r\\n, \\r); a form feed or a Unicode line separator stays inside its line."""
    corpus = tmp_path / "text.txt"
    corpus.write_bytes("a\x0cb\r\n  c\u2028d \rlast\x85line\n\n".encode("utf-8"))
    assert read_corpus(corpus) == load_lines(corpus) == ["a\x0cb", "c\u2028d", "last\x85line"]


@pytest.mark.parametrize("data, words", [
    (b"", "is empty"), (b"\n\n   \n\t\n", "is empty"),
    (b"one line of text\n", "single line"), (b"\n  only this  \n\n", "single line"),
    (b"x" * 8000 + b"\n}\n", "held-out part (the last line) has fewer than two characters"),
])
def test_an_empty_or_one_line_text_or_one_without_enough_to_hold_out_is_refused(tmp_path, capsys, no_training,
                                                                                 data, words):
    corpus = tmp_path / "text.txt"
    corpus.write_bytes(data)
    assert words in refused(["--corpus", str(corpus), "--out", str(tmp_path / "out")], capsys)


def test_a_folder_or_an_unreadable_file_is_refused(tmp_path, capsys, no_training, monkeypatch):
    assert "is a folder" in refused(["--corpus", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    corpus = tmp_path / "locked.txt"
    corpus.write_text("two\nlines\n")

    def locked(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", locked)  # root reads through any mode bits
    assert f"cannot read {corpus}: Permission denied" in refused(["--corpus", str(corpus), "--out",
                                                                  str(tmp_path / "out")], capsys)


@needs_licence
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_text_too_short_for_one_batch_is_refused_and_told_the_sequence_length_that_fits(tmp_path, capsys,
                                                                                          no_training, cell):
    corpus = tmp_path / "short.txt"
    corpus.write_bytes(LICENCE.read_bytes()[:3000].rsplit(b"\n", 1)[0] + b"\n")
    err = refused(["--corpus", str(corpus), "--cell", cell, "--out", str(tmp_path / "out")], capsys)
    assert "too short to train on" in err and "64 streams of 100 characters" in err
    fits = int(err.split("--seq-length ")[1].split()[0])
    lines = read_corpus(corpus)
    ids = encode("\n".join(lines[:-held_out_lines(len(lines))]), build_vocab(lines))
    # At that length every window offset (a seed draws one below the sequence length) gives a batch; one more, not.
    assert all(next(stream_batches(ids, 64, fits, seed), None) is not None for seed in range(300))
    assert any(next(stream_batches(ids, 64, fits + 1, seed), None) is None for seed in range(300))


def test_a_missing_text_is_refused(tmp_path, capsys, no_training):
    assert "no such file" in refused(["--corpus", str(tmp_path / "nowhere.txt"), "--out", str(tmp_path / "o")], capsys)


@needs_licence
def test_an_out_folder_holding_a_model_of_another_corpus_or_kind_is_left_alone(tmp_path, capsys, no_training):
    out = tmp_path / "out"
    out.mkdir()
    card = {"model": "GRULM", "corpus": {"path": "other.txt", "sha256": "0" * 64}, "vocab": [], "hparams": {}}
    (out / "model_card.json").write_text(json.dumps(card))
    (out / "grulm.weights.h5").write_bytes(b"weights of the other model")
    before = folder_state(out)
    assert "holds a model of another corpus (other.txt" in refused(["--corpus", str(LICENCE), "--out", str(out)], capsys)
    assert folder_state(out) == before

    card["corpus"]["sha256"] = sha256_file(LICENCE)
    (out / "model_card.json").write_text(json.dumps(card))
    before = folder_state(out)
    err = refused(["--corpus", str(LICENCE), "--cell", "lstm", "--out", str(out)], capsys)
    assert "holds a model of kind GRULM" in err and "LSTMLM" in err
    assert folder_state(out) == before

    (out / "model_card.json").write_text("{not json")
    before = folder_state(out)
    assert "cannot be read" in refused(["--corpus", str(LICENCE), "--out", str(out)], capsys)
    assert folder_state(out) == before

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is a file, not a folder" in refused(["--corpus", str(LICENCE), "--out", str(a_file)], capsys)
    assert a_file.read_text() == "x"


def test_a_course_corpus_run_refuses_an_out_folder_holding_another_kind(tmp_path, capsys, no_training):
    """The course's text, an LSTM, and a folder where the course's GRU was written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_card.json").write_text((MODEL_DIR / "model_card.json").read_text())
    before = folder_state(out)
    assert "holds a model of kind GRULM" in refused(["--cell", "lstm", "--out", str(out)], capsys)
    assert folder_state(out) == before


def names_of_model_dir(tmp_path: Path) -> list[Path]:
    """model/ and a folder inside it, by several names: plain, with .., through a link."""
    link = tmp_path / "link-to-model"
    link.symlink_to(MODEL_DIR, target_is_directory=True)
    return [MODEL_DIR, MODEL_DIR / ".." / MODEL_DIR.name, link, MODEL_DIR / "sub", link / "sub"]


@needs_licence
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_course_model_folder_is_not_overwritten_by_another_corpus(tmp_path, capsys, no_training, cell):
    before = folder_state(MODEL_DIR)
    for name in names_of_model_dir(tmp_path):
        with pytest.raises(SystemExit):
            main(["train", "--corpus", str(LICENCE), "--cell", cell, "--out", str(name)])
        assert "not model/" in capsys.readouterr().err
        for trainer, kwargs in ((train.train, {}), (train_keras.train, {"cell": cell})):
            with pytest.raises(OutputError, match="not model/"):
                trainer(COURSE, out_dir=name, corpus=LICENCE, **kwargs)
    with pytest.raises(SystemExit):
        main(["train", "--smoke", "--out", str(MODEL_DIR / ".." / MODEL_DIR.name)])
    assert "not model/" in capsys.readouterr().err
    assert folder_state(MODEL_DIR) == before and not (MODEL_DIR / "sub").exists()


def test_an_out_folder_that_cannot_be_made_or_holds_the_text_is_refused(tmp_path, capsys, no_training):
    corpus = tmp_path / "text.txt"
    corpus.write_text("a first line of text\n" * 400 + "held out\n")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    assert "is a link to nothing" in refused(["--corpus", str(corpus), "--out", str(dangling)], capsys)
    under_a_file = tmp_path / "a-file"
    under_a_file.write_text("x")
    assert f"{under_a_file} is not a folder" in refused(["--corpus", str(corpus), "--out", str(under_a_file / "sub")],
                                                        capsys)
    inside = tmp_path / "run"
    inside.mkdir()
    (inside / "samples.md").write_text("a first line of text\n" * 400 + "held out\n")
    assert "is one of the files the run writes" in refused(["--corpus", str(inside / "samples.md"), "--out",
                                                            str(inside), "--seq-length", "5"], capsys)
    fifo_card = tmp_path / "fifo-card"
    fifo_card.mkdir()
    os.mkfifo(fifo_card / "model_card.json")  # reading it would wait forever
    assert "cannot be read" in refused(["--corpus", str(corpus), "--out", str(fifo_card), "--seq-length", "5"], capsys)
    deep = tmp_path / "deep-card"
    deep.mkdir()
    (deep / "model_card.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "cannot be read" in refused(["--corpus", str(corpus), "--out", str(deep), "--seq-length", "5"], capsys)


def test_what_is_not_a_regular_text_file_is_refused(tmp_path, capsys, no_training):
    out = str(tmp_path / "out")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(["--corpus", str(fifo), "--out", out], capsys)
    assert "not a regular file" in refused(["--corpus", "/dev/null", "--out", out], capsys)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert "link to nothing (or a loop" in refused(["--corpus", str(loop), "--out", out], capsys)
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"plain text\n" * 3 + b"and then\x00binary\n" + b"more\n" * 2000)
    assert "NUL character at line 4, character 9" in refused(["--corpus", str(nul), "--out", out], capsys)
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffFirst line\nsecond\n".encode("utf-8"))
    assert read_corpus(bom) == ["First line", "second"]


@pytest.mark.parametrize("flags", [["--units", "64"], ["--embedding", "32"], ["--seq-length", "50"], ["--cell", "lstm"]])
def test_the_course_text_with_other_sizes_or_cell_does_not_write_model(capsys, no_training, flags):
    before = folder_state(MODEL_DIR)
    with pytest.raises(SystemExit):
        main(["train", *flags, "--out", str(MODEL_DIR)])
    assert "not model/" in capsys.readouterr().err
    with pytest.raises(OutputError, match="not model/"):
        train.train(replace(COURSE, rnn_units=64))  # the course's folder, by default
    assert folder_state(MODEL_DIR) == before


def test_the_course_runs_keep_their_checkpoint_names(tmp_path):
    """Course runs resume from checkpoints named as before; any other run gets a name of its own."""
    assert corpus_run(None, None, "GRULM", COURSE)[4] == ()
    assert corpus_run(None, tmp_path / "lstm", "LSTMLM", COURSE)[4] == ("LSTMLM",)
    if LICENCE is not None:
        assert corpus_run(LICENCE, tmp_path / "g", "GRULM", COURSE)[4] != corpus_run(LICENCE, tmp_path / "l", "LSTMLM",
                                                                                    COURSE)[4]


@pytest.mark.parametrize("flags", [["--corpus", "x.txt"], ["--cell", "lstm"], ["--units", "64"],
                                   ["--embedding", "32"], ["--seq-length", "50"]])
def test_anything_but_the_course_recipe_needs_an_out_folder(capsys, no_training, flags):
    with pytest.raises(SystemExit) as stop:
        main(["train", *flags])
    assert stop.value.code == 2 and "give --out DIR" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--units", "--embedding", "--seq-length", "--epochs"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_sizes_must_be_whole_numbers_above_zero(capsys, no_training, flag, value):
    with pytest.raises(SystemExit):
        main(["train", flag, value, "--out", "nowhere"])
    assert f"argument {flag}" in capsys.readouterr().err


def test_the_samplers_lstm_step_is_keras_lstm():
    """The compiled sampler's LSTM step gives, character after character, the Keras model's log probabilities."""
    model = build_charlm(12, replace(COURSE, embedding_dim=5, rnn_units=7), cell="lstm")
    for layer in (model.lstm, model.dense):  # biases too: every term of the gates counts
        layer.set_weights([np.random.default_rng(1).normal(0, 0.5, w.shape) for w in layer.get_weights()])
    assert_sampler_follows_keras(model, [3, 7, 2, 11, 5, 5, 9, 4])


def assert_sampler_follows_keras(model, ids: list[int]) -> None:
    keras_log_probs = model(np.array([ids]))[0].numpy()
    embedding, kernel, recurrent_kernel, bias, dense_kernel, dense_bias = sample.model_weights(model)
    units = recurrent_kernel.shape[0]
    state = tf.zeros((1, 2 * units))
    for t, i in enumerate(ids):
        state = sample._lstm_step(tf.matmul(embedding[i:i + 1], kernel) + bias, state, recurrent_kernel)
        ours = sample._next_log_probs(state[:, :units], dense_kernel, dense_bias)[0].numpy()
        np.testing.assert_allclose(ours[2:], keras_log_probs[t, 2:], atol=2e-5)
        assert np.isneginf(ours[:2]).all()  # '[UNK]' and '' never come out


# ------------------------------------------------------------------ runs

def held_out(corpus: Path) -> list[str]:
    lines = read_corpus(corpus)
    return lines[-held_out_lines(len(lines)):]


def check_run(out: Path, corpus: Path, model_name: str, epochs: int) -> dict:
    """What every run on a text of one's own leaves: the course's files, for that text."""
    card = json.loads((out / "model_card.json").read_text())
    lines = read_corpus(corpus)
    assert card["model"] == model_name and card["epochs"] == epochs and len(card["history"]) == epochs
    assert card["corpus"]["path"] == str(corpus.resolve()) and card["corpus"]["sha256"] == sha256_file(corpus)
    assert card["vocab"] == build_vocab(lines) and "\t" not in card["vocab"]  # the licence has no tab; Shakespeare has
    assert card["corpus"]["eval_lines"] == held_out_lines(len(lines)) < 1000
    assert card["corpus"]["train_lines"] == len(lines) - held_out_lines(len(lines))
    assert (card["hparams"]["rnn_units"], card["hparams"]["embedding_dim"], card["hparams"]["seq_length"]) == (16, 8, 20)
    assert (out / f"{model_name.lower()}.weights.h5").is_file() and (out / "learning_curve.png").stat().st_size > 1000
    samples = (out / "samples.md").read_text()
    prompt = held_out(corpus)[0][:24]
    assert repr(prompt) in samples and SAMPLE_PROMPT not in samples
    assert [f"## Epoch {n}" in samples for n in range(1, epochs + 1)] == [True] * epochs
    assert "[UNK]" not in samples
    return card


@needs_licence
@pytest.mark.slow
def test_a_gru_trains_on_a_licence_text_resumes_and_its_folder_generates(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    out = tmp_path / "gru"
    assert main(["train", "--corpus", str(LICENCE), "--out", str(out), "--epochs", "1", *SIZES]) == 0
    first = check_run(out, LICENCE, "GRULM", 1)
    printed = capsys.readouterr().out
    assert "epoch 1: train loss" in printed and "T=0.2" in printed and "T=1.2" in printed

    assert main(["train", "--corpus", str(LICENCE), "--out", str(out), "--epochs", "2", *SIZES]) == 0
    card = check_run(out, LICENCE, "GRULM", 2)
    assert "Resuming from" in capsys.readouterr().out
    assert card["history"][0] == first["history"][0]
    assert card["history"][1]["train_loss"] < card["history"][0]["train_loss"]

    model, vocab, loaded_card = load_model_dir(out)
    assert vocab == card["vocab"]
    log_ppx = train.evaluate_log_perplexity(model, held_out(LICENCE), vocab)
    assert log_ppx == pytest.approx(card["final"]["eval_log_perplexity"], abs=1e-4)
    texts = sample.generate_many(model, vocab, ["GNU", "the Program"], 40, temperature=1.0, seed=2)
    assert [t[:3] for t in texts] == ["GNU", "the"] and all(len(t) > 40 and "[UNK]" not in t for t in texts)

    another = tmp_path / "another.txt"
    another.write_text(LICENCE.read_text() + "\nOne more line.\n")
    assert main(["train", "--corpus", str(another), "--out", str(out), "--epochs", "1", *SIZES]) == 2
    assert "another corpus" in capsys.readouterr().err


@needs_licence
@pytest.mark.slow
def test_an_lstm_trains_with_plain_keras_and_generates_and_exports_what_keras_computes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_keras, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    out = tmp_path / "lstm"
    assert main(["train", "--corpus", str(LICENCE), "--cell", "lstm", "--out", str(out), "--epochs", "1", *SIZES]) == 0
    first = check_run(out, LICENCE, "LSTMLM", 1)
    assert "T=0.5" in capsys.readouterr().out
    assert main(["train", "--corpus", str(LICENCE), "--cell", "lstm", "--out", str(out), "--epochs", "2", *SIZES]) == 0
    card = check_run(out, LICENCE, "LSTMLM", 2)
    assert "Resuming from" in capsys.readouterr().out and card["history"][0] == first["history"][0]
    assert "Keras" in card["training"]["method"] and "stateful LSTM" in card["training"]["method"]

    model, vocab, _ = load_model_dir(out)
    assert model.cell_kind == "lstm" and not hasattr(model, "gru")
    text = held_out(LICENCE)[1][:30]
    ids = [vocab.index(ch) for ch in text]
    assert_sampler_follows_keras(model, ids)
    keras_log_probs = model(np.array([ids]))[0].numpy()

    prompts = ["GNU", "the Program", "T"]
    texts = sample.generate_many(model, vocab, prompts, 50, temperature=0.8, seed=7)
    assert all(t.startswith(p) and len(t) == len(p) + 50 and "[UNK]" not in t for p, t in zip(prompts, texts))
    assert texts[0] == sample.generate(model, vocab, prompts[0], 50, temperature=0.8, seed=7)[0]

    assert main(["export", "--model", str(out), "--out", str(tmp_path / "export")]) == 0
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    exported = served(prompts=tf.constant(prompts), length=tf.constant(50), temperature=tf.constant(0.8),
                      seed=tf.constant(7, tf.int64))["texts"]
    assert [t.decode() for t in exported.numpy().tolist()] == texts
    from deepngrams.lm.export import load_keras
    reloaded = load_keras(tmp_path / "export" / "lstmlm.keras")
    np.testing.assert_allclose(reloaded(np.array([ids]))[0].numpy(), keras_log_probs, atol=1e-6)


def test_a_file_hashed_again_once_it_changes(tmp_path, monkeypatch):
    """A run asks for its corpus's sha256 several times and gets it computed once; a file rewritten
    since (the same size, its modification time put back as `cp -p` does) is hashed anew, and so
    is one changed in the last seconds, whose times may not have moved yet."""
    from deepngrams.lm import run_record
    hashed = []
    monkeypatch.setattr(run_record, "sha256_of", lambda path: (hashed.append(path), sha256_of(path))[1])
    text = tmp_path / "text.txt"
    text.write_bytes(b"first version\n")
    assert sha256_file(text) == sha256_file(text) == hashlib.sha256(b"first version\n").hexdigest()
    assert len(hashed) == 2  # just written: hashed each time
    monkeypatch.setattr(run_record, "RECENT_NS", 0)
    long_ago = 10**18
    os.utime(text, ns=(long_ago, long_ago))
    assert sha256_file(text) == sha256_file(text) and len(hashed) == 3  # as it was: hashed once
    text.write_bytes(b"other version\n")
    os.utime(text, ns=(long_ago, long_ago))
    assert sha256_file(text) == hashlib.sha256(b"other version\n").hexdigest()
