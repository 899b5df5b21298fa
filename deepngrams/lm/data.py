"""The corpus as the course sees it: lines, the train/eval split and the vocabulary."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np

from deepngrams.config import CORPUS_PATH, EVAL_LINES, MAX_CORPUS_BYTES, UNK_ID


def load_lines(path: Path = CORPUS_PATH) -> list[str]:
    """The corpus lines, stripped, empty lines skipped (the file has none, but be safe)."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"corpus not found: {path}\nRebuild it with `python -m deepngrams corpus`.")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def split_lines(lines: list[str], eval_lines: int = EVAL_LINES) -> tuple[list[str], list[str]]:
    """The last `eval_lines` lines are held out for evaluation; the rest are for training."""
    return lines[:-eval_lines], lines[-eval_lines:]


def build_vocab(lines: list[str]) -> list[str]:
    """'[UNK]' (id 0), '' (id 1, padding), then every character of the text, sorted."""
    return ["[UNK]", ""] + sorted(set("\n".join(lines)))


def eval_text(lines: list[str]) -> str:
    """The held-out lines as one text: evaluation reads them as a single long sequence."""
    return "\n".join(split_lines(lines)[1])


def training_data(max_lines: int | None = None,
                  corpus: Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """(vocabulary, training lines, eval lines); `max_lines` keeps a slice, for smoke runs.

    Without `corpus`, the course's; with it, that text read the course's way (see `read_corpus`).
    """
    if corpus is None:
        lines = load_lines()
        train_lines, eval_lines = split_lines(lines)
    else:
        lines = read_corpus(corpus)
        train_lines, eval_lines = split_lines(lines, held_out_lines(len(lines)))
    if max_lines:
        train_lines, eval_lines = train_lines[:max_lines], eval_lines[: max(10, max_lines // 100)]
    return build_vocab(lines), train_lines, eval_lines


class CorpusError(ValueError):
    """A text given to train on cannot be used as it is."""


def held_out_lines(count: int) -> int:
    """How many last lines of a text of `count` lines are held out: the course's 1000, but never more
    than a tenth of the text (at least one line)."""
    return max(1, min(EVAL_LINES, count // 10))


def read_corpus(path: Path) -> list[str]:
    """The lines of a UTF-8 text to train on, split and stripped as the course reads its corpus
    (universal newlines, empty lines skipped).

    Refuses what cannot be trained on, saying where and what to do: a missing or unreadable file,
    bytes that are not UTF-8 (the line and character named), a text with fewer than two lines (one
    to train on, one to hold out).
    """
    path = Path(path)
    if path.is_dir():
        raise CorpusError(f"{path} is a folder: give --corpus the path of a UTF-8 text file.")
    if path.is_symlink() and not path.exists():
        raise CorpusError(f"{path} is a link to nothing (or a loop of links): give --corpus the path of a UTF-8 text file.")
    if not path.exists():
        raise CorpusError(f"{path}: no such file. Give --corpus the path of a UTF-8 text file.")
    if not path.is_file():
        raise CorpusError(f"{path} is not a regular file (a device, a pipe or a socket): give --corpus the path of a "
                          "UTF-8 text file.")
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise CorpusError(f"{path} is larger than {MAX_CORPUS_BYTES // 2**30} GiB, more than a character model is "
                          "trained on here: give a part of it.")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror}.") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the text
    except UnicodeDecodeError as e:
        before = data[:e.start].decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin1"
        raise CorpusError(
            f"{path} is not UTF-8 text: byte 0x{data[e.start]:02x} at line {len(before)}, character "
            f"{len(before[-1]) + 1} ({e.reason}; offset {e.start} in the file, counting from 0). Convert the file "
            f"to UTF-8 first, e.g. iconv -f {encoding} -t utf-8 {path} > text.utf8"
            + (" (it starts with UTF-16's byte-order mark)." if encoding == "utf-16" else " (name its real encoding)."))
    raw = io.StringIO(text, newline=None).read().split("\n")  # universal newlines, as open() reads the course's
    for number, line in enumerate(raw, start=1):
        if "\x00" in line:  # TensorFlow's string lookup would take it for the padding ''
            raise CorpusError(f"{path} holds a NUL character at line {number}, character {line.index(chr(0)) + 1}: "
                              "that is binary data, not text. Give a text file.")
    lines = [line.strip() for line in raw if line.strip()]
    if not lines:
        raise CorpusError(f"{path} is empty: it holds no text to learn from (only blank lines or nothing).")
    if len(lines) < 2:
        raise CorpusError(f"{path} has a single line of text: training needs at least two, the last ones being "
                          "held out to measure the model on text it has not seen.")
    return lines


def check_long_enough(train_lines: list[str], eval_lines: list[str], batch_size: int, seq_length: int,
                      source: Path | str) -> None:
    """Refuse a text too short to train on: one batch takes `batch_size` streams of `seq_length` characters,
    read from an offset of up to one more sequence (see stream_batches); the held-out part needs two
    characters, one to read and one to predict."""
    have = len("\n".join(train_lines))
    need = (batch_size + 1) * seq_length
    if have < need:
        fitting = have // (batch_size + 1)
        raise CorpusError(
            f"{source} is too short to train on: its training part (all but the held-out last lines) has "
            f"{have:,} characters, and one batch of {batch_size} streams of {seq_length} characters, read from "
            f"an offset of up to one more sequence, needs {need:,}. Give a longer text"
            + (f", or shorter sequences (--seq-length {fitting} fits)." if fitting >= 2 else "."))
    if len("\n".join(eval_lines)) < 2:
        raise CorpusError(f"{source}: its held-out part (the last line{'s' if len(eval_lines) > 1 else ''}) has fewer "
                          "than two characters, too few to measure the model on: give a longer text.")


def sample_prompt(eval_lines: list[str], length: int = 24) -> str:
    """A prompt for the samples written while training on a text of one's own: the start of its first
    held-out line, so every character is one the model knows and the text is the corpus's kind."""
    return eval_lines[0][:length]


def encode(text: str, vocab: list[str]) -> np.ndarray:
    """Character ids, as line_to_tensor gives them: each character's index in `vocab` from id 2 on (the
    last, if it is there twice), '[UNK]' for any other. Looked up in an array indexed by code point: the
    texts are whole corpora, and the grader's cases, drawn and judged many times per submission."""
    singles = {ord(c): i for i, c in enumerate(vocab) if i >= 2 and len(c) == 1}
    table = np.full(max(singles, default=0) + 2, UNK_ID, dtype=np.int64)  # the last slot: any higher code point
    table[list(singles)] = list(singles.values())
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    return table[np.minimum(codes, len(table) - 1)]


def stream_batches(ids: np.ndarray, batch_size: int, seq_length: int,
                   seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) windows of `batch_size` parallel streams of the text, in reading order.

    Row i of each batch continues row i of the batch before, so a trainer can carry the GRU
    state across batches and learn to read past one window, as the evaluation does. A seeded
    offset (less than one window) moves the window boundaries from epoch to epoch.
    """
    offset = int(np.random.default_rng(seed).integers(seq_length))
    steps = (len(ids) - offset - 1) // (batch_size * seq_length)
    span = steps * seq_length
    inputs = ids[offset:offset + batch_size * span].reshape(batch_size, span)
    targets = ids[offset + 1:offset + 1 + batch_size * span].reshape(batch_size, span)
    for start in range(0, span, seq_length):
        yield inputs[:, start:start + seq_length], targets[:, start:start + seq_length]
