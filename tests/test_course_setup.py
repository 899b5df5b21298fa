"""A course directory anywhere: found by its configuration, or refused before any work with what to set.

nbgrader logs a configuration file that fails and carries on with its defaults, which would grade
every submission without the course's steps (and give everyone 0 after minutes of work); the
grader checks the course once, before the batch.
"""
import os
import shutil
import time
from pathlib import Path

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


def test_a_new_gradebook_is_stamped_without_an_alembic_process(tmp_path):
    """nbgrader asks a separate `alembic heads` process for the migration it stamps a new gradebook
    with (seconds of CPU for every new course); the bundle's nbgrader command reads it itself, and
    stamps the same migration: an `alembic` first on PATH that only records its call is never run."""
    import sqlite3
    import subprocess
    import sys
    from deepngrams.course import nbgrader_command
    fake = tmp_path / "bin"
    fake.mkdir()
    called = tmp_path / "alembic-was-called"
    (fake / "alembic").write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    (fake / "alembic").chmod(0o755)
    course = release.scratch_course(tmp_path / "c")
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-c", release.NBGRADER, "generate_assignment", release.ASSIGNMENT],
                          cwd=course, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not called.exists()
    with sqlite3.connect(course / "gradebook.db") as db:
        [(stamped,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    heads = subprocess.run([str(Path(sys.executable).with_name("alembic")), "-c", str(_alembic_ini(tmp_path)), "heads"],
                           capture_output=True, text=True, check=True).stdout
    assert stamped == nbgrader_command.alembic_head() == heads.split()[0]


def _alembic_ini(folder):
    """nbgrader's alembic.ini, as nbgrader writes it for `alembic heads`."""
    from nbgrader.dbutil import write_alembic_ini
    path = folder / "alembic.ini"
    write_alembic_ini(str(path), f"sqlite:///{folder / 'unused.db'}")
    return path
