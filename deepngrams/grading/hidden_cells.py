"""The hidden test cells under plain nbgrader: the grader's own cases, probe and judge, run in the
notebook's kernel.

`make release` writes every hidden region of the source notebook as a call of `check_cell` (see
course/release.py), so plain nbgrader and the sandboxed grader test the same properties with the same
code. Under plain nbgrader the cases come from a fixed seed and run beside the student's code, so
they are no secret from it: plain nbgrader is for trusted submissions. The sandboxed grader never
runs these cells; it replaces each graded cell with a probe on cases drawn for the submission.
"""
from __future__ import annotations

import functools
import json

from deepngrams.grading import exercises
from deepngrams.grading.inside import probes

PLAIN_SECRET = 0  # the seed of the plain-nbgrader cases (the sandboxed grader draws one per submission)


@functools.lru_cache(maxsize=1)
def _cases() -> dict:
    return exercises.draw_cases(PLAIN_SECRET)


def check_cell(grade_id: str, namespace: dict) -> None:
    """Run one graded cell's cases on the notebook's code; raise AssertionError with what failed."""
    check = _cases()[grade_id]
    observed = probes.observe(check["probe"], namespace, json.loads(json.dumps(check["inputs"])))
    # as the sandbox sends it: JSON, with what JSON cannot hold written as text
    observed = json.loads(json.dumps(observed, allow_nan=True, default=lambda o: repr(o)[:200]))
    problems = exercises.judge(check, observed)
    if problems:
        raise AssertionError("\n".join(problems))
    print("All tests passed.")
