"""The create_batch_dataset exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

from collections import Counter

import numpy as np

from deepngrams.grading.exercises.common import char_ids, from_w1_unittest, order_correlation, passage, raised, unquotable

# The visible cell's shuffled case keeps at least this many chunks, so that the test of the order
# (w1_unittest's order_correlation) tells a uniform shuffle from a fixed order or a small buffer, and
# two passes of a real shuffle never come in the same order.
MIN_SHUFFLED_CHUNKS = 150


def kept_chunks(lines: list[str], seq_length: int, batch_size: int) -> int:
    """How many chunks of the joined lines a dataset keeps once it drops the remainders."""
    return len("\n".join(lines)) // (seq_length + 1) // batch_size * batch_size


# graded cell -> (probe, hidden)
CELLS = {"test_create_batch_dataset": ("create_batch_dataset", False),
         "test_create_batch_dataset_hidden": ("create_batch_dataset", True)}


def extra_id_fills_the_batches(lines: list[str], seq_length: int, batch_size: int) -> bool:
    """Whether one id more than the joined lines hold (a newline after the last line) would make whole
    batches, two or more: a dataset built from that text then keeps the chunk that ends in the extra
    id, whatever its shuffle drops, so the mistake shows in every run and every draw."""
    ids = len("\n".join(lines)) + 1
    batch = (seq_length + 1) * batch_size
    return ids % batch == 0 and ids // batch >= 2


def cases_create_batch_dataset(rng, vocab, lines, hidden: bool):
    if hidden:
        letters = list("abcdefgh XYZ")
        seq_length, batch_size = int(rng.integers(4, 8)), int(rng.integers(2, 5))
        random_lines = ["".join(rng.choice(letters, size=int(rng.integers(3, 12)))) for _ in range(40)]
        while not extra_id_fills_the_batches(random_lines, seq_length, batch_size):
            random_lines[int(rng.integers(0, 40))] = "".join(rng.choice(letters, size=int(rng.integers(3, 12))))
        cases = [{"lines": random_lines, "vocab": vocab, "seq_length": seq_length, "batch_size": batch_size}]
    else:
        few = passage(rng, lines, 4)
        while not extra_id_fills_the_batches(few, 10, 4):
            few = passage(rng, lines, 4)
        many = passage(rng, lines, 90)
        while kept_chunks(many, 10, 4) < MIN_SHUFFLED_CHUNKS:
            many = passage(rng, lines, 90)
        cases = [{"lines": few, "vocab": vocab, "seq_length": 10, "batch_size": 4},
                 {"lines": many, "vocab": vocab, "seq_length": 10, "batch_size": 4,
                  "iterations": 2, "shuffled": True},
                 {"lines": passage(rng, lines, 1500), "vocab": vocab}]
    expected = [{"ids": char_ids("\n".join(c["lines"]), vocab), "seq_length": c.get("seq_length", 100),
                 "batch_size": c.get("batch_size", 64)} for c in cases]
    return cases, expected


def spec_fits(spec, batch_size: int, seq_length: int) -> bool:
    """Whether an element_spec (as the probe reports it) is two int64 tensors of shape (batch_size,
    seq_length). A size TensorFlow cannot know (None, from a dataset built another way than the
    notebook's) is no mistake: the batches read say what the sizes are. The first case of each cell
    leaves a short last chunk and a short last batch (`extra_id_fills_the_batches`), so a dataset that
    keeps either fails on what it yields."""
    return isinstance(spec, list) and len(spec) == 2 and all(
        isinstance(s, list) and len(s) == 2 and s[0] == "int64" and isinstance(s[1], list) and len(s[1]) == 2
        and all(size is None or (type(size) is int and size == want)
                for size, want in zip(s[1], (batch_size, seq_length)))
        for s in spec)


def _examples_of_whole_batches(run, B: int, T: int) -> list[tuple] | None:
    """The examples of a run (each chunk as a tuple of seq_length + 1 ids) read in one step when every
    batch is (input, target) of integers of shape (B, T), the target the input shifted by one; else None,
    and the judge reads the run batch by batch to say what is wrong. Only the time to read a run changes."""
    try:
        a = np.asarray(run)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None
    if a.ndim != 4 or a.shape[1:] != (2, B, T) or a.dtype.kind not in "iu" \
            or not np.array_equal(a[:, 0, :, 1:], a[:, 1, :, :-1]):
        return None
    return [tuple(row) for row in np.concatenate([a[:, 0], a[:, 1, :, -1:]], axis=2).reshape(-1, T + 1).tolist()]


def judge(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        T, B, ids = want["seq_length"], want["batch_size"], want["ids"]
        label = "create_batch_dataset (a hidden case)" if check["hidden"] else \
            f"create_batch_dataset(seq_length={T}, batch_size={B})"
        if "error" in o:
            fails.append(f"{label} {raised(o, unquotable(check))}")
            continue
        if not o.get("dataset"):
            fails.append(f"{label}: expected a tf.data.Dataset, got {o.get('kind')}")
            continue
        if not spec_fits(o.get("spec"), B, T):
            fails.append(f"{label}: element_spec should be two int64 tensors of shape (batch_size, seq_length)")
        if len(o.get("runs", [])) != case.get("iterations", 1):
            fails.append(f"{label}: the dataset could not be read {case.get('iterations', 1)} time(s)")
            continue
        size = T + 1
        chunks = [tuple(ids[k * size:(k + 1) * size]) for k in range(len(ids) // size)]
        available = set(chunks)
        runs_seen = []
        for run in o.get("runs", []):
            seen = _examples_of_whole_batches(run, B, T)
            whole = seen is not None
            if not whole:  # read batch by batch, to the first that is wrong
                seen, whole = [], True
                for x, y in run:
                    x, y = np.asarray(x), np.asarray(y)
                    if x.shape != (B, T) or y.shape != (B, T) or not np.array_equal(x[:, 1:], y[:, :-1]):
                        fails.append(f"{label}: each batch is (input, target) of shape (batch_size, seq_length), "
                                     f"the target the input shifted by one")
                        whole = False
                        break
                    seen += [tuple(row) + (int(last),) for row, last in zip(x.tolist(), y[:, -1].tolist())]
            if whole:
                if any(chunk not in available for chunk in seen):
                    fails.append(f"{label}: every example is a chunk of seq_length + 1 ids cut from the start of "
                                 f"the lines joined with '\\n'")
                elif Counter(seen) - Counter(chunks):  # more copies of a chunk than the text holds
                    fails.append(f"{label}: a chunk is used twice")
                elif len(run) != len(chunks) // B:
                    fails.append(f"{label}: the number of batches is wrong (drop the remainders: "
                                 f"drop_remainder=True)")
            runs_seen.append(seen)
        if case.get("shuffled") and runs_seen:
            where: dict = {}
            for k, chunk in enumerate(chunks):
                where.setdefault(chunk, set()).add(k)
            batches = [run[i:i + B] for run in runs_seen for i in range(0, len(run), B)]
            follows = lambda a, b: any(k + 1 in where.get(b, ()) for k in where.get(a, ()))  # noqa: E731
            if all(run == list(chunks[:len(run)]) for run in runs_seen):
                fails.append(f"{label}: the examples are not shuffled")
            elif any(abs(rho) > limit for rho, limit in (order_correlation(run, chunks) for run in runs_seen)):
                fails.append(f"{label}: the examples must be in a random order, not tied to their order in the "
                             f"text: shuffle the chunks with shuffle(BUFFER_SIZE) before batching")
            elif batches and all(all(follows(a, b) for a, b in zip(batch, batch[1:])) for batch in batches):
                fails.append(f"{label}: every batch holds consecutive chunks: shuffle before batching")
            elif len(runs_seen) > 1 and all(run == runs_seen[0] for run in runs_seen[1:]):
                fails.append(f"{label}: the examples come in the same order at every pass over the dataset: "
                             f"{from_w1_unittest()['RESHUFFLE_HINT']}")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_create_batch_dataset(rng, vocab, lines, hidden)
