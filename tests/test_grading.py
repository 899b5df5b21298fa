"""Plain nbgrader, with the course's configuration, grades fairly: one batch, several students."""
import copy
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from deepngrams.course import release
from deepngrams.grading import plain

pytestmark = pytest.mark.slow

FULL = {"line_to_tensor": 3, "create_batch_dataset": 3, "GRULM": 4, "compile_model": 2,
        "log_perplexity": 3, "temperature_random_sampling": 1, "GenerativeModel": 3}

NOISY = '''
import sys, warnings
print("debugging output on stderr", file=sys.stderr)
warnings.warn("a warning while defining the function")
'''


def noisy_edit(name, code):
    """Correct code that also writes to stderr and raises warnings, when defined and when called."""
    noise = '    import sys, warnings; print("noise", file=sys.stderr); warnings.warn("noise")\n'
    if name in ("line_to_tensor", "create_batch_dataset", "log_perplexity"):
        code = code.replace("    ### BEGIN SOLUTION\n", noise + "    ### BEGIN SOLUTION\n", 1)
    return code + "\n" + NOISY


def graph_mode_edit(name, code):
    """generate_one_step compiled with tf.function, as the TensorFlow text-generation tutorial writes it."""
    if name == "GenerativeModel":
        assert "    def generate_one_step(" in code
        return code.replace("    def generate_one_step(", "    @tf.function\n    def generate_one_step(", 1)
    return code


def up_to_here_edit(name, code):
    if name == "GRULM":
        return "# grade-up-to-here\n" + code
    if name == "compile_model":
        return "this is not Python"
    return code


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-course-", dir=release.ROOT / ".cache")))
    rel = release.read(release.RELEASE_NB)
    names = release.exercise_names()
    subs = release.sample_submissions(rel)
    subs["dave_up_to_here"] = release.with_solutions(rel, names, up_to_here_edit)
    subs["erin_noisy"] = release.with_solutions(rel, names, noisy_edit)
    subs["ivy_graph_mode"] = release.with_solutions(rel, names, graph_mode_edit)
    deleted = copy.deepcopy(subs["alice_solved"])
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_line_to_tensor"]
    subs["gina_deleted_test"] = deleted
    duplicated = copy.deepcopy(subs["alice_solved"])
    test_cell = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_log_perplexity")
    duplicated.cells.append(copy.deepcopy(test_cell))
    subs["hank_duplicated_cell"] = duplicated
    for student, nb in subs.items():
        path = course / "submitted" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
    broken = course / "submitted" / "frank_not_json" / release.ASSIGNMENT
    broken.mkdir(parents=True)
    (broken / f"{release.ASSIGNMENT}.ipynb").write_text("{ this is not a notebook")
    # A student's own w1_unittest.py that passes everything must not be used.
    (course / "submitted" / "bob_untouched" / release.ASSIGNMENT / "w1_unittest.py").write_text(
        "def __getattr__(name):\n    return lambda *a, **k: None\n")
    status, names, rows = plain.run(course)
    reasons = {student: reason for student, _, reason in rows}
    yield status, {student: {ex: s for ex, (s, _) in scores.items()} for student, scores, _ in rows}, course, reasons
    shutil.rmtree(course.parent, ignore_errors=True)


def test_solved_notebook_gets_full_marks(graded):
    assert graded[1]["alice_solved"] == FULL


def test_untouched_release_scores_zero(graded):
    assert graded[1]["bob_untouched"] == {ex: 0 for ex in FULL}


def test_mistakes_cost_only_their_exercises(graded):
    carol = graded[1]["carol_partial"]
    assert carol == dict(FULL, GRULM=0, compile_model=0, temperature_random_sampling=0, GenerativeModel=0)


def test_grade_up_to_here_stops_after_the_marked_cell(graded):
    dave = graded[1]["dave_up_to_here"]
    assert dave == {ex: (FULL[ex] if ex in ("line_to_tensor", "create_batch_dataset") else 0) for ex in FULL}
    nb = nbformat.read(str(graded[2] / "autograded" / "dave_up_to_here" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert any("grade-up-to-here" in o.evalue for o in errors)


def test_stderr_noise_and_warnings_from_correct_code_cost_nothing(graded):
    assert graded[1]["erin_noisy"] == FULL


def test_a_graph_mode_generate_one_step_gets_full_marks(graded):
    """The models the tests hand to student code run inside tf.function as well as eagerly."""
    assert graded[1]["ivy_graph_mode"] == FULL


def test_a_deleted_test_cell_is_put_back_and_run(graded):
    assert graded[1]["gina_deleted_test"] == FULL


def test_a_copied_graded_cell_does_not_count_twice_or_stop_the_batch(graded):
    assert graded[1]["hank_duplicated_cell"] == FULL


def test_the_course_cells_after_the_last_graded_cell_are_not_run(graded):
    """The closer look (locked, after every graded cell) costs no grading time; the tests still run."""
    status, scores, course, reasons = graded
    nb = nbformat.read(str(course / "autograded" / "alice_solved" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)
    shown = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    assert "Pretrained weights loaded." in shown["load_weights"].outputs[0].text  # cells before the last test run
    assert not shown["temperature_table"].outputs and not shown["generate_demo"].outputs
    assert scores["alice_solved"] == FULL and reasons["alice_solved"] == ""


def test_an_unreadable_submission_does_not_stop_the_others(graded):
    status, scores, course, reasons = graded
    assert status != 0  # reported...
    assert scores["frank_not_json"] == {}  # ...not graded...
    assert "not JSON, so not a notebook" in reasons["frank_not_json"]
    assert reasons["alice_solved"] == ""
    assert scores["alice_solved"] == FULL  # ...and everyone else is.
    assert (course / "grades.csv").read_text().count("\n") >= 5
    assert (course / "feedback" / "alice_solved" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.html").exists()
