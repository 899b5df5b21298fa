"""`deepngrams grade` on the bundled samples: scores, resume, the report, and a gradebook never half-written."""
import csv
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.utils import notebook_hash

from deepngrams.course import release
from deepngrams.grading import sandbox
from deepngrams.grading import batch, engine, exercises, nbgrader_steps
from deepngrams.grading import gradebook

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
FULL = {"line_to_tensor": 3, "create_batch_dataset": 3, "GRULM": 4, "compile_model": 2,
        "log_perplexity": 3, "temperature_random_sampling": 1, "GenerativeModel": 3}


@pytest.fixture(scope="module")
def course():
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-grade-", dir=release.ROOT / ".cache")))
    for student in ("alice_solved", "bob_untouched", "carol_partial"):
        shutil.copytree(release.SUBMITTED / student, course / "submitted" / student)
    leaking = nbformat.read(str(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.ipynb"), 4)
    at = next(i for i, c in enumerate(leaking.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "line_to_tensor")
    leaking.cells.insert(at + 1, nbformat.v4.new_code_cell(RECORD_INPUTS))
    leaking.cells.append(nbformat.v4.new_code_cell('print("LEAK" + "ED:", _seen)'))
    (course / "submitted" / "leo_prints_inputs" / release.ASSIGNMENT).mkdir(parents=True)
    nbformat.write(leaking, str(course / "submitted" / "leo_prints_inputs" / release.ASSIGNMENT / "deep_ngrams.ipynb"))
    renamed = course / "submitted" / "dora_renamed" / release.ASSIGNMENT
    renamed.mkdir(parents=True)
    shutil.copy(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.ipynb",
                renamed / "deep_ngrams (1).ipynb")
    for student, secret in SUBMISSION_SECRETS.items():  # as nbgrader's collect leaves them, from submit
        (course / "submitted" / student / release.ASSIGNMENT / "timestamp.txt").write_text(HANDED_IN_AT + " UTC")
        (course / "submitted" / student / release.ASSIGNMENT / "submission_secret.txt").write_bytes(secret)
    with pytest.MonkeyPatch.context() as patch:  # what the client hands to Dask, as the workers get it
        client_for = engine.client_for

        def spying_client_for(*args, **kwargs):
            client = client_for(*args, **kwargs)
            submit = client.submit

            def spy(fn, *task_args, **task_kwargs):
                given = [a for a in task_args if type(a).__name__ != "Future"]
                SENT.append((fn.__name__, given, pickle.dumps((given, task_kwargs))))
                return submit(fn, *task_args, **task_kwargs)

            client.submit = spy
            return client

        patch.setattr(engine, "client_for", spying_client_for)
        unpack_result = engine.unpack_result

        def spying_unpack_result(result, into):
            RESULTS[result["report"]["student"]] = {"keys": sorted(result), "recorded": result["report"]["recorded"]}
            return unpack_result(result, into)

        patch.setattr(engine, "unpack_result", spying_unpack_result)
        first = batch.grade(course, workers=2, progress=False)
    yield course, {o.student: o for o in first}
    shutil.rmtree(course.parent, ignore_errors=True)


SENT: list = []  # (function, its arguments but futures, all pickled) of each task the batch handed to Dask
HANDED_IN_AT = "2026-11-30 09:15:00.250000"  # carol's timestamp.txt, as nbgrader's submit writes it
# What nbgrader's submit writes (carol), one for a notebook that cannot be graded (dora), and one that is
# not text (leo): release_feedback would stop for everyone at it.
SUBMISSION_SECRETS = {"carol_partial": secrets.token_hex(64).encode(), "dora_renamed": secrets.token_hex(64).encode(),
                      "leo_prints_inputs": b"\xff\xfe\x00 not text"}
RESULTS: dict = {}  # student -> what the worker's result held: its keys, and the grades it recorded
RECORD_INPUTS = """
_seen, _line_to_tensor = [], line_to_tensor

def line_to_tensor(line, vocab):
    _seen.append(repr(line)[:80])
    return _line_to_tensor(line, vocab)
"""


def test_the_hidden_inputs_a_student_prints_stay_out_of_the_feedback(course):
    """A correct notebook that records the inputs its line_to_tensor is called with, hidden ones
    included, and prints them at its end: full marks, the instructor's graded notebook shows what it
    printed, its feedback does not."""
    path, first = course
    assert points(first["leo_prints_inputs"]) == FULL and first["leo_prints_inputs"].reason == ""
    graded = nbformat.read(str(path / "autograded" / "leo_prints_inputs" / release.ASSIGNMENT / "deep_ngrams.ipynb"), 4)
    printed = "".join(o.get("text", "") for o in graded.cells[-1].outputs)
    assert printed.startswith("LEAKED:") and printed.count("'") > 10, printed[:300]
    html = (path / "feedback" / "leo_prints_inputs" / release.ASSIGNMENT / "deep_ngrams.html").read_text()
    assert "LEAKED" not in html and nbgrader_steps.AFTER_HIDDEN_TESTS in html
    assert "All tests passed (checked by the grader)" in html


def points(outcome):
    return {ex: got for ex, (got, _) in outcome.scores.items()}


def test_the_samples_get_the_scores_plain_nbgrader_gives(course):
    _, first = course
    assert points(first["alice_solved"]) == FULL and first["alice_solved"].reason == ""
    assert points(first["bob_untouched"]) == {ex: 0 for ex in FULL}
    assert points(first["carol_partial"]) == dict(FULL, GRULM=0, compile_model=0, temperature_random_sampling=0,
                                                  GenerativeModel=0)


def test_the_course_key_never_leaves_the_client(course):
    """Workers get the course's files and, with each submission, the key of that student's cases
    alone: the course's grading key, which draws everyone's, stays where the course is."""
    path, first = course
    key = exercises.grading_key(path)
    assert sorted(name for name, *_ in SENT) == ["_the_course"] + ["grade_task"] * len(first)
    for name, _, sent in SENT:
        assert key not in sent and key.hex().encode() not in sent, name
    secrets = {args[0]: args[2] for name, args, _ in SENT if name == "grade_task"}  # student, files, their key
    assert secrets == {s: exercises.student_key(key, s) for s in first}  # the folder's name, as on the door
    assert len(set(secrets.values())) == len(secrets)


def test_a_notebook_under_another_name_is_reported(course):
    _, first = course
    dora = first["dora_renamed"]
    assert points(dora) == {ex: 0 for ex in FULL}
    assert "no deep_ngrams.ipynb handed in (found deep_ngrams (1).ipynb: rename it)" in dora.reason


def test_report_csv_feedback_and_gradebook(course):
    path, first = course
    rows = {r["student"]: r for r in csv.DictReader((path / "report.csv").open())}
    assert rows["alice_solved"]["total"] == "19" and rows["carol_partial"]["total"] == "9"
    assert "rename it" in rows["dora_renamed"]["reason"] and float(rows["alice_solved"]["seconds"]) > 0
    assert {r["sandbox"] for r in rows.values()} == {sandbox.mode()}  # the mode each one ran in
    assert all(o.sandbox == sandbox.mode() for o in first.values())
    grades = {r["student_id"]: r for r in csv.DictReader((path / "grades.csv").open())}
    assert grades["alice_solved"]["score"] == "19.0" and grades["bob_untouched"]["score"] == "0.0"
    for student in first:
        assert (path / "feedback" / student / release.ASSIGNMENT / "deep_ngrams.html").is_file()
    assert "rename it" in (path / "feedback" / "dora_renamed" / release.ASSIGNMENT / "deep_ngrams.html").read_text()
    html = (path / "feedback" / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.html").read_text()
    assert "All tests passed (checked by the grader)" in html
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == sorted(first)
    # private copies are cleaned up; the course's grading key and its set-up record stay
    assert sorted(p.name for p in (path / ".grading").iterdir()) == ["hidden-cases.key", "recorded-source.sha256",
                                                                    "setup.lock"]


def test_nbgrader_releases_the_feedback_of_a_batch_where_each_student_fetches_it(course, tmp_path):
    """nbgrader's release_feedback reads timestamp.txt and submission_secret.txt beside each feedback page
    and files the page under a hash of the secret, which the student's fetch_feedback computes again: the
    batch keeps both as handed in, for a notebook it could not grade too, and replaces a secret that is
    not text (release_feedback would stop at it for the whole class, and no one could fetch it)."""
    path, first = course
    students = sorted(SUBMISSION_SECRETS)
    # One run for all three (nbgrader globs the id); alice and bob handed in by hand, without submit's files.
    done = subprocess.run([sys.executable, "-m", "nbgrader", "release_feedback", release.ASSIGNMENT,
                           "--course=deep-ngrams", f"--Exchange.root={tmp_path}", "--student=[cdl]*"],
                          cwd=path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr.count("Feedback released") == 3, done.stderr[-2000:]
    released = {p.name: p.read_bytes() for p in (tmp_path / "deep-ngrams" / "feedback").iterdir()}
    assert len(released) == len(students)
    for student in students:
        feedback = path / "feedback" / student / release.ASSIGNMENT
        assert (feedback / "timestamp.txt").read_text().startswith(HANDED_IN_AT)
        secret = (feedback / "submission_secret.txt").read_bytes()
        assert secret == (path / "autograded" / student / release.ASSIGNMENT / "submission_secret.txt").read_bytes()
        name = notebook_hash(secret=secret.decode(), notebook_id=release.ASSIGNMENT) + ".html"
        assert released[name] == (feedback / f"{release.ASSIGNMENT}.html").read_bytes(), student
    for student in ("carol_partial", "dora_renamed"):  # what fetch_feedback finds with the student's own secret
        name = notebook_hash(secret=SUBMISSION_SECRETS[student].decode(), notebook_id=release.ASSIGNMENT) + ".html"
        assert name in released, student
    assert b"rename it" in released[notebook_hash(secret=SUBMISSION_SECRETS["dora_renamed"].decode(),
                                                  notebook_id=release.ASSIGNMENT) + ".html"]
    leo = (path / "feedback" / "leo_prints_inputs" / release.ASSIGNMENT / "submission_secret.txt").read_bytes()
    assert leo != SUBMISSION_SECRETS["leo_prints_inputs"] and len(leo) == 128 and leo.isascii()
    assert any("submission_secret.txt" in note and "replaced" in note for note in first["leo_prints_inputs"].notes)
    assert not any("submission_secret" in note for note in first["carol_partial"].notes)


def test_a_second_run_skips_graded_work_until_a_submission_changes(course):
    path, first = course
    again = {o.student: o for o in batch.grade(path, workers=2, progress=False)}
    assert all(o.skipped and o.sandbox == sandbox.mode() for o in again.values())  # the mode is kept
    assert {s: o.scores for s, o in again.items()} == {s: o.scores for s, o in first.items()}
    solved = path / "submitted" / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.ipynb"
    shutil.copy(solved, path / "submitted" / "bob_untouched" / release.ASSIGNMENT / "deep_ngrams.ipynb")
    third = {o.student: o for o in batch.grade(path, workers=1, progress=False)}
    assert not third["bob_untouched"].skipped and points(third["bob_untouched"]) == FULL
    assert all(third[s].skipped for s in ("alice_solved", "carol_partial", "dora_renamed"))


def test_a_worker_sends_the_grades_it_recorded_as_data_and_no_gradebook(course):
    """The course's one writer opens no gradebook of a worker's: the grades come as JSON, and they are
    what the course's gradebook then holds."""
    path, first = course
    assert set(RESULTS) == set(first)
    for student, sent in RESULTS.items():
        assert sent["keys"] == ["autograded", "feedback", "report"], (student, sent["keys"])
        if sent["recorded"] is None:  # not graded by nbgrader: nothing recorded
            assert first[student].scores == {} or student == "dora_renamed", (student, first[student])
            continue
        assert sum(score or 0 for _, _, score, _ in sent["recorded"]["grades"]) == sum(
            got for got, _ in first[student].scores.values()), student
    assert sum(score for _, _, score, _ in RESULTS["alice_solved"]["recorded"]["grades"]) == sum(FULL.values())
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        stamps = {s: gb.find_submission(release.ASSIGNMENT, s).timestamp for s in ("alice_solved", "carol_partial")}
    assert stamps["alice_solved"] is None and RESULTS["alice_solved"]["recorded"]["timestamp"] is None  # none handed in
    assert stamps["carol_partial"] == datetime.fromisoformat(HANDED_IN_AT)  # nbgrader's, as carol's timestamp.txt says
    assert stamps["carol_partial"].isoformat() == RESULTS["carol_partial"]["recorded"]["timestamp"]


def test_a_gradebook_kept_open_for_a_batch_sees_what_others_write_meanwhile(course):
    """The batch keeps one connection to the course's gradebook, but each use forgets what it read: a
    manual grade the Formgrader writes between two merges is seen, and the next merge keeps it."""
    path, first = course
    with gradebook.kept_open(path):
        before = gradebook.scores_of(path, "alice_solved")
        with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as other:  # the Formgrader, say
            grade = next(g for nb in other.find_submission(release.ASSIGNMENT, "alice_solved").notebooks
                         for g in nb.grades if g.max_score > 0)
            grade.manual_score, lost = 0.0, grade.max_score
            other.db.commit()
        try:
            after = gradebook.scores_of(path, "alice_solved")
            assert sum(got for got, _ in after.values()) == sum(got for got, _ in before.values()) - lost
            gradebook.merge(path, {"student": "fay_unrelated", "reason": "x", "notes": [], "seconds": 0,
                                   "private": str(path / "none"), "graded": False, "recorded": None})
            assert gradebook.scores_of(path, "alice_solved") == after
        finally:
            with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as other:
                for nb in other.find_submission(release.ASSIGNMENT, "alice_solved").notebooks:
                    for g in nb.grades:
                        g.manual_score = None
                other.db.commit()
                if "fay_unrelated" in {s.id for s in other.students}:
                    other.remove_submission(release.ASSIGNMENT, "fay_unrelated")
                    other.remove_student("fay_unrelated")
            for kind in ("autograded", "feedback"):
                shutil.rmtree(path / kind / "fay_unrelated", ignore_errors=True)
    assert gradebook.scores_of(path, "alice_solved") == before


def merge_failing_at_the_submission(path, student: str, monkeypatch) -> dict:
    """Merge an ungraded result for `student` with nbgrader's submission write failing (the disk
    is full); the merge must raise. Returns the report."""
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Gradebook, "update_or_create_submission", broken)
    report = {"student": student, "reason": "x", "notes": [], "seconds": 0, "private": str(path / "none"),
              "graded": False}
    with pytest.raises(OSError):
        gradebook.merge(path, report)
    return report


def test_a_failed_merge_leaves_the_gradebook_as_it_was(course, monkeypatch):
    path, _ = course
    db = path / "gradebook.db"
    before = db.read_bytes()
    merge_failing_at_the_submission(path, "alice_solved", monkeypatch)
    assert db.read_bytes() == before
    assert sorted(p.name for p in path.iterdir() if "gradebook" in p.name) == ["gradebook.db"]


def test_a_merge_that_fails_half_way_leaves_no_half_of_it(course, monkeypatch):
    """The gradebook is written in place, in one transaction: a new student added before the
    submission's write fails is not in it either, nor are its folders."""
    path, _ = course
    report = merge_failing_at_the_submission(path, "erin_new", monkeypatch)
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        assert "erin_new" not in {s.id for s in gb.students}
    assert not (path / "autograded" / "erin_new").exists() and not (path / "feedback" / "erin_new").exists()
    monkeypatch.undo()
    gradebook.merge(path, report)  # the same result, merged whole once nothing fails
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        assert gb.find_submission(release.ASSIGNMENT, "erin_new").score == 0
        gb.remove_submission(release.ASSIGNMENT, "erin_new")
        gb.remove_student("erin_new")
    for kind in ("autograded", "feedback"):
        shutil.rmtree(path / kind / "erin_new")


def test_a_submission_the_grader_cannot_read_costs_that_student_only(course, monkeypatch):
    """A fault in reading one folder (a bug of the grader's, a disk error) is "not graded" for that
    student, never a zero, and the batch goes on to the next."""
    path, first = course
    real = batch.handed_in_files

    def failing(course_, student, graded_ids):
        if student == "carol_partial":
            raise OSError("injected: an I/O error")
        return real(course_, student, graded_ids)

    monkeypatch.setattr(batch, "handed_in_files", failing)
    again = {o.student: o for o in batch.grade(path, workers=1, force=True, students=["carol_partial",
                                                                                         "dora_renamed"],
                                               progress=False)}
    assert again["carol_partial"].reason == "not graded: its files could not be read (OSError: injected: an I/O error)"
    assert again["dora_renamed"].reason == first["dora_renamed"].reason and not again["dora_renamed"].skipped
