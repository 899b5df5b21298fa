"""A forged observation (student code can display its own probe output) costs its cell, never the
notebook: numbers too large, JSON nested too deep (no kernel, no sandbox)."""
import json

import pytest

from deepngrams.grading.inside import harness
from deepngrams.grading import exercises


BIG = 10**4000  # parses (under Python's 4300-digit limit), but fits no float or C integer


@pytest.fixture(scope="module")
def prepared():
    return exercises.draw_cases(20261130)


def forged(value) -> list[dict]:
    """Observations of every shape the probes write, each holding `value`."""
    tensor = {"kind": "EagerTensor", "tensor": True, "ragged": False, "dtype": "int32", "shape": [3],
              "value": [value, 1, 2]}
    scalar = {"kind": "int", "tensor": False, "ragged": False, "dtype": "int64", "shape": [], "value": value}
    keys = ("output", "model", "layers", "loss", "value", "result", "text", "batches", "states")
    return [tensor, scalar, dict({k: tensor for k in keys}, **scalar)]


@pytest.mark.parametrize("value", [BIG, -BIG, 1e308, json.loads("[" * 500 + "1" + "]" * 500)])
def test_a_forged_value_fails_only_its_cell(prepared, value):
    for check in prepared.values():
        n = len(check["inputs"]["cases"])
        for observation in forged(value):
            problems = exercises.judge(check, {"observations": [observation] * n})
            assert problems and all(isinstance(p, str) for p in problems)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"observations": ' + "[" * 990 + "]" * 990 + "}",
                                  '{"observations": [' + "9" * 5000 + "]}", "[1, 2]", "not json", None])
def test_unreadable_observations_are_an_error_of_the_cell(text):
    result = harness.read_observation(text)
    assert result["error"].startswith("unreadable observations")
    assert json.loads(json.dumps({"probe": "test_x", "result": result}))["result"] == result


def test_the_probes_own_observations_are_read_as_they_are():
    observation = {"observations": [{"kind": "list", "items": [{"value": [[[[1.5, 2.0]]]], "shape": [1, 1, 1, 2]}]}]}
    assert harness.read_observation(json.dumps(observation)) == observation
