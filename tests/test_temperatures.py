"""Temperature sweeps: one prompt's text at several temperatures, laid out side by side, and where a run keeps them."""
from __future__ import annotations

import unicodedata

import pytest
import tensorflow as tf

from deepngrams.__main__ import main
from deepngrams.config import SAMPLE_PROMPT, SAMPLE_TEMPERATURES
from deepngrams.lm import generate as sample
from deepngrams.lm.data import load_lines, training_data
from deepngrams.lm.run_record import record_samples, samples_path
from test_generate_batch import VOCAB, tiny_model, write_model_dir

PROMPT = "All:\t"
# Characters sampled after PROMPT. XLA compiles the generator anew for each length and prompt length
# it meets (about half a second a program): every sample here, the command line's too, shares one.
LENGTH = 40


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=2)


# ------------------------------------------------------------------ the layout

def test_columns_sit_under_their_headings_and_wrap_whole_words():
    table = sample.side_by_side(["hello world", "a\tb\nc"], ["T=0.2", "T=1.0"], width=23)  # two columns of 10
    assert table.split("\n") == [
        "T=0.2      | T=1.0",
        "-----------+-----------",
        "hello      | a\\tb",
        "world      | c",
    ]


def test_wrapping_keeps_every_character_and_breaks_after_spaces():
    text = "But soft! what light through yonder window breaks? It is the east, and Juliet is the sun!"
    rows = sample._wrap(text, 12)
    assert "".join(rows) == text
    assert all(len(row) <= 12 for row in rows)
    assert all(row.endswith(" ") for row in rows[:-1])  # no word is cut: each is shorter than a row
    # Greedy: the next row's first word, with the space after it, would not have fitted on the row before.
    for row, after in zip(rows, rows[1:]):
        word = after.split(" ")[0]
        assert len(row) + len(word) + (after != word) > 12


def test_a_word_longer_than_the_column_is_cut_where_the_row_ends():
    assert sample._wrap("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert sample._wrap("to " + "b" * 12, 10) == ["to ", "b" * 10, "bb"]
    table = sample.side_by_side(["x", "Honorificabilitudinitatibus!"], ["T=0.5", "T=1.2"], width=23)
    assert table.split("\n")[2:] == ["x          | Honorifica", "           | bilitudini", "           | tatibus!"]


def test_each_newline_of_a_sample_starts_a_row_of_its_column():
    assert sample._wrap("to be\n\nor not\n", 10) == ["to be", "", "or not", ""]
    table = sample.side_by_side(["ROMEO\tAy.\nJULIET\tNo", "one line"], ["a", "b"], width=23)
    assert table.split("\n")[2:] == ["ROMEO\\tAy. | one line", "JULIET\\tNo |"]


def test_control_and_invisible_characters_are_shown_as_escapes_never_split():
    written = "a\tb\x1b[2Jc\rd\x07e\x7f\x85\u202ef\u200bg\u2028h\x00"
    shown = "a\\tb\\x1b[2Jc\\rd\\x07e\\x7f\\x85\\u202ef\\u200bg\\u2028h\\x00"
    assert "".join(sample._wrap(written, 12)) == shown
    table = sample.side_by_side([written, "x"], ["T=1.0", "T=0.0"], width=30)
    assert all(ch in "\n " or unicodedata.category(ch)[0] not in "CZ" for ch in table)
    assert sample._wrap("abcdefghi\t", 10) == ["abcdefghi", "\\t"]  # the escape moves whole to the next row


def test_characters_the_model_writes_pass_as_written_and_wide_ones_count_two_columns():
    assert sample._wrap("Æsop's \\ café", 20) == ["Æsop's \\ café"]
    assert sample._wrap("e\u0301" * 10, 10) == ["e\u0301" * 10]  # a combining accent takes no column
    table = sample.side_by_side(["a", "日本語日本語x", "b\nc"], ["1", "2", "3"], width=36)
    assert table.split("\n")[2:] == ["a          | 日本語日本 | b",
                                     "           | 語x        | c"]


def test_the_table_fits_its_width_and_many_columns_keep_a_readable_width():
    texts = [("to be or not to be, that is the question " * 4)[k:] for k in range(4)]
    table = sample.side_by_side(texts, ["T=0.2", "T=0.5", "T=1.0", "T=1.2"])
    assert max(len(line) for line in table.split("\n")) <= sample.TABLE_WIDTH
    assert table.split("\n")[1].count("+") == 3
    many = sample.side_by_side(["word " * 5] * 12, [f"T={k}" for k in range(12)])
    assert many.split("\n")[1] == "-+-".join(["-" * sample.MIN_COLUMN_WIDTH] * 12)
    with pytest.raises(ValueError, match="one heading a text"):
        sample.side_by_side(["a", "b"], ["T=1.0"])


def test_the_temperature_table_shows_the_prompt_once_and_what_followed_it():
    table = sample.temperature_table("ROMEO\t", [0.2, 1], ["ROMEO\tAy.", "ROMEO\tNo, sir."], seed=3)
    caption, heading, _, row = table.split("\n")
    assert caption == "prompt 'ROMEO\\t', seed 3:"
    assert heading.split() == ["T=0.2", "|", "T=1.0"]
    assert [part.rstrip() for part in row.split(" | ")] == ["Ay.", "No, sir."]


# ------------------------------------------------------------------ the samples

def test_each_temperature_writes_what_generate_writes_at_it_with_the_seed(model):
    temperatures = [0.0, 0.5, 1.0, 1.5]
    texts = sample.generate_at_temperatures(model, VOCAB, PROMPT, LENGTH, temperatures, seed=7)
    for temperature, text in zip(temperatures, texts, strict=True):
        assert text == sample.generate(model, VOCAB, PROMPT, LENGTH, temperature=temperature, seed=7)[0]
    assert len(set(texts)) > 1
    assert sample.generate_at_temperatures(model, VOCAB, PROMPT, LENGTH, temperatures, seed=8)[3] != texts[3]


def test_temperature_zero_writes_the_greedy_text(model):
    greedy, sampled = sample.generate_at_temperatures(model, VOCAB, PROMPT, LENGTH, [0.0, 1.0], seed=1)
    assert greedy != sampled
    assert sample.generate_at_temperatures(model, VOCAB, PROMPT, LENGTH, [0.0], seed=2) == [greedy]  # no randomness
    ids = [VOCAB.index(ch) for ch in greedy]
    log_probs = tf.nn.log_softmax(model(tf.constant([ids[:-1]]))[0]).numpy()
    for position in range(len(PROMPT) - 1, len(greedy) - 1):  # each written character is the most likely one
        allowed = log_probs[position, 2:]  # '[UNK]' and '' are never written
        assert log_probs[position, ids[position + 1]] >= allowed.max() - 1e-4


def test_a_sweep_without_temperatures_or_with_a_bad_one_is_refused(model):
    with pytest.raises(ValueError, match="at least one temperature"):
        sample.generate_at_temperatures(model, VOCAB, PROMPT, 10, [])
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        sample.generate_at_temperatures(model, VOCAB, PROMPT, 10, [0.5, -1.0])


def test_the_training_prompt_starts_a_line_of_the_corpus_with_known_characters():
    vocab = training_data(10)[0]
    sample.check_vocabulary([SAMPLE_PROMPT], vocab)
    assert any(line.startswith(SAMPLE_PROMPT) for line in load_lines())
    assert len(SAMPLE_TEMPERATURES) > 1 and all(t >= 0 for t in SAMPLE_TEMPERATURES)


# ------------------------------------------------------------------ the command line

@pytest.mark.parametrize("args, message", [
    (["--temperatures", "0.2,abc"], "argument --temperatures: 'abc' is not a number"),
    (["--temperatures", ""], "argument --temperatures: give at least one temperature"),
    (["--temperatures", "0.2,,1"], "an empty entry in '0.2,,1'"),
    (["--temperatures", "0.2,-0.5"], "-0.5 is not a temperature: each must be a finite number >= 0"),
    (["--temperatures", "1,inf"], "inf is not a temperature"),
    (["--temperatures", "0.2,1", "--temperature", "0.8"], "not allowed with argument"),
])
def test_bad_temperatures_exit_2_naming_the_problem(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sample, "load_model", lambda model_dir: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit) as stopped:
        main(["generate", *args])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--prompt", "All", "--prompt", "F"], "--temperatures samples one prompt at several temperatures; give one "
                                           "--prompt, not 2"),
    (["--batch", "3"], "--temperatures writes one sample at each temperature; leave out --batch"),
    (["--length", "-4"], "length must be a whole number >= 0"),
])
def test_a_sweep_of_several_prompts_or_samples_exits_2_before_loading(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sample, "load_model", lambda model_dir: pytest.fail("loaded the model"))
    assert main(["generate", "--temperatures", "0.2,1.0", *args]) == 2
    assert f"error: {message}" in capsys.readouterr().err


def _columns(table: str) -> list[str]:
    """Each column's rows read back from a printed table of ASCII text, spaces dropped."""
    lines = table.rstrip("\n").split("\n")
    widths = [len(part) for part in lines[2].split("-+-")]
    starts = [sum(widths[:k]) + 3 * k for k in range(len(widths))]
    return ["".join(line[start:start + width] for line in lines[3:]).replace(" ", "")
            for start, width in zip(starts, widths)]


def test_the_command_line_prints_one_column_per_temperature(model, tmp_path, capsys):
    folder = write_model_dir(model, tmp_path / "tiny")
    assert main(["generate", "--model", str(folder), "--prompt", "All:\\t", "--length", str(LENGTH), "--seed", "4",
                 "--temperatures", "0,0.7,1.5"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n")[0] == "prompt 'All:\\t', seed 4:"
    assert out.split("\n")[1].split() == ["T=0.0", "|", "T=0.7", "|", "T=1.5"]
    for temperature, column in zip([0.0, 0.7, 1.5], _columns(out), strict=True):
        written = sample.generate(model, VOCAB, PROMPT, LENGTH, temperature=temperature, seed=4)[0][len(PROMPT):]
        assert column == written.replace("\t", "\\t").replace("\n", "").replace(" ", "")

    assert main(["generate", "--model", str(folder), "--prompt", "All:\\t", "--temperatures", "--length",
                 str(LENGTH)]) == 0
    heading = capsys.readouterr().out.split("\n")[1]
    assert [h.strip() for h in heading.split(" | ")] == [f"T={float(t)}" for t in SAMPLE_TEMPERATURES]


# ------------------------------------------------------------------ the samples file

def test_the_samples_file_is_in_the_run_folder_or_beside_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "ckpt" / "0123456789ab.npz"
    assert samples_path(tmp_path / "out", checkpoint) == tmp_path / "out" / "samples.md"
    assert samples_path(None, checkpoint) == tmp_path / "ckpt" / "0123456789ab.samples.md"


def test_an_epoch_recorded_again_replaces_its_entry_and_those_after_it(tmp_path):
    path = tmp_path / "samples.md"
    preamble = "# Samples\n\nRun a.\n\n"
    for epoch in (1, 2, 3):
        record_samples(path, preamble, epoch, f"\n    first try of epoch {epoch}\n\n")
    record_samples(path, preamble, 2, "\n    ## Epoch 9 written by the model\n\n")  # a resume redoes epoch 2
    text = path.read_text()
    assert text == (preamble + "## Epoch 1\n\n    first try of epoch 1\n\n"
                    + "## Epoch 2\n\n    ## Epoch 9 written by the model\n\n")
    record_samples(path, preamble, 3, "\n    epoch 3\n\n")
    assert text + "## Epoch 3\n\n    epoch 3\n\n" == path.read_text()
    record_samples(path, "# Samples\n\nRun b.\n\n", 3, "\n    another run\n\n")  # another run's file starts over
    assert path.read_text() == "# Samples\n\nRun b.\n\n## Epoch 3\n\n    another run\n\n"
    assert [p.name for p in tmp_path.iterdir()] == ["samples.md"]  # written whole, no temporary left


def test_a_new_samples_file_is_made_with_its_folder(tmp_path):
    path = tmp_path / "new" / "samples.md"
    record_samples(path, "# S\n\n", 1, "\n    x\n\n")
    assert path.read_text() == "# S\n\n## Epoch 1\n\n    x\n\n"
