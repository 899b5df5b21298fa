"""Several prompts in one batch: each prompt's text follows the module's rule, bad input is named."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from deepngrams.config import CARD_PATH, ROOT, WEIGHTS_PATH
from deepngrams.lm import generate as sample
from deepngrams.lm import solution
from deepngrams.lm.data import build_vocab
from deepngrams.lm.fastgru import model_variables

LINES = ["First Citizen:", "Before we proceed any further, hear me speak.", "All:\tSpeak, speak."]
VOCAB = build_vocab(LINES)
LENGTH = 25
# Of different lengths, the last longer than 64 characters (the next prompt width XLA compiles for).
PROMPTS = ["Speak", "F", "Before we proceed", "All:\t" + "speak, " * 10]


def tiny_model(seed: int = 0, vocab: list[str] = VOCAB) -> solution.GRULM:
    """A random GRULM small enough to run in milliseconds."""
    tf.keras.utils.set_random_seed(seed)
    model = solution.GRULM(vocab_size=len(vocab), embedding_dim=16, rnn_units=32)
    model(tf.zeros((1, 1), tf.int64))
    return model


def write_model_dir(model: solution.GRULM, folder: Path, vocab: list[str] = VOCAB) -> Path:
    """`model` as a folder laid out as model/: weights and a model card."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / WEIGHTS_PATH.name)
    hparams = {"embedding_dim": model.embedding.output_dim, "rnn_units": model.gru.units}
    (folder / CARD_PATH.name).write_text(json.dumps({"vocab": vocab, "hparams": hparams}))
    return folder


@pytest.fixture(scope="module")
def model() -> solution.GRULM:
    return tiny_model()


def test_each_prompt_writes_what_it_writes_alone_at_its_row(model):
    """The rule: prompt i writes what row i of generate(prompt_i, batch=n) writes (n > i); the first, its text alone."""
    texts = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=5)
    assert len(texts) == len(PROMPTS)
    for i, (prompt, text) in enumerate(zip(PROMPTS, texts)):
        assert text.startswith(prompt) and len(text) == len(prompt) + LENGTH
        assert text == sample.generate(model, VOCAB, prompt, LENGTH, temperature=1.0, seed=5, batch=len(PROMPTS))[i]
    assert texts[0] == sample.generate(model, VOCAB, PROMPTS[0], LENGTH, temperature=1.0, seed=5)[0]


def test_a_prompt_does_not_depend_on_the_other_prompts(model):
    texts = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=5)
    others = ["All:\tSpeak, speak. " * 6, "F", "s", "hear"]  # other lengths, another prompt width
    changed = sample.generate_many(model, VOCAB, [PROMPTS[0], *others[1:]], LENGTH, temperature=1.0, seed=5)
    assert changed[0] == texts[0]
    swapped = sample.generate_many(model, VOCAB, [others[0], PROMPTS[1], "s", PROMPTS[3]], LENGTH, temperature=1.0,
                                   seed=5)
    assert swapped[1] == texts[1] and swapped[3] == texts[3]


def test_reproducible_for_a_seed_and_a_longer_length_extends_the_text(model):
    a = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=3)
    assert sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=3) == a
    assert sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=4) != a
    shorter = sample.generate_many(model, VOCAB, PROMPTS, 10, temperature=1.0, seed=3)
    assert all(long.startswith(short) for long, short in zip(a, shorter))
    assert sample.generate_many(model, VOCAB, PROMPTS, 0) == PROMPTS


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_never_emits_unknown_or_padding(model, temperature):
    forced = tiny_model()
    bias = model_variables(model)["dense_bias"].numpy().copy()
    bias[:2] = 50.0  # '[UNK]' and '' would take nearly all the probability
    model_variables(forced)["dense_bias"].assign(bias)
    for prompt, text in zip(PROMPTS, sample.generate_many(forced, VOCAB, PROMPTS, LENGTH, temperature=temperature)):
        assert set(text[len(prompt):]) <= set(VOCAB[2:]) and len(text) == len(prompt) + LENGTH


def test_models_of_several_sizes_sample_in_one_process(model):
    """A training run samples its model after tests sampled tiny ones: the shared trace must not fix a size."""
    before = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=6)
    for embedding_dim, rnn_units in [(8, 48), (24, 64)]:
        tf.keras.utils.set_random_seed(1)
        other = solution.GRULM(vocab_size=len(VOCAB), embedding_dim=embedding_dim, rnn_units=rnn_units)
        other(tf.zeros((1, 1), tf.int64))
        texts = sample.generate_many(other, VOCAB, PROMPTS, LENGTH, temperature=0.0)
        assert [text[:len(prompt)] for text, prompt in zip(texts, PROMPTS)] == PROMPTS
        assert all(set(text[len(prompt):]) <= set(VOCAB[2:]) for text, prompt in zip(texts, PROMPTS))
    assert sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=1.0, seed=6) == before


def test_one_compiled_program_serves_every_length_and_prompt_of_a_bucket(model):
    """The program XLA compiles for the sampling loop takes the number of characters and the prompt
    lengths as data: the same program, whatever they are within a bucket (64 here), so a new length
    or prompt costs no new compilation."""
    vocab = tf.constant(VOCAB)

    def program(prompt: str, length: int) -> str:
        ids, _ = sample.char_ids(tf.constant([prompt]), vocab)
        prompt_ids = ids.to_tensor(default_value=sample.PADDING_ID, shape=[1, 64])
        ir = sample._sample_ids.experimental_get_compiler_ir(
            *sample.model_weights(model), prompt_ids, tf.cast(ids.row_lengths(), tf.int32), tf.constant(length),
            tf.constant(0, tf.int64), tf.constant(1.0), tf.zeros([64, 1], tf.int32), "gru")
        return ir(stage="hlo")

    first = program("Speak", 10)
    assert program("Speak", 20) == first
    assert program("Before we proceed", 10) == first


@pytest.mark.slow
def test_greedy_matches_the_course_generator_for_every_prompt(model):
    """At temperature 0 each row is the course's GenerativeModel on that prompt alone: the padding changes nothing."""
    texts = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=0)
    course = solution.GenerativeModel(model, VOCAB, temperature=0)
    assert texts == [course.generate_n_chars(LENGTH, prompt) for prompt in PROMPTS]


@pytest.mark.parametrize("prompts, kwargs, message", [
    ([], {}, "at least one prompt"),
    ("All", {}, "at least one prompt"),
    (["All", "", "F"], {}, "prompt 2 of 3 must be a non-empty string"),
    (["All", "Fi€st"], {}, r"prompt 2 of 2 \('Fi€st'\) has the character '€' \(U\+20AC\) at position 3"),
    (["Ax"], {}, r"the prompt 'Ax' has the character 'x'"),
    (["All", "F"], {"length": -1}, "length must be a whole number >= 0"),
    (["All", "F"], {"temperature": -0.5}, "temperature must be a finite number >= 0"),
    (["All", "F"], {"temperature": float("nan")}, "temperature"),
])
def test_bad_input_is_named(model, prompts, kwargs, message):
    assert "x" not in VOCAB and "€" not in VOCAB
    with pytest.raises(ValueError, match=message):
        sample.generate_many(model, VOCAB, prompts, **({"length": 5} | kwargs))


def test_cli_heads_each_prompt_and_checks_before_loading(model, monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(sample, "load_model", lambda model_dir: loaded.append(model_dir) or (model, VOCAB, {}))
    assert sample.generate_cli(PROMPTS, LENGTH, 0.8, 2, model_dir=Path("elsewhere")) == 0
    expected = sample.generate_many(model, VOCAB, PROMPTS, LENGTH, temperature=0.8, seed=2)
    assert capsys.readouterr().out == "\n".join(f"--- prompt {k} ---\n{text}\n" for k, text in enumerate(expected, 1))
    assert loaded == [Path("elsewhere")]

    assert sample.generate_cli(["All", "F"], LENGTH, 0.8, 2, batch=3) == 2
    assert "--batch gives several samples of one prompt" in capsys.readouterr().err
    assert sample.generate_cli(["All", ""], LENGTH, 0.8, 2) == 2
    assert "prompt 2 of 2 must be a non-empty string" in capsys.readouterr().err
    assert len(loaded) == 1  # bad arguments are refused before the model is loaded

    assert sample.generate_cli(["All", "Fx"], LENGTH, 0.8, 2) == 2
    assert "prompt 2 of 2 ('Fx') has the character 'x'" in capsys.readouterr().err


def test_command_line_reads_prompts_escapes_and_model(monkeypatch):
    from deepngrams.__main__ import main

    calls = []
    monkeypatch.setattr(sample, "generate_cli", lambda *args, **kwargs: calls.append((args, kwargs)) or 0)
    assert main(["generate", "--prompt", "ROMEO\\t", "--prompt", "a\\\\n\\n", "--length", "7", "--model", "m"]) == 0
    assert main(["generate", "--batch", "2"]) == 0
    (args, kwargs), (default_args, _) = calls
    assert args[0] == ["ROMEO\t", "a\\n\n"] and args[1] == 7 and kwargs["model_dir"] == Path("m")
    assert default_args[0] == ["ROMEO\t"] and default_args[4] == 2


def test_a_model_folder_that_cannot_be_used_is_named(tmp_path):
    from deepngrams.lm.weights import WeightsError, load_model_dir

    with pytest.raises(WeightsError, match="no such folder.*train --out DIR"):
        load_model_dir(tmp_path / "missing")
    (tmp_path / CARD_PATH.name).write_text("{}")
    with pytest.raises(WeightsError, match=f"it lacks {WEIGHTS_PATH.name}"):
        load_model_dir(tmp_path)


@pytest.mark.slow
def test_generate_with_model_and_several_prompts_from_the_command_line(model, tmp_path):
    folder = write_model_dir(model, tmp_path / "tiny")
    done = subprocess.run([sys.executable, "-m", "deepngrams", "generate", "--model", str(folder), "--prompt", "All",
                           "--prompt", "Before we\\t", "--length", str(LENGTH), "--temperature", "1.0", "--seed", "9"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr
    expected = sample.generate_many(model, VOCAB, ["All", "Before we\t"], LENGTH, temperature=1.0, seed=9)
    assert done.stdout == f"--- prompt 1 ---\n{expected[0]}\n\n--- prompt 2 ---\n{expected[1]}\n"
