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

from deepngrams import checks, probes, release, solution  # noqa: E402
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


@pytest.fixture(scope="module")
def prepared():
    return checks.prepare(checks.secret_of(release.SOURCE_NB))


@pytest.fixture(autouse=True)
def bundle(monkeypatch):
    monkeypatch.setattr(probes, "BUNDLE", str(ROOT))


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
            found[cell] = checks.judge(prepared[cell], observe(monkeypatch, prepared[cell], {name: answer}))
    return found


def test_every_graded_cell_of_the_source_notebook_has_a_check(prepared):
    import nbformat
    graded = [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(release.SOURCE_NB), 4).cells
              if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    assert sorted(graded) == sorted(prepared) == sorted(checks.PROBE_OF)
    assert all(check["inputs"]["cases"] and len(check["expected"]) == len(check["inputs"]["cases"])
               for check in prepared.values())


def test_weights_that_continue_too_few_lines_clearly_stop_the_preparation(monkeypatch):
    clear = iter(["xyz", "xyz"])  # two clear lines, then none
    monkeypatch.setattr(checks, "_greedy", lambda *a: next(clear, ""))
    with pytest.raises(RuntimeError, match="only 2 of 300 cut corpus lines.*make weights"):
        checks.prepare(7)


def test_hidden_inputs_come_from_the_secret(prepared):
    other = checks.prepare(12345)
    assert other["test_line_to_tensor"]["inputs"] == prepared["test_line_to_tensor"]["inputs"]  # public cases
    for cell in ("test_line_to_tensor_hidden", "test_GRULM_hidden", "test_log_perplexity_hidden",
                 "test_GenerativeModel_hidden"):
        assert other[cell]["inputs"] != prepared[cell]["inputs"]
    assert len(other["test_GenerativeModel_hidden"]["inputs"]["cases"]) == 3
    assert checks.prepare(12345)["test_GRULM_hidden"]["inputs"] == other["test_GRULM_hidden"]["inputs"]


def test_the_reference_solution_passes_every_cell(monkeypatch, prepared):
    namespace = {name: getattr(solution, name) for name, _ in CELLS.values()}
    for cell, check in prepared.items():
        assert checks.judge(check, observe(monkeypatch, check, namespace)) == [], cell


@pytest.mark.parametrize("answer, tests", WRONG)
def test_a_wrong_answer_fails_a_cell_of_its_exercise(monkeypatch, prepared, answer, tests):
    found = failures(monkeypatch, prepared, tests, answer)
    assert any(found.values()), found


@pytest.mark.parametrize("answer, tests", CORRECT)
def test_another_correct_answer_passes(monkeypatch, prepared, answer, tests):
    found = failures(monkeypatch, prepared, tests, answer)
    assert not any(found.values()), found


def test_missing_names_and_malformed_observations_fail(monkeypatch, prepared):
    check = prepared["test_log_perplexity"]
    assert "'log_perplexity' is not defined" in checks.judge(check, observe(monkeypatch, check, {}))[0]
    assert checks.judge(check, None)  # the cell never ran
    assert checks.judge(check, {"observations": "all good"})
    assert checks.judge(check, {"observations": [{"value": 1.0}]})  # too few
    faked = {"observations": [{"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": 0.0}
                              for _ in check["inputs"]["cases"]]}
    assert checks.judge(check, faked)


def test_observations_equal_to_the_expected_answers_pass(prepared):
    """The verdict depends only on the values: right values pass, however they were produced."""
    check = prepared["test_log_perplexity_hidden"]
    right = {"observations": [{"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": e["value"]}
                              for e in check["expected"]]}
    assert checks.judge(check, right) == []
    wrong = {"observations": [dict(o, value=o["value"] + 0.01) for o in right["observations"]]}
    assert checks.judge(check, wrong)


def test_flags_a_process_reports_about_itself_are_not_enough(prepared):
    """compile_model and the layers pass only with numbers that take a working model to produce."""
    check = prepared["test_compile_model_hidden"]
    case, want = check["inputs"]["cases"][0], check["expected"][0]
    forged = {"same": True, "loss_is": True, "from_logits": True, "optimizer_is": True, "learning_rate": 0.00125,
              "step": {"loss": {"kind": "float", "dtype": "float64", "shape": [], "value": want["loss"]},
                       "weights": {"items": [{"dtype": "float32", "shape": list(np.shape(w)), "value": w}
                                             for w in case["weights"]]}}}  # weights never moved
    assert checks.judge(check, {"observations": [forged]})
    check = prepared["test_GRULM_layers"]
    forged = []
    for case, want in zip(check["inputs"]["cases"], check["expected"]):
        v = case["sizes"][0]
        uniform = np.full(want["preds_shape"], -np.log(v)).tolist()
        forged.append({"layers": {"model": True, "gru_flags": [case["sizes"][2], True, True],
                                  **{name: {"kind": name, "is": True, "shapes": shapes}
                                     for name, shapes in want["shapes"].items()}},
                       "preds": {"dtype": "float32", "shape": want["preds_shape"], "value": uniform}})
    assert checks.judge(check, {"observations": forged})
