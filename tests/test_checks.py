"""The grader's verdicts (deepngrams.checks on deepngrams.probes' observations), without a sandbox.

The same right and wrong answers that test w1_unittest.py (tests/wrong_solutions/) go
through the grader's probes and judgement here: the reference and the other correct
answers pass every graded cell, each wrong answer fails at least one cell of its exercise.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deepngrams.config import COURSE  # noqa: E402
from deepngrams.grading.inside import probes
from deepngrams.course import release
from deepngrams.lm import solution  # noqa: E402
from deepngrams.grading import exercises  # noqa: E402
from deepngrams.grading.exercises import common  # noqa: E402
from wrong_solutions import (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm,  # noqa: E402
                             ex4_compile_model, ex5_log_perplexity, ex6_generative_model, ex6_sampling)


# w1_unittest's test -> (the name the notebook defines, the graded cells the grader checks it with)
CELLS = {
    "test_line_to_tensor": ("line_to_tensor", ["test_line_to_tensor", "test_line_to_tensor_hidden"]),
    "test_create_batch_dataset": ("create_batch_dataset", ["test_create_batch_dataset",
                                                           "test_create_batch_dataset_hidden"]),
    "test_GRULM_layers": ("GRULM", ["test_GRULM_layers"]),
    "test_GRULM_outputs": ("GRULM", ["test_GRULM_outputs", "test_GRULM_hidden"]),
    "test_compile_model": ("compile_model", ["test_compile_model", "test_compile_model_hidden"]),
    "test_log_perplexity": ("log_perplexity", ["test_log_perplexity", "test_log_perplexity_hidden"]),
    "test_temperature_random_sampling": ("temperature_random_sampling", ["test_temperature_random_sampling"]),
    "test_GenerativeModel": ("GenerativeModel", ["test_GenerativeModel", "test_GenerativeModel_hidden"]),
}
MODULES = (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm, ex4_compile_model, ex5_log_perplexity,
           ex6_sampling, ex6_generative_model)
WRONG = [pytest.param(answer, tests, id=f"{m.__name__.split('.')[-1]}-{name}")
         for m in MODULES for name, (answer, tests) in m.WRONG.items()]
CORRECT = [pytest.param(answer, m.TESTS, id=f"{m.__name__.split('.')[-1]}-{name}")
           for m in MODULES for name, answer in m.CORRECT.items()]


KEY = bytes(range(32))


@pytest.fixture(scope="module")
def prepared():
    return exercises.draw_cases(exercises.secret_for(KEY, "alice", b"her notebook"))


def observe(monkeypatch, check: dict, namespace: dict) -> dict:
    """Run one probe in this process, as the sandbox's kernel would, and return what it displays."""
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    probes.run(check["probe"], namespace, json.dumps(check["inputs"]))
    return json.loads(shown[-1][probes.MIME])


def failures(monkeypatch, prepared, w1_tests, answer) -> dict:
    found = {}
    for test in w1_tests:
        name, cells = CELLS[test]
        for cell in cells:
            found[cell] = exercises.judge(prepared[cell], observe(monkeypatch, prepared[cell], {name: answer}))
    return found


def test_every_graded_cell_of_the_source_notebook_has_a_check(prepared):
    import nbformat
    graded = [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(release.SOURCE_NB), 4).cells
              if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    assert sorted(graded) == sorted(prepared) == sorted(exercises.CELLS)
    assert all(check["inputs"]["cases"] and len(check["expected"]) == len(check["inputs"]["cases"])
               for check in prepared.values())


def test_the_seed_of_a_submission_is_the_documented_pair_of_hmacs():
    """The scheme, spelled out (README, exercises' doc): a change to it draws new cases for every
    submission, so it is pinned here rather than only compared with itself."""
    import hashlib
    import hmac
    student = hmac.new(KEY, b"student\0alice", hashlib.sha256).digest()
    assert exercises.student_key(KEY, "alice") == student
    seed = hmac.new(student, hashlib.sha256(b"her notebook").digest(), hashlib.sha256).digest()[:8]
    assert exercises.secret_for(KEY, "alice", b"her notebook") == int.from_bytes(seed, "big")


def test_a_students_key_draws_that_students_cases_and_no_one_elses():
    """A worker gets one student's key (never the course's): with it, that student's cases for any
    file, as the course's key draws them; another student's key, or another course's, draws others."""
    alice = exercises.student_key(KEY, "alice")
    for notebook in (b"her notebook", b"her notebook ", b""):
        assert exercises.secret_from(alice, notebook) == exercises.secret_for(KEY, "alice", notebook)
        assert exercises.secret_from(alice, notebook) != exercises.secret_for(KEY, "bob", notebook)
    others = {exercises.student_key(KEY, "bob"), exercises.student_key(bytes(32), "alice"),
              exercises.student_key(KEY, "alice\0"), exercises.student_key(KEY, "Alice")}
    assert alice not in others and len(others) == 4 and KEY not in {alice, *others}


def test_every_case_is_drawn_for_one_student_and_one_file(prepared):
    """Another student, or another file of the same student, gets other inputs in every graded cell
    (public ones too: a table of answers copied from someone's feedback is worth nothing); the same
    file of the same student gets the same cases, so grading again gives the same verdicts."""
    same = exercises.draw_cases(exercises.secret_for(KEY, "alice", b"her notebook"))
    assert json.dumps(same) == json.dumps(prepared)  # (json: NaN expected values compare equal)
    for other in (exercises.secret_for(KEY, "bob", b"her notebook"), exercises.secret_for(KEY, "alice", b"her notebook "),
                  exercises.secret_for(bytes(32), "alice", b"her notebook")):
        drawn = exercises.draw_cases(other)
        for cell, check in prepared.items():
            if cell != "test_GRULM_layers":  # its first case is the course's fixed sizes; the others vary
                assert drawn[cell]["inputs"] != check["inputs"], cell
            assert drawn[cell]["expected"] != check["expected"] or cell == "test_GRULM_layers", cell
        assert drawn["test_GRULM_layers"]["inputs"]["cases"][1:] != prepared["test_GRULM_layers"]["inputs"]["cases"][1:]


def test_a_correct_sampler_fails_less_than_once_in_a_million_gradings():
    """The bound is Hoeffding's, from the numbers of draws and the tolerances the cases carry."""
    bounds = [exercises.false_failure_bound(exercises.draw_cases(secret)) for secret in range(20)]
    assert max(bounds) < 1e-6
    assert min(bounds) > 0  # the bound counts the sampling cases: there are some


def test_sampling_cases_separate_the_usual_wrong_temperatures(prepared):
    """Every sampling case's distribution is more than twice its tolerance away from what a sampler
    that ignores the temperature, inverts it or never samples would draw from."""
    for cell in ("test_temperature_random_sampling", "test_GenerativeModel", "test_GenerativeModel_hidden"):
        for case, want in zip(prepared[cell]["inputs"]["cases"], prepared[cell]["expected"]):
            if "eps" not in want:
                continue
            p, t = np.asarray(want["p"]), case["temperature"]
            base = np.asarray(common.tempered(np.log(p), 1 / t), np.float64)  # back to temperature 1
            wrongs = [np.eye(len(p))[np.argmax(p)], common.tempered(np.log(base), 1.0),
                      common.tempered(np.log(base), 1 / t)]
            for wrong in wrongs[: 1 if t == 1.0 else 3]:
                assert np.abs(wrong - p).max() > 2 * want["eps"], (cell, t)


def test_no_constant_passes_a_log_perplexity_cell_whatever_the_draw():
    """A function that returns one number whatever its input (NaN, 0, the uniform model's value) fails
    both cells for every seed: a case whose sequences are all padding by chance would expect NaN,
    and a hidden cell made of that case alone would give NaN its points."""
    from deepngrams.grading.exercises import log_perplexity
    constants = [float("nan"), 0.0, 1.0, float(np.log(10))]
    for seed in range(4000):
        for hidden in (False, True):
            inputs, expected = log_perplexity.cases_log_perplexity(np.random.default_rng(seed), hidden)
            check = {"inputs": {"cases": inputs}, "expected": expected, "hidden": hidden}
            for value in constants:
                observed = [{"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": value}
                            for _ in inputs]
                assert log_perplexity.judge(check, observed), (seed, hidden, value)
            nan = [np.isnan(want["value"]) for want in expected]
            assert nan == ([False, False, False, True] if not hidden else [False]), (seed, hidden)


@pytest.mark.slow
def test_feedback_never_shows_hidden_inputs_or_expected_values(monkeypatch, prepared):
    """Wrong answers fail the hidden cells with messages that name the property, not the data."""
    def leaky(*args, **kwargs):
        raise ValueError("SECRET-INPUT " + repr(args)[:200])

    namespace = {"line_to_tensor": lambda line, vocab: solution.line_to_tensor(line[::-1], vocab),
                 "log_perplexity": lambda preds, target: 1.0,
                 "GRULM": ex3_grulm.WRONG["ignores_incoming_state"][0],
                 "compile_model": leaky, "create_batch_dataset": leaky,
                 "GenerativeModel": ex6_generative_model.AlwaysGreedy}
    for cell, check in prepared.items():
        if not check["hidden"]:
            continue
        name = [n for n in namespace if exercises.CELLS[cell][1].startswith(n)][0]
        messages = " ".join(exercises.judge(check, observe(monkeypatch, check, {name: namespace[name]})))
        assert messages, cell
        assert "SECRET-INPUT" not in messages, cell
        for case, want in zip(check["inputs"]["cases"], check["expected"]):
            for value in _leaf_values(case) + _leaf_values({k: v for k, v in want.items() if k != "about"}):
                assert repr(value) not in messages and (not isinstance(value, str) or len(value) < 4
                                                        or value not in messages), (cell, value)


def _leaf_values(data) -> list:
    """Strings and numbers (other than small integers) inside nested lists and dicts."""
    if isinstance(data, dict):
        return [v for value in data.values() for v in _leaf_values(value)]
    if isinstance(data, list):
        if data and all(isinstance(x, int) for x in data) and len(data) > 3:
            return [data] + [v for value in data for v in _leaf_values(value)]
        return [v for value in data for v in _leaf_values(value)]
    if isinstance(data, float) or isinstance(data, int) and abs(data) > 100:
        return [data]
    return [data] if isinstance(data, str) and data not in ("[UNK]", "") else []


@pytest.mark.slow
def test_the_reference_solution_passes_every_cell(monkeypatch, prepared):
    namespace = {name: getattr(solution, name) for name, _ in CELLS.values()}
    for cell, check in prepared.items():
        assert exercises.judge(check, observe(monkeypatch, check, namespace)) == [], cell


@pytest.mark.slow
@pytest.mark.parametrize("answer, tests", WRONG)
def test_a_wrong_answer_fails_a_cell_of_its_exercise(monkeypatch, prepared, answer, tests):
    found = failures(monkeypatch, prepared, tests, answer)
    assert any(found.values()), found


@pytest.mark.slow
@pytest.mark.parametrize("answer, tests", CORRECT)
def test_another_correct_answer_passes(monkeypatch, prepared, answer, tests):
    found = failures(monkeypatch, prepared, tests, answer)
    assert not any(found.values()), found


def test_missing_names_and_malformed_observations_fail(monkeypatch, prepared):
    check = prepared["test_log_perplexity"]
    assert "'log_perplexity' is not defined" in exercises.judge(check, observe(monkeypatch, check, {}))[0]
    assert exercises.judge(check, None)  # the cell never ran
    assert exercises.judge(check, {"observations": "all good"})
    assert exercises.judge(check, {"observations": [{"value": 1.0}]})  # too few
    faked = {"observations": [{"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": 0.0}
                              for _ in check["inputs"]["cases"]]}
    assert exercises.judge(check, faked)


def test_observations_equal_to_the_expected_answers_pass(prepared):
    """The verdict depends only on the values: right values pass, however they were produced."""
    check = prepared["test_log_perplexity_hidden"]
    right = {"observations": [{"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": e["value"]}
                              for e in check["expected"]]}
    assert exercises.judge(check, right) == []
    wrong = {"observations": [dict(o, value=o["value"] + 0.01) for o in right["observations"]]}
    assert exercises.judge(check, wrong)


def test_flags_a_process_reports_about_itself_are_not_enough(prepared):
    """compile_model and the layers pass only with numbers that take a working model to produce."""
    check = prepared["test_compile_model_hidden"]
    case, want = check["inputs"]["cases"][0], check["expected"][0]
    forged = {"same": True, "loss_is": True, "from_logits": True, "optimizer_is": True, "learning_rate": COURSE.learning_rate,
              "step": {"loss": {"kind": "float", "dtype": "float64", "shape": [], "value": want["loss"]},
                       "weights": {"items": [{"dtype": "float32", "shape": list(np.shape(w)), "value": w}
                                             for w in case["weights"]]}}}  # weights never moved
    assert exercises.judge(check, {"observations": [forged]})
    check = prepared["test_GRULM_layers"]
    forged = []
    for case, want in zip(check["inputs"]["cases"], check["expected"]):
        v = case["sizes"][0]
        uniform = np.full(want["preds_shape"], -np.log(v)).tolist()
        forged.append({"layers": {"model": True, "gru_flags": [case["sizes"][2], True, True],
                                  **{name: {"kind": name, "is": True, "shapes": shapes}
                                     for name, shapes in want["shapes"].items()}},
                       "preds": {"dtype": "float32", "shape": want["preds_shape"], "value": uniform}})
    assert exercises.judge(check, {"observations": forged})
