"""A forged observation (student code can display its own probe output) costs its cell, never the
notebook: numbers too large, JSON nested too deep (no kernel, no sandbox)."""
import json
import subprocess
import sys

import pytest

from deepngrams.grading.inside import harness
from deepngrams import config
from deepngrams.config import ROOT
from deepngrams.grading import exercises


SEED = 20261130  # the draw of cases every test here judges
BIG = 10**4000  # parses (under Python's 4300-digit limit), but fits no float or C integer


@pytest.fixture(scope="module")
def prepared():
    return exercises.draw_cases(SEED)


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


def test_observations_larger_than_a_correct_notebook_makes_are_an_error_of_the_cell():
    """The grader parses and judges what comes back outside the sandbox: a cell's observations past
    MAX_OBSERVATION_CHARS (eight times a correct notebook's largest) are not parsed at all."""
    def of_length(n: int) -> str:
        text = json.dumps({"observations": [{"kind": "list", "value": []}], "pad": ""})
        return text[:-2] + "x" * (n - len(text)) + '"}'
    at_most = of_length(config.MAX_OBSERVATION_CHARS)
    assert len(at_most) == config.MAX_OBSERVATION_CHARS and harness.read_observation(at_most, config.MAX_OBSERVATION_CHARS)["observations"]
    result = harness.read_observation(of_length(config.MAX_OBSERVATION_CHARS + 1), config.MAX_OBSERVATION_CHARS)
    assert result == {"error": "observations too large (over 4 MiB)"}


def _nested(width: int, depth: int, leaf):
    return leaf() if depth == 0 else [_nested(width, depth - 1, leaf) for _ in range(width)]


def test_a_hidden_verdict_on_forged_descriptions_quotes_nothing_and_walks_little(prepared):
    """After a hidden check a verdict may quote no type name, dtype or shape the code chose, so the
    judge strikes each one out of its messages. Forged observations can hold millions of them, or
    millions of lists to walk: past what a verdict could ever quote (MAX_DESCRIPTIONS) or what a
    correct notebook's observations hold (MAX_WALKED), the verdict says only that the outputs are wrong."""
    counter = iter(range(10**9))
    many_names = lambda: {"kind": f"Leak{next(counter):06d}", "shape": [next(counter)]}  # noqa: E731
    # Built once (a million lists): the judge only reads them.
    observations = (_nested(60, 2, many_names), _nested(100, 3, list))
    judged = 0
    for check in prepared.values():
        n = len(check["inputs"]["cases"])
        for observation in observations:
            for shape in forged(1):
                said = exercises.judge(check, {"observations": [dict(shape, items=observation)] * n},
                                       after_hidden=True)
                assert said and not any("Leak" in m for m in said), said
                if not said[0].startswith("the outputs could not be checked"):  # the judge read them
                    judged += 1
                    assert said == [f"{check['probe']}: what the code returned is not what the exercise asks for"]
        few = {"kind": "LeakABC", "dtype": "leak_dtype", "shape": [4321, 7]}
        said = " ".join(exercises.judge(check, {"observations": [few] * n}, after_hidden=True))
        assert said and not any(t in said for t in ("LeakABC", "leak_dtype", "4321")), said
    assert judged >= len(prepared), judged


def test_the_probes_own_observations_are_read_as_they_are():
    observation = {"observations": [{"kind": "list", "items": [{"value": [[[[1.5, 2.0]]]], "shape": [1, 1, 1, 2]}]}]}
    assert harness.read_observation(json.dumps(observation)) == observation


# Error messages a submission can forge, each shaped so that a pattern which retries a run of
# characters from every start in it takes hours: the judge must read them in time that grows with
# their length only.
HOSTILE_MESSAGES = {
    "a run of spaces": "a" + " " * 300_000 + "a",
    "a run of tabs before an op marker": "x" + "\t" * 300_000 + "[Op:",
    "function nodes never closed": "{{function_node " * 40_000,
    "op markers never closed": "x [Op:a" * 60_000,
    "op names one after another": "[Op:A] name: " * 40_000 + "\x00",
    "traceback frames": 'File "' * 60_000 + "\n",
    "boilerplate lines": ("Exception encountered when calling" + " " * 200 + "x\n") * 5_000,
    "in user code": "in user code:\n" + "A" * 300_000 + "Erro",
}
JUDGE_THEM = """
import json, sys
from deepngrams.grading import exercises
messages = json.loads(sys.stdin.read())
for check in exercises.draw_cases(int(sys.argv[1])).values():
    n = len(check["inputs"]["cases"])
    for message in messages.values():
        problems = exercises.judge(check, {"observations": [{"error": "ValueError", "message": message}] * n})
        assert problems and all(isinstance(p, str) and len(p) < 5000 for p in problems), problems
        whole = exercises.judge(check, {"error": "ValueError", "message": message})
        assert whole and all(isinstance(p, str) and len(p) < 5000 for p in whole), whole
print("judged")
"""


def test_a_forged_error_message_is_judged_in_time_that_grows_with_its_length():
    """The judge runs outside the sandbox, on every submission in turn: a message built to make a
    regular expression backtrack must not stall it. (In a child process: a pattern that backtracks
    cannot be interrupted in this one; the timeout is many times the few seconds this takes.)"""
    done = subprocess.run([sys.executable, "-c", JUDGE_THEM, str(SEED)], input=json.dumps(HOSTILE_MESSAGES), text=True,
                          capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "judged", done.stderr[-3000:]


@pytest.mark.parametrize("name", ["Qz", "ʬ", "Q"])
def test_a_hidden_verdict_never_quotes_a_short_name_the_code_chose(prepared, name):
    """A type named with one or two characters of a hidden input (type(text[:2], (), {})) was too short
    to strike out of the messages, so verdicts quoted it: such a verdict now says only that the outputs
    are wrong."""
    judged = 0
    for check in prepared.values():
        n = len(check["inputs"]["cases"])
        for key in ("kind", "dtype"):
            for shape in forged(1):
                said = exercises.judge(check, {"observations": [dict(shape, **{key: name})] * n}, after_hidden=True)
                assert said and not any(name in m for m in said), (check["probe"], key, said)
                judged += said == [f"{check['probe']}: what the code returned is not what the exercise asks for"]
        shown = " ".join(exercises.judge(check, {"observations": [dict(forged(1)[0], kind=name)] * n}))
        judged += name in shown  # before any hidden check, a verdict may name it
    assert judged > len(prepared), judged


def test_a_hidden_verdict_never_quotes_a_name_put_past_the_first_100_keys(prepared):
    """The walk that finds what a verdict must not quote read only the first 100 keys of each dict; a judge
    quotes a field from wherever it is in the dict."""
    for check in prepared.values():
        n = len(check["inputs"]["cases"])
        for shape in forged(1):
            observation = {**{f"pad{i}": 0 for i in range(150)}, **shape, "kind": "LeakKIND", "dtype": "leak_dtype"}
            said = " ".join(exercises.judge(check, {"observations": [observation] * n}, after_hidden=True))
            assert said and "LeakKIND" not in said and "leak_dtype" not in said, (check["probe"], said)


def test_a_hidden_sampling_verdict_never_gives_how_often_the_two_calls_agreed(prepared, monkeypatch):
    """How often the second call repeats the first is the code's to choose (copy a chosen share of the
    ids): after a hidden check the verdict says they agree too often, not how often."""
    from deepngrams.grading.exercises import sampling
    monkeypatch.setattr(sampling, "frequencies_fail", lambda *a: False)  # only the agreement is judged
    check = prepared["test_temperature_random_sampling"]
    assert any("again" in case for case in check["inputs"]["cases"])
    observations = [{"kind": "EagerTensor", "tensor": True, "ragged": False, "dtype": "int64", "shape": [case["rows"]],
                     "value": [0] * case["rows"]} if "rows" in case else {"error": "ValueError", "message": "x"}
                    for case in check["inputs"]["cases"]]
    shown, hidden = (" ".join(exercises.judge(check, {"observations": observations}, after_hidden=after))
                     for after in (False, True))
    assert "picked the same id in 100% of the rows" in shown
    assert "picked the same id" in hidden and "100%" not in hidden
