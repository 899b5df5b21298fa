"""A course directory anywhere: found by its configuration, or refused before any work with what to set.

nbgrader logs a configuration file that fails and carries on with its defaults, which would grade
every submission without the course's steps (and give everyone 0 after minutes of work); the
grader checks the course once, before the batch.
"""
import shutil
import time

import pytest

from deepngrams.course import release
from deepngrams.grading import sandbox
from deepngrams.config import ROOT
from deepngrams.grading import batch

pytestmark = pytest.mark.slow


@pytest.fixture()
def elsewhere(tmp_path, monkeypatch):
    """A copy of the course outside the bundle, as an instructor keeps courses in their home."""
    monkeypatch.delenv("DEEPNGRAMS_BUNDLE", raising=False)
    course = tmp_path / "courses" / "deep-ngrams"
    course.mkdir(parents=True)
    shutil.copy(release.COURSE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(release.SOURCE_NB.parent, course / "source" / release.ASSIGNMENT)
    return course


def _name_bundle(course, path: str) -> None:
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text().replace('BUNDLE_PATH = ""', f"BUNDLE_PATH = {path!r}"))


def test_the_bundled_course_is_ready():
    assert batch.check_course(release.COURSE_DIR) == []


def test_a_course_outside_the_bundle_says_what_to_set(elsewhere):
    problems = batch.check_course(elsewhere)
    assert len(problems) == 1
    assert "BUNDLE_PATH" in problems[0] and "DEEPNGRAMS_BUNDLE" in problems[0] and str(ROOT) in problems[0]


def test_a_course_outside_the_bundle_is_ready_once_it_names_the_bundle(elsewhere, monkeypatch):
    monkeypatch.setenv("DEEPNGRAMS_BUNDLE", str(ROOT))
    assert batch.check_course(elsewhere) == []
    monkeypatch.delenv("DEEPNGRAMS_BUNDLE")
    _name_bundle(elsewhere, str(ROOT))
    assert batch.check_course(elsewhere) == []


def test_a_wrong_bundle_path_is_named_in_the_message(elsewhere):
    _name_bundle(elsewhere, "/nowhere/deep-ngrams")
    problems = batch.check_course(elsewhere)
    assert len(problems) == 1 and "/nowhere/deep-ngrams" in problems[0] and "BUNDLE_PATH" in problems[0]


def test_a_configuration_without_the_courses_steps_is_refused(elsewhere):
    (elsewhere / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'x'\n")
    problems = batch.check_course(elsewhere)
    assert len(problems) == 1 and "grading steps" in problems[0]
    (elsewhere / "nbgrader_config.py").unlink()
    assert "nbgrader_config.py is missing" in batch.check_course(elsewhere)[0]


def test_a_course_without_its_source_notebook_is_refused(elsewhere, monkeypatch):
    monkeypatch.setenv("DEEPNGRAMS_BUNDLE", str(ROOT))
    shutil.rmtree(elsewhere / "source")
    problems = batch.check_course(elsewhere)
    assert len(problems) == 1 and "source notebook" in problems[0]


@pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))
def test_grading_a_misplaced_course_stops_before_any_work(elsewhere):
    _name_bundle(elsewhere, "/nowhere/deep-ngrams")
    submitted = elsewhere / "submitted" / "alice" / release.ASSIGNMENT
    shutil.copytree(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT, submitted)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="BUNDLE_PATH"):
        batch.grade(elsewhere, workers=1, progress=False)
    assert time.monotonic() - start < 60  # refused at once, not after grading everyone with nbgrader's defaults
    assert not (elsewhere / "gradebook.db").exists() and not (elsewhere / "autograded").exists()


def test_the_grade_command_lists_a_courses_problems_one_a_line(elsewhere, capsys, monkeypatch):
    """Each problem on its own line, each line still free of control characters."""
    monkeypatch.setattr(sandbox, "available", lambda: None)  # the course is checked whatever the machine
    (elsewhere / "nbgrader_config.py").write_text("raise RuntimeError('broken\\x1b[2J here')\n")
    assert batch.main(["--course", str(elsewhere)]) == 2
    err = capsys.readouterr().err
    lines = err.rstrip("\n").split("\n")
    assert lines[0] == f"error: cannot grade {elsewhere}:" and len(lines) == 2, err
    assert "fails to load" in lines[1] and "\\x1b[2J" in lines[1] and "\x1b" not in err
