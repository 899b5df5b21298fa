"""The hardened grader (deepngrams.grade) against hostile and broken submissions.

One module-scoped fixture builds a scratch course with every case of tests/hostile.py, a
correct submission ("alice_solved") and the untouched release ("bob_untouched"), and grades
them all in ONE call of `batch.grade` (several workers) with small limits. It then looks
at the host (marker files, left-over processes, the gradebook, grades.csv, feedback),
calls `grade` again without --force (everything must be skipped) and with --force for a
few students (the verdicts must be the same). The tests only read what the fixture saw.

The batch takes a while: several cases run into the time limits on purpose. For work on the assertions only, `DEEPNGRAMS_HOSTILE_KEEP=1` keeps
the graded course and prints its path; `DEEPNGRAMS_HOSTILE_REUSE=<that path>` then reads
the saved results instead of grading again.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

import hostile
from deepngrams.course import release
from deepngrams.grading import batch
from deepngrams import config
from deepngrams.grading import gradebook

pytestmark = pytest.mark.slow

# The memory limit is the least the grader accepts (config.MIN_GRADING_MEMORY_GIB): the memory cases reach it
# sooner, and at 4 GiB the slowest of them (many small objects) could still be growing when the cell limit
# stopped it, reported for time rather than memory. The cell limit leaves the memory cases time to reach it on
# a loaded machine: without root a process may touch 3 GiB before its limit stops it, and first touches of
# memory are slow on these virtual machines (3 GiB of bytearrays: 4 to 7 s of system time, alone), slower
# still when the batch grades the memory cases side by side (20 s was not enough, and once 40 s); an
# interrupted cell that ignores it loses its kernel 5 s later. No case is meant to reach the wall limit: it
# only has to outlast a correct notebook plus an attack at its end (the memory cases) while the rest of the
# suite runs beside this batch, which makes such a notebook several times slower than its 50 s with the batch
# alone; stopped for time, a memory case would show the wrong reason.
LIMITS = dict(cell_timeout=60.0, interrupt_grace=5.0, wall_timeout=360.0, memory_gib=config.MIN_GRADING_MEMORY_GIB,
              output_mib=16.0)
WORKERS = 3  # several cases wait on their limits: more sandboxes than cores keep the cores busy
CASES = hostile.cases()
BY_NAME = {c.name: c for c in CASES}
REGRADED = ["alice_solved", "bob_untouched", "k03_segfault", "r10_alternative_style", "x06_forge_probe_results",
            "c05_generative_always_temperature_1", "c07_replay_answer_key"]
OVERHEAD_S = 120  # nbgrader's own steps around the sandbox, per submission, on a busy machine


@dataclasses.dataclass
class Graded:
    course: Path
    token: str
    seconds: float  # wall time of the one batch
    outcomes: dict  # student -> {"scores", "reason", "notes", "seconds", "skipped"} (first call)
    again: dict | None  # the same, from the second call (no force); None if the grader changed meanwhile
    forced: dict | None  # the same, from the third call (force, REGRADED only); None likewise
    leftover_processes: list  # (pid, cmdline) of processes carrying the token, right after the batch
    markers: list  # marker files found outside the sandbox, right after the batch
    integrity: str  # PRAGMA integrity_check of gradebook.db
    gradebook: dict  # student -> {exercise: [score, max, manual_score_set]} read from gradebook.db
    students_in_gradebook: list
    csv_rows: list
    report_after_forced: list | None  # students in report.csv after the forced partial regrade


def _plain(outcome) -> dict:
    return {"scores": {k: list(v) for k, v in outcome.scores.items()}, "reason": outcome.reason,
            "notes": list(outcome.notes), "seconds": outcome.seconds, "skipped": outcome.skipped}


def _processes_with(token: str) -> list[tuple[int, str]]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline:
            found.append((int(proc.name), cmdline.strip()))
    return found


def _gradebook(course: Path) -> tuple[list, dict]:
    from nbgrader.api import Gradebook, MissingEntry
    from deepngrams.grading.report import exercise_of
    names = release.exercise_names()
    table = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        students = sorted(s.id for s in gb.students)
        for student in students:
            try:
                sub = gb.find_submission(release.ASSIGNMENT, student)
            except MissingEntry:
                continue
            row = {}
            for nb in sub.notebooks:
                for g in nb.grades:
                    got, out_of, manual = row.get(exercise_of(g.name, names), (0.0, 0.0, False))
                    row[exercise_of(g.name, names)] = (got + (g.score or 0.0), out_of + g.max_score,
                                                       manual or g.manual_score is not None)
            table[student] = {k: list(v) for k, v in row.items()}
    return students, table


def _grade_all(course: Path, token: str) -> Graded:
    limits = config.Limits(**LIMITS)
    version = gradebook.grader_version(course)
    start = time.monotonic()
    first = batch.grade(course, workers=WORKERS, force=False, limits=limits, progress=False)
    seconds = time.monotonic() - start
    leftovers = _processes_with(token)
    markers = [str(p) for d in hostile.outside_dirs(_ctx_stub(course, token)) for p in Path(d).glob(f"*{token}*")]
    with sqlite3.connect(course / "gradebook.db") as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    students, table = _gradebook(course)
    rows = list(csv.DictReader((course / "grades.csv").open()))
    again = forced = report_after = None
    if gradebook.grader_version(course) == version:  # else the grader's code changed under us: skip those tests
        again = {o.student: _plain(o) for o in batch.grade(course, workers=2, force=False, limits=limits,
                                                           progress=False)}
        forced = {o.student: _plain(o) for o in batch.grade(course, workers=2, force=True, students=REGRADED,
                                                            limits=limits, progress=False)}
        report_after = [r["student"] for r in csv.DictReader((course / "report.csv").open())]
    return Graded(course, token, seconds, {o.student: _plain(o) for o in first}, again, forced,
                  leftovers, markers, integrity, table, students, rows, report_after)


def _ctx_stub(course: Path, token: str) -> hostile.Context:
    return hostile.Context(course, None, None, token, LIMITS["cell_timeout"], LIMITS["wall_timeout"],
                           LIMITS["memory_gib"])


@pytest.fixture(scope="module")
def graded():
    from deepngrams.grading import sandbox
    reuse = os.environ.get("DEEPNGRAMS_HOSTILE_REUSE")
    if reuse:
        saved = json.loads((Path(reuse) / "hostile-results.json").read_text())
        saved["course"] = Path(saved["course"])
        yield Graded(**saved)
        return
    if problem := sandbox.available():
        pytest.skip(f"no sandbox here: {problem}")
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-hostile-", dir=release.ROOT / ".cache")))
    rel = release.read(release.RELEASE_NB)
    samples = release.sample_submissions(rel)
    token = uuid.uuid4().hex[:12]
    ctx = hostile.Context(course, samples["alice_solved"], samples["bob_untouched"], token,
                          LIMITS["cell_timeout"], LIMITS["wall_timeout"], LIMITS["memory_gib"])
    submissions = hostile.build_all(ctx)
    submissions["alice_solved"] = hostile.Submission(samples["alice_solved"])
    submissions["bob_untouched"] = hostile.Submission(samples["bob_untouched"])
    for student, sub in submissions.items():
        sub.write(course / "submitted" / student / release.ASSIGNMENT)
    try:
        result = _grade_all(course, token)
        if os.environ.get("DEEPNGRAMS_HOSTILE_KEEP"):
            data = dataclasses.asdict(result)
            data["course"] = str(course)
            (course / "hostile-results.json").write_text(json.dumps(data, indent=1))
            print(f"\nkept the graded course: DEEPNGRAMS_HOSTILE_REUSE={course}")
        yield result
    finally:
        for pid, _ in _processes_with(token):  # what a sandbox let escape: only ours, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for d in hostile.outside_dirs(ctx):
            for p in Path(d).glob(f"*{token}*"):
                p.unlink(missing_ok=True)
        if not os.environ.get("DEEPNGRAMS_HOSTILE_KEEP"):
            shutil.rmtree(course.parent, ignore_errors=True)


def _points(outcome: dict) -> dict:
    """Points per exercise; an exercise missing from the scores counts 0."""
    return {ex: outcome["scores"].get(ex, [0, 0])[0] for ex in hostile.EXERCISES}


def _graded_notebook(graded: Graded, student: str):
    path = graded.course / "autograded" / student / release.ASSIGNMENT / hostile.NOTEBOOK
    return nbformat.read(str(path), 4) if path.is_file() else None


def _output_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif out.get("output_type") == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
            else:
                parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------
# Every case: points, reason, notes
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_points(graded, case):
    """Each exercise gets exactly the points the case deserves, out of the source's points."""
    outcome = graded.outcomes[case.name]
    assert _points(outcome) == case.points, f"{case.why}\nreason: {outcome['reason']!r}\nnotes: {outcome['notes']}"
    assert set(outcome["scores"]) <= set(hostile.EXERCISES), "a made-up graded cell must not add an exercise"
    for ex, (_, out_of) in outcome["scores"].items():
        assert out_of == hostile.POINTS[ex], f"{ex} is worth {hostile.POINTS[ex]} points, not {out_of}"


@pytest.mark.parametrize("case", [c for c in CASES if c.reasons is not hostile.ANY],
                         ids=[c.name for c in CASES if c.reasons is not hostile.ANY])
def test_reason(graded, case):
    """The reason is empty for a normal run, else names what stopped the notebook."""
    reason = graded.outcomes[case.name]["reason"]
    if case.reasons == ("",):
        assert reason == "", case.why
    else:
        assert any(p in reason.lower() for p in case.reasons), f"{reason!r} names none of {case.reasons}"


@pytest.mark.parametrize("case", [c for c in CASES if c.notes], ids=[c.name for c in CASES if c.notes])
def test_repair_is_noted(graded, case):
    """What the grader repaired (a deleted, copied or foreign cell, a wrong kernel) is noted."""
    notes = " ".join(graded.outcomes[case.name]["notes"]).lower()
    assert any(word in notes for word in case.notes), f"notes {graded.outcomes[case.name]['notes']}"


def test_the_correct_submission_gets_full_marks(graded):
    """The plain solved notebook, graded in the same batch as all the hostile ones: 19/19."""
    alice = graded.outcomes["alice_solved"]
    assert _points(alice) == hostile.FULL
    assert sum(got for got, _ in alice["scores"].values()) == 19
    assert sum(out_of for _, out_of in alice["scores"].values()) == 19
    assert alice["reason"] == ""


def test_the_untouched_release_gets_nothing(graded):
    assert _points(graded.outcomes["bob_untouched"]) == hostile.ZERO
    assert graded.outcomes["bob_untouched"]["reason"] == ""


def test_one_outcome_per_student_sorted(graded):
    expected = sorted([c.name for c in CASES] + ["alice_solved", "bob_untouched"])
    assert list(graded.outcomes) == expected
    assert not any(o["skipped"] for o in graded.outcomes.values())


def test_no_submission_runs_much_longer_than_its_wall_limit(graded):
    """The limits bound each submission's time (sandbox wall time plus nbgrader's steps)."""
    slow = {s: o["seconds"] for s, o in graded.outcomes.items() if o["seconds"] > LIMITS["wall_timeout"] + OVERHEAD_S}
    assert not slow


# ----------------------------------------------------------------------------------------
# Nothing leaks out of the sandbox
# ----------------------------------------------------------------------------------------
def test_no_hostile_cell_reports_a_leak(graded):
    """No cell read a forbidden file, reached the network or wrote outside (per its own output)."""
    leaks = {}
    for student in graded.outcomes:
        nb = _graded_notebook(graded, student)
        if nb is not None:
            found = [line for line in _output_text(nb).splitlines() if hostile.LEAK_TAG in line]
            if found:
                leaks[student] = found[:5]
    assert not leaks


def test_leak_reports_reach_the_graded_notebook(graded):
    """The check above can see: a hostile cell's ordinary output is in the graded notebook."""
    nb = _graded_notebook(graded, "n01_network_caught")
    assert nb is not None and "no network" in _output_text(nb)


def test_no_file_written_outside_the_sandbox(graded):
    assert graded.markers == []


def test_no_process_outlives_the_batch(graded):
    """Detached and double-forked processes die with their sandbox."""
    assert graded.leftover_processes == []


def test_writable_file_systems_are_bounded(graded):
    """Besides its working directory, a sandbox may only write to file systems smaller than its
    memory limit: an unbounded tmpfs (half the RAM by default) would bypass the memory limit."""
    nb = _graded_notebook(graded, "f05_write_outside")
    assert nb is not None
    line = next(l for l in _output_text(nb).splitlines() if l.startswith("FILESYSTEMS "))
    seen = json.loads(line[len("FILESYSTEMS "):])
    assert {"/", "/tmp", "/run", "/dev/shm", "/dev", "/bundle/work"} <= set(seen), seen
    too_big = {p: round(v["bytes"] / 2**30, 1) for p, v in seen.items()
               if v["writable"] and v["bytes"] > LIMITS["memory_gib"] * 2**30}
    assert not too_big, f"writable file systems larger than the memory limit (GiB): {too_big}"


def test_steal_code_would_work_without_a_sandbox():
    """The stealing cells are real threats: run here, outside any sandbox, they find solutions."""
    ns = {"BUNDLE": str(release.ROOT)}
    exec(hostile.STEAL.format(candidates=hostile._bundle_paths()), ns)
    for name in hostile.EXERCISES:
        code = ns["_solution_code"](name)
        assert "NotImplementedError" not in code and ("def " in code or "class " in code)


# ----------------------------------------------------------------------------------------
# The course after the batch
# ----------------------------------------------------------------------------------------
def test_gradebook_is_intact_and_has_every_student(graded):
    assert graded.integrity == "ok"
    assert set(graded.outcomes) <= set(graded.students_in_gradebook)


def test_gradebook_matches_the_outcomes(graded):
    """The gradebook holds exactly the reported points (the clobbering cell changed nothing)."""
    for student, outcome in graded.outcomes.items():
        if not outcome["scores"]:
            continue
        book = graded.gradebook.get(student, {})
        assert {ex: v[0] for ex, v in book.items()} == {ex: v[0] for ex, v in outcome["scores"].items()}, student
        assert not any(v[2] for v in book.values()), f"{student}: a manual score appeared"


def test_grades_csv_has_every_student_with_their_total(graded):
    rows = {r["student_id"]: r for r in graded.csv_rows if r.get("assignment") == release.ASSIGNMENT}
    for student, outcome in graded.outcomes.items():
        assert student in rows, student
        total = sum(got for got, _ in outcome["scores"].values())
        assert float(rows[student]["raw_score"] or 0) == pytest.approx(total), student


def test_feedback_exists_for_graded_submissions(graded):
    graded_ok = ["alice_solved", "bob_untouched"] + [c.name for c in CASES if c.points != hostile.ZERO]
    missing = [s for s in graded_ok if not (graded.course / "feedback" / s / release.ASSIGNMENT
                                            / f"{release.ASSIGNMENT}.html").is_file()]
    assert not missing


def test_feedback_shows_the_graders_verdicts_not_the_students_outputs(graded):
    """A faked 'All tests passed' does not reach the feedback of a failed test cell."""
    html = (graded.course / "feedback" / "x08_fake_outputs_in_file" / release.ASSIGNMENT
            / f"{release.ASSIGNMENT}.html").read_text(errors="replace")
    assert "All tests passed (checked by the grader)" not in html
    html = (graded.course / "feedback" / "alice_solved" / release.ASSIGNMENT
            / f"{release.ASSIGNMENT}.html").read_text(errors="replace")
    assert "All tests passed" in html


# ----------------------------------------------------------------------------------------
# Grading again
# ----------------------------------------------------------------------------------------
def _regraded(results):
    if results is None:
        pytest.skip("the grader's code changed during the batch, so nothing is skipped and verdicts may differ")
    return results


def test_a_second_run_skips_everything_and_changes_nothing(graded):
    """Without --force, a second run redoes nothing (same files, same grader) and keeps the verdicts."""
    _regraded(graded.again)
    assert list(graded.again) == list(graded.outcomes)
    assert all(o["skipped"] for o in graded.again.values())
    for student, outcome in graded.outcomes.items():
        assert graded.again[student]["scores"] == outcome["scores"], student
        assert graded.again[student]["reason"] == outcome["reason"], student


def test_forced_regrading_gives_the_same_verdicts(graded):
    """Deterministic: the chosen students graded again from scratch get the same points and reasons."""
    _regraded(graded.forced)
    assert sorted(graded.forced) == sorted(REGRADED)
    for student in REGRADED:
        assert not graded.forced[student]["skipped"]
        assert graded.forced[student]["scores"] == graded.outcomes[student]["scores"], student
        assert graded.forced[student]["reason"] == graded.outcomes[student]["reason"], student


class _LiveContent(HTMLParser):
    """Markers that would run in a browser: in a <script>, an on* attribute or a javascript: URL."""

    def __init__(self, markers):
        super().__init__()
        self.markers, self.live, self.in_script = markers, set(), False

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        for name, value in attrs:
            if value and (name.startswith("on") or value.strip().lower().startswith("javascript:")):
                self.live.update(m for m in self.markers if m in value)

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.live.update(m for m in self.markers if m in data)


def test_feedback_carries_no_script_from_the_notebook(graded):
    """Feedback HTML is read by students and instructors: no script from a submission gets in
    (markdown or raw cells, HTML or JavaScript outputs). Escaped text is fine: it does not run."""
    html = (graded.course / "feedback" / "o03_html_in_notebook" / release.ASSIGNMENT
            / f"{release.ASSIGNMENT}.html").read_text(errors="replace")
    parser = _LiveContent(hostile.XSS_MARKERS + ("HOSTILE_XSS_5", "HOSTILE_XSS_6"))
    parser.feed(html)
    assert not parser.live, f"active content from the submission in the feedback: {sorted(parser.live)}"


class _Text(HTMLParser):
    """The text of a page, as a reader sees it (syntax highlighting splits code into many spans)."""

    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def test_feedback_never_shows_the_hidden_tests(graded):
    """nbgrader's feedback keeps a test cell's source whole; ours shows it without its hidden part."""
    source = release.read(release.SOURCE_NB)
    hidden = [line.strip() for cell in source.cells if "### BEGIN HIDDEN TESTS" in cell.source
              for line in cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].splitlines()
              if len(line.strip()) > 25]
    assert len(hidden) > 10
    pages = sorted(graded.course.glob(f"feedback/*/{release.ASSIGNMENT}/*.html"))
    assert len(pages) > len(CASES) // 2
    for page in pages:
        reader = _Text()
        reader.feed(page.read_text(errors="replace"))
        text = "".join(reader.parts)
        assert "HIDDEN TESTS" not in text, page
        shown = [line for line in hidden if line in text]
        assert not shown, (page, shown[:3])


def test_the_live_content_detector_finds_live_content():
    parser = _LiveContent(("M1", "M2", "M3"))
    parser.feed('<p>&lt;img onerror="M1"&gt;</p><img src="x" onerror="M2"><script>M3</script>')
    assert parser.live == {"M2", "M3"}


def test_report_csv_keeps_every_student_after_regrading_a_few(graded):
    """report.csv is the course's table: grading a few students again must not drop the others."""
    _regraded(graded.report_after_forced)
    assert sorted(graded.report_after_forced) == sorted(graded.outcomes)
