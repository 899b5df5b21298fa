"""What `w1_unittest` is while the notebook is graded (the grader mounts this file in its place).

During grading every test cell is replaced by a probe and the verdicts are computed outside
the sandbox, so the test module has nothing to check here. It keeps the names the notebook
may use, and nothing that knows an answer: no pretrained model, no GRU written in plain
TensorFlow, no made-up model with its expected output, no reference values. A student's code
that leans on those while graded fails, as it should.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

UNK_ID = 0
PADDING_ID = 1
GRADED = "checked by the grader"


def _checked_by_the_grader(*args, **kwargs) -> None:
    print(f"All tests passed? This test is {GRADED}: its result is in your feedback.")


test_line_to_tensor = test_create_batch_dataset = test_GRULM_layers = test_GRULM_outputs = \
    test_compile_model = test_log_perplexity = test_temperature_random_sampling = test_GenerativeModel = \
    _checked_by_the_grader


def model_card() -> dict:
    """The model card (vocabulary, hyperparameters): public, and the same as in the student's copy."""
    bundle = Path(os.environ.get("DEEPNGRAMS_BUNDLE") or Path(__file__).resolve().parent)
    return json.loads((bundle / "model" / "model_card.json").read_text(encoding="utf-8"))


def vocab() -> list[str]:
    return list(model_card()["vocab"])


def check(condition: bool, case: str, expected, got) -> None:
    """The student's own checks still work: a false condition raises, as in the public module."""
    if not condition:
        raise AssertionError(f"Failed case: {case}")


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stderr(io.StringIO()) as buffer:
        yield buffer


def _not_while_graded(name: str):
    def unavailable(*args, **kwargs):
        raise RuntimeError(f"w1_unittest.{name} is not available while the notebook is graded: "
                           f"graded code must not depend on the tests' own models or reference values")
    return unavailable


load_reference = _not_while_graded("load_reference")
pretrained_lm = _not_while_graded("pretrained_lm")
__all__ = ["test_line_to_tensor", "test_create_batch_dataset", "test_GRULM_layers", "test_GRULM_outputs",
           "test_compile_model", "test_log_perplexity", "test_temperature_random_sampling", "test_GenerativeModel",
           "load_reference", "pretrained_lm", "vocab", "model_card", "check", "quiet"]
