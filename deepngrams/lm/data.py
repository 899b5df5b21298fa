"""The corpus as the course sees it: lines, the train/eval split and the vocabulary."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from deepngrams.config import CORPUS_PATH, EVAL_LINES


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


def training_data(max_lines: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """(vocabulary, training lines, eval lines); `max_lines` keeps a slice, for smoke runs."""
    lines = load_lines()
    train_lines, eval_lines = split_lines(lines)
    if max_lines:
        train_lines, eval_lines = train_lines[:max_lines], eval_lines[: max(10, max_lines // 100)]
    return build_vocab(lines), train_lines, eval_lines


def encode(text: str, vocab: list[str]) -> np.ndarray:
    """Character ids, as line_to_tensor gives them (unknown characters are 0)."""
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.fromiter((index.get(ch, 0) for ch in text), dtype=np.int64, count=len(text))


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
