"""The line_to_tensor exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

from deepngrams.grading.exercises.common import char_ids, is_int, raised, unquotable


# graded cell -> (probe, hidden)
CELLS = {"test_line_to_tensor": ("line_to_tensor", False), "test_line_to_tensor_hidden": ("line_to_tensor", True)}


UNKNOWN_CHARS = "\u00e9\u00df\u00e6\u0436\u20ac\u2713\U0001F600"  # never in the vocabulary


def cases_line_to_tensor(rng, vocab, lines, hidden: bool):
    alphabet = vocab[2:]
    chars = alphabet + list(UNKNOWN_CHARS)
    if hidden:
        drawn = [list(rng.choice(chars, size=n)) for n in (1, 7, 60)]
        drawn[-1][int(rng.integers(60))] = UNKNOWN_CHARS[int(rng.integers(len(UNKNOWN_CHARS)))]  # at least one
        cases = [({"line": "".join(line), "vocab": vocab},
                  "a line with characters outside the vocabulary (they map to id 0)") for line in drawn]
        pair = ["".join(rng.choice(alphabet, size=int(rng.integers(2, 9)))) for _ in range(2)]
        cases.append(({"line": pair, "vocab": vocab}, "a list of lines (one row of ids per line)"))
    else:
        picked = [lines[int(i)] for i in rng.choice(len(lines), size=3, replace=False)]
        cases = [({"line": line[:80], "vocab": vocab}, "a line of the corpus") for line in picked]
        mixed = "".join(rng.choice(chars, size=12)) + UNKNOWN_CHARS[int(rng.integers(len(UNKNOWN_CHARS)))]
        cases.append(({"line": mixed, "vocab": vocab}, "a line with characters outside the vocabulary "
                                                       "(they map to id 0)"))
        letters = list(rng.choice(list("abcdefghijklmnop"), size=4, replace=False))
        small = ["[UNK]", "", " "] + letters[:3]
        line = "".join(rng.choice(letters[:3] + [" ", letters[3]], size=9))
        cases.append(({"line": line, "vocab": small}, "another vocabulary (ids are positions in the vocab "
                                                       "argument, not in the course's)"))
        cases.append(({"line": picked, "vocab": vocab}, "a list of lines (one row of ids per line)"))
        cases.append(({"line": [mixed, *picked[:1]], "vocab": vocab, "tensor": True},
                      "a tf.string tensor of lines, as GenerativeModel passes them (one row of ids per line)"))
    inputs = [c for c, _ in cases]
    expected = [{"ids": [char_ids(x, c["vocab"]) for x in c["line"]] if isinstance(c["line"], list)
                 else char_ids(c["line"], c["vocab"]), "about": about} for c, about in cases]
    return inputs, expected


def judge(check, observations):
    fails = []
    for i, (case, want, o) in enumerate(zip(check["inputs"]["cases"], check["expected"], observations), 1):
        label = f"line_to_tensor, case {i} ({want['about']})"
        if "error" in o:
            fails.append(f"{label}: {raised(o, unquotable(check))}")
        elif not o.get("tensor") or not is_int(o):
            fails.append(f"{label}: expected an int64 tensor, got {o.get('kind')} of {o.get('dtype')}")
        elif o.get("dtype") != "int64":
            fails.append(f"{label}: the ids should be int64, got {o.get('dtype')}")
        elif isinstance(case["line"], list):
            if o.get("value") != want["ids"] or not o.get("ragged"):
                fails.append(f"{label}: the rows of ids are not the expected ones")
        elif o.get("value") != want["ids"]:
            fails.append(f"{label}: the ids are not the expected ones")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_line_to_tensor(rng, vocab, lines, hidden)
