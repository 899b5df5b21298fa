"""Our nbgrader steps and the demo's table, on small notebooks (no kernel needed)."""
import logging

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from deepngrams.grading.nbgrader_steps import NOT_RUN, DeduplicateIdsCleanly, GradeUpToHere
from deepngrams.grading import report


def cell(kind, grade_id, source, **flags):
    c = new_code_cell(source) if kind == "code" else new_markdown_cell(source)
    c.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": False, "grade_id": grade_id,
                              "schema_version": 3, **flags}
    return c


def notebook(*cells):
    return new_notebook(cells=list(cells))


def run(step, nb):
    step.log = logging.getLogger("test")
    return step.preprocess(nb, {})[0]


def test_grade_up_to_here_fails_later_tests_and_skips_later_code():
    nb = notebook(
        cell("code", "ex1", "def f():\n    return 1", solution=True),
        cell("code", "test_ex1", "assert f() == 1", grade=True, locked=True, points=1),
        cell("code", "ex2", "# grade-up-to-here\ndef g():\n    return 2", solution=True),
        cell("code", "test_ex2", "assert g() == 2", grade=True, locked=True, points=1),
        cell("markdown", "text", "Some words"),
        new_code_cell("print('demo')"),
        cell("code", "ex3", "def h():\n    return 3", solution=True),
        cell("code", "test_ex3", "assert h() == 3", grade=True, locked=True, points=1),
    )
    out = run(GradeUpToHere(), nb)
    sources = [c.source for c in out.cells]
    assert sources[:3] == ["def f():\n    return 1", "assert f() == 1", "# grade-up-to-here\ndef g():\n    return 2"]
    assert sources[3] == NOT_RUN and sources[7] == NOT_RUN
    assert sources[4] == "Some words"
    assert all("not run" in s for s in (sources[5], sources[6]))


def test_grade_up_to_here_only_counts_in_solution_cells():
    nb = notebook(cell("code", "test_ex1", "# grade-up-to-here\nassert True", grade=True, locked=True, points=1),
                  cell("code", "test_ex2", "assert True", grade=True, locked=True, points=1))
    assert [c.source for c in run(GradeUpToHere(), nb).cells] == ["# grade-up-to-here\nassert True", "assert True"]


def test_a_copied_graded_cell_loses_its_metadata_entirely():
    nb = notebook(cell("code", "test_a", "assert True", grade=True, locked=True, points=1),
                  cell("code", "test_a", "assert True", grade=True, locked=True, points=1))
    out = DeduplicateIdsCleanly().preprocess(nb, {})[0]
    assert "nbgrader" not in out.cells[0].metadata  # nbgrader keeps the last copy
    assert out.cells[1].metadata["nbgrader"]["grade_id"] == "test_a"


def test_test_cells_map_to_their_exercise():
    names = ["line_to_tensor", "GRULM", "temperature_random_sampling", "GenerativeModel"]
    assert report.exercise_of("test_line_to_tensor", names) == "line_to_tensor"
    assert report.exercise_of("test_GRULM_outputs", names) == "GRULM"
    assert report.exercise_of("test_GenerativeModel_hidden", names) == "GenerativeModel"
    assert report.exercise_of("test_something_else", names) == "other"


def test_table_shows_scores_totals_and_reasons():
    table = report.format_table(["a", "b"], [("ann", {"a": (1.0, 2.0), "b": (3.0, 3.0)}, ""),
                                           ("bo", {}, "x.ipynb: not a valid notebook")])
    lines = table.splitlines()
    assert lines[0].split() == ["student", "a", "b", "total", "note"]
    assert lines[2].split() == ["ann", "1/2", "3/3", "4/5"]
    assert lines[3].split()[:4] == ["bo", "-", "-", "-"] and "not a valid notebook" in lines[3]


def test_feedback_hides_the_hidden_part_of_test_cells_only():
    from deepngrams.grading.nbgrader_steps import HideHiddenTests
    hidden = "# More cases are checked when graded.\n### BEGIN HIDDEN TESTS\nsecret_case()\n### END HIDDEN TESTS\nafter()"
    nb = notebook(
        cell("code", "test_ex1", hidden, grade=True, locked=True, points=1),
        cell("code", "test_ex2", "visible()\n### BEGIN HIDDEN TESTS\nsecret_case()", grade=True, locked=True, points=1),
        cell("markdown", "text", "I wrote ### BEGIN HIDDEN TESTS in my notes"),
        cell("code", "ex1", "x = '### BEGIN HIDDEN TESTS'", solution=True),
    )
    out = run(HideHiddenTests(), nb)
    assert [c.source for c in out.cells] == [
        "# More cases are checked when graded.\nafter()",
        "visible()",  # an unterminated region is hidden to the end of the cell
        "I wrote ### BEGIN HIDDEN TESTS in my notes",  # not a test cell: left alone, and no error
        "x = '### BEGIN HIDDEN TESTS'",
    ]
