"""End to end: correct submissions with broken or fuzzed metadata get full marks (one batch).

The score depends on the student's code only: whatever a student's editor or hand put in the
metadata, a correct notebook gets 19/19, and its feedback is written.
"""
import json
import random
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from deepngrams.course import release
from deepngrams.grading import sandbox

from metadata_cases import KINDS, fuzz
from deepngrams.grading import batch
from deepngrams.grading import cells

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
HARDER = ("not_a_mapping", "nested_deep", "grade_id_a_list", "solution_claims_grade", "test_not_graded",
          "missing_attachment", "huge_number")
FUZZED = 3


@pytest.fixture(scope="module")
def graded():
    solved = json.loads(json.dumps(release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]))
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-metadata-", dir=release.ROOT / ".cache")))
    files = {kind: KINDS[kind](solved) for kind in HARDER}
    rng = random.Random(7)
    files.update({f"fuzzed_{i}": json.dumps(fuzz(solved, rng)) for i in range(FUZZED)})
    for student, text in files.items():
        folder = course / "submitted" / student / release.ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{release.ASSIGNMENT}.ipynb").write_text(text)
    outcomes = {o.student: o for o in batch.grade(course, workers=2, progress=False)}
    yield course, outcomes
    shutil.rmtree(course.parent, ignore_errors=True)


@pytest.mark.parametrize("student", [*HARDER, *(f"fuzzed_{i}" for i in range(FUZZED))])
def test_a_correct_submission_gets_full_marks_whatever_its_metadata(graded, student):
    course, outcomes = graded
    outcome = outcomes[student]
    assert outcome.reason == ""
    assert outcome.total == (19, 19), outcome.scores
    page = course / "feedback" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.html"
    assert "All tests passed (checked by the grader)" in page.read_text()


def test_the_graded_notebook_has_the_source_structure(graded):
    course, _ = graded
    source = nbformat.read(str(course / "source" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)

    def tests(nb):
        return [(cells.nbgrader_meta(c)["grade_id"], float(cells.nbgrader_meta(c)["points"]))
                for c in nb.cells if cells.is_test_cell(c)]

    for student in ("solution_claims_grade", "test_not_graded", "fuzzed_0"):
        done = nbformat.read(str(course / "autograded" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)
        assert tests(done) == tests(source)
