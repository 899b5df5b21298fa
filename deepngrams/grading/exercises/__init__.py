"""The grader's verdicts: each graded cell's inputs, the expected answers, and the judgement.

One module per exercise holds its graded cells (`CELLS`: cell -> probe, hidden or not), its cases
(`cases`) and its judge (`judge`); its probe, which runs in the sandbox, is `probe_<name>` of
grading/inside/probes.py. Adding an exercise is one module here, one probe there and a line in
EXERCISES.

Only the grader runs this file, outside the sandbox. `draw_cases` draws every graded cell's
inputs from a secret that is new for every student and every submitted file (`secret_for`:
an HMAC of what the notebook's kernel is given (`graded_code`) under the student's own key, itself an HMAC of
the student id (the folder's name) under the course's key; the course's key never leaves the grader's machine, and a worker is
given only the keys of the students it grades), and
computes what a correct solution returns with numpy alone. Only the inputs go into the
sandbox, where the probes (grading/inside/probes.py) call the student's code on them; `judge` compares the
observations with the expected answers here, where student code never runs. So nothing in
the sandbox can compute or look up an answer: the models handed to student code are tables
or random weights drawn for this submission, not the pretrained model, and one student's
feedback is no answer key for anyone else's file.

Messages say which property failed ("padding positions were counted"), never the inputs or
the expected values; for hidden cells, and for every cell after the first hidden one (its inputs have
reached the student's code by then: `unquotable`), an exception is named by its type only.

Sampling is judged statistically. Each sampling case draws `n` ids (or characters) from a
known distribution and fails when some category's frequency is more than `eps` from its
probability. By Hoeffding's inequality a correct sampler fails a case with probability at
most 2 * categories * exp(-2 n eps^2); `eps` is chosen so that this is at most
FALSE_FAILURE_PER_CASE, and the few sampling cases of a notebook together stay under one in
a million gradings (`false_failure_bound`). The wrong temperatures students write (ignored,
multiplied instead of divided, always greedy) move some probability by more than 2 * eps.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from deepngrams import config
from deepngrams.atomic import atomic_path
from deepngrams.config import CARD_PATH, CORPUS_PATH
from deepngrams.grading.cells import is_test_cell, nbgrader_meta, source_text
from deepngrams.grading.exercises import (compile_model, create_batch_dataset, generative_model, grulm, line_to_tensor,
                                          log_perplexity, sampling)
from deepngrams.grading.exercises.common import KNOWN_TYPES, course_files, one_character_all_along, raised, unquotable

# In the notebook's order: a submission's cases are drawn in this order from its secret.
EXERCISES = (line_to_tensor, create_batch_dataset, grulm, compile_model, log_perplexity, sampling, generative_model)
CELLS = {grade_id: (module, probe, hidden) for module in EXERCISES for grade_id, (probe, hidden) in module.CELLS.items()}
JUDGE_OF = {probe: module.judge for module, probe, _ in CELLS.values()}
KEY_BYTES = 32


def new_key() -> bytes:
    """A course's grading key: kept by the grader (never in a sandbox), it seeds every hidden case."""
    return os.urandom(KEY_BYTES)


def grading_key(course: Path) -> bytes:
    """The course's grading key (made on first use, readable by the grader alone): with the student
    id and the notebook's code it seeds every case of a submission (secret_for)."""
    path = course / ".grading" / "hidden-cases.key"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(new_key())
    os.chmod(path, 0o600)
    return path.read_bytes()


def student_key(key: bytes, student: str) -> bytes:
    """One student's key, from the course's: it draws that student's cases and nobody else's, so a
    grading worker gets this, never the course's key."""
    return hmac.new(key, b"student\0" + student.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def secret_from(student_secret: bytes, notebook: bytes) -> int:
    """The seed of one submission's cases, from its student's key (`student_key`) and its notebook's
    code (`graded_code`)."""
    return int.from_bytes(hmac.new(student_secret, hashlib.sha256(notebook).digest(), hashlib.sha256).digest()[:8],
                          "big")


def graded_code(nb) -> bytes:
    """What of a notebook seeds its cases (`secret_from`): what its kernel is given, that is the source
    of each code cell in order, and which of them are graded test cells, by their grade_id (each runs
    as its probe); the notebook reaches the grader with the course's metadata in place
    (NormaliseMetadata). So a file cannot keep its cases and still tell its code something new: moving
    a test cell's metadata to a copy of its source draws other cases. Not its cell ids, other metadata,
    outputs or markdown, which editors and nbgrader's own repairs change with the code unchanged
    (nbformat gives a missing or repeated id a random one, nbgrader puts a deleted test cell back with
    a new one): every door and every grading of a file draw the same cases, and a file whose code
    changed draws others."""
    def given(cell):
        return [str(nbgrader_meta(cell).get("grade_id")), source_text(cell)] if is_test_cell(cell) else source_text(cell)
    return json.dumps([given(cell) for cell in nb["cells"] if cell.get("cell_type") == "code"]).encode()


def secret_for(key: bytes, student: str, notebook: bytes) -> int:
    """The seed of one submission's cases: another student, or another file, gets other cases;
    grading the same file again gets the same ones."""
    return secret_from(student_key(key, student), notebook)


def draw_cases(secret: int, card_path: Path = CARD_PATH, corpus_path: Path = CORPUS_PATH) -> dict:
    """{grade_id: {"probe", "hidden", "inputs", "expected"}} for every graded cell of one submission."""
    course = course_files(str(card_path), str(corpus_path))
    rng = np.random.default_rng(secret)
    drawn: dict = {}
    for grade_id, (module, probe, hidden) in CELLS.items():
        inputs, expected = module.cases(probe, rng, course, hidden)
        drawn[grade_id] = {"probe": probe, "hidden": hidden, "inputs": {"cases": inputs}, "expected": expected}
    return drawn


def false_failure_bound(prepared: dict) -> float:
    """The chance that a correct solution fails some sampling case of one notebook (Hoeffding)."""
    total = 0.0
    for check in prepared.values():
        for case, want in zip(check["inputs"]["cases"], check["expected"]):
            if "eps" in want:
                n = case["rows"] * case.get("steps", 1)
                categories = len(want["p"]) + (1 if "chars" in want else 0)
                total += 2 * categories * math.exp(-2 * n * want["eps"] ** 2)
                if "agree" in want:  # how often two calls on the same rows pick the same id
                    total += 2 * math.exp(-2 * case["rows"] * want["agree_eps"] ** 2)
            elif "top" in want:  # one character n times in a row
                total += one_character_all_along(want["top"], case["n"])
    return total



def judge(check: dict, result: dict | None, after_hidden: bool = False) -> list[str]:
    """Why the observed code fails this check ([] when it passes). `result` came from the sandbox;
    `after_hidden`: the notebook ran a hidden check before this one (`unquotable`)."""
    check = dict(check, after_hidden=True) if after_hidden else check
    if not isinstance(result, dict):
        return ["the cell did not run (an earlier cell stopped the notebook)"]
    if "error" in result:
        return [raised(result, unquotable(check)).replace("raised ", "the check could not run: ", 1)]
    observations = result.get("observations")
    cases = check["inputs"]["cases"]
    if not isinstance(observations, list) or len(observations) != len(cases) \
            or not all(isinstance(o, dict) for o in observations):
        return ["the observations of this cell are malformed"]
    try:
        fails = _merge_repeats(JUDGE_OF[check["probe"]](check, observations))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as e:  # malformed observations (forged ones: numbers too large, nested too deep)
        return [f"the outputs could not be checked ({type(e).__name__})"]
    if fails and unquotable(check):
        quoted = _descriptions(observations)
        chosen = set() if quoted is None else quoted - KNOWN_TYPES - NO_INFORMATION
        # More than a verdict could quote, or a description too short to strike out of its messages
        # without garbling them (a type named "ab" is two characters the code chose): say nothing of it.
        if quoted is None or any(len(d) <= 2 for d in chosen):
            return [f"{check['probe']}: what the code returned is not what the exercise asks for"]
        for description in sorted(chosen, key=lambda d: (-len(d), d)):  # the longest first: a shorter may be in it
            fails = [m.replace(description, "…") for m in fails]
    return fails


_DESCRIBING = ("kind", "loss_kind", "optimizer_kind", "dtype", "shape", "shapes")
NO_INFORMATION = frozenset({"()", "[]"})  # a scalar's shape, which every verdict may say


def _descriptions(observations) -> set[str] | None:
    """How observations describe what the code returned (type names, dtypes, shapes), as a verdict
    would quote them. In a hidden case the code chose them having seen the hidden inputs: a verdict
    quotes none but the names of Python's, NumPy's, TensorFlow's and Keras' own types. Every key and
    item is looked at (a judge may quote one from anywhere). None when there are more of them, or more
    to walk, than a verdict could ever quote."""
    found: set[str] = set()
    stack, walked = [observations], 0
    while stack:
        data = stack.pop()
        walked += 1
        if walked > config.MAX_WALKED or len(found) > config.MAX_DESCRIPTIONS:
            return None
        if isinstance(data, dict):
            for key, value in data.items():
                if key in _DESCRIBING and value is not None:
                    found |= {str(value), str(tuple(value))} if isinstance(value, list) else {str(value)}
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(data, list):
            stack.extend(item for item in data if isinstance(item, (dict, list)))
    return found


def _merge_repeats(fails: list[str]) -> list[str]:
    """The same exception in several cases, said once with their number."""
    groups: dict[str, list[str]] = {}
    for message in fails:
        at = message.find("raised ")
        groups.setdefault(message[at:] if at >= 0 else message, []).append(message[:at] if at >= 0 else "")
    merged = []
    for key, labels in groups.items():
        if len(labels) == 1 or not key.startswith("raised "):
            merged += [label + key for label in labels]
        else:
            name = re.split(r"[(,:. ]", labels[0].strip(), maxsplit=1)[0]
            merged.append(f"{name}: {len(labels)} cases {key}")
    return merged
