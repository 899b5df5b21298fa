"""Autograde the sample submissions with nbgrader and print a per-exercise score table.

    python -m deepngrams demo [--course grader]

It runs nbgrader's own commands in the course directory (generate_assignment to record the
assignment in the gradebook, autograde, generate_feedback), makes the feedback pages safe to
open, writes grades.csv with nbgrader export's columns, then reads the gradebook.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .release import ASSIGNMENT, COURSE_DIR, exercise_names, nbgrader


def exercise_of(grade_id: str, names: list[str]) -> str:
    """The exercise a test cell belongs to: test cells are named test_<exercise>[_<part>]."""
    for name in sorted(names, key=len, reverse=True):
        if grade_id == f"test_{name}" or grade_id.startswith(f"test_{name}_"):
            return name
    return "other"


def unreadable(path: Path) -> str | None:
    """Why a submitted notebook cannot be graded, or None if it can be read (the grader's own check)."""
    from .grade import preflight
    return preflight(path, [])[0] or None


def score_table(course_dir: Path, reasons: dict[str, str] | None = None):
    """(exercise names, [(student, {exercise: (score, max)}, reason)]) from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    reasons = reasons or {}
    names = exercise_names()
    rows = []
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for student in sorted(s.id for s in gb.students):
            if student in reasons:
                rows.append((student, {}, reasons[student]))
                continue
            try:
                sub = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            except MissingEntry:
                rows.append((student, {}, "no submission"))
                continue
            scores: dict[str, list[float]] = {}
            for grade in sub.grades:
                ex = exercise_of(grade.name, names)
                got, out_of = scores.setdefault(ex, [0.0, 0.0])
                scores[ex] = [got + (grade.score or 0.0), out_of + grade.max_score]
            rows.append((student, {k: tuple(v) for k, v in scores.items()}, ""))
    return names, rows


def format_table(names: list[str], rows) -> str:
    """The score table as text for a terminal: student ids and reasons are shown with every
    control character escaped (deepngrams.untrusted.printable)."""
    from .untrusted import printable
    rows = [(printable(student), scores, printable(reason)) for student, scores, reason in rows]
    short = {n: n.replace("temperature_random_sampling", "temperature_sampling") for n in names}
    header = ["student"] + [short[n] for n in names] + ["total", "note"]
    lines = []
    for student, scores, reason in rows:
        if not scores:
            lines.append([student] + ["-"] * len(names) + ["-", reason])
            continue
        got = sum(s for s, _ in scores.values())
        out_of = sum(m for _, m in scores.values())
        lines.append([student] + [f"{scores[n][0]:g}/{scores[n][1]:g}" if n in scores else "-" for n in names]
                     + [f"{got:g}/{out_of:g}", reason])
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines])


def run(course_dir: Path = COURSE_DIR) -> tuple[int, list[str], list]:
    """Grade every submission; print the table. Returns (exit status, exercise names, table rows)."""
    start = time.perf_counter()
    students = sorted(p.name for p in (course_dir / "submitted").iterdir() if (p / ASSIGNMENT).is_dir())
    print(f"Grading {len(students)} submissions of {ASSIGNMENT!r} in {course_dir} ...", flush=True)
    steps = [("generate_assignment", ASSIGNMENT, "--force"),
             ("autograde", ASSIGNMENT, "--force"),
             ("generate_feedback", ASSIGNMENT, "--force")]
    failed = False
    reasons = {}
    for student in students:
        for nb in sorted((course_dir / "submitted" / student / ASSIGNMENT).glob("*.ipynb")):
            problem = unreadable(nb)
            if problem:
                reasons[student] = f"{nb.name}: {problem}"
    for args in steps:
        done = nbgrader(*args, cwd=course_dir)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "| ERROR]" in line]
        if done.returncode != 0:
            failed = True
            print(f"nbgrader {args[0]} reported errors:", *errors[:20], sep="\n  ", file=sys.stderr)
            if "Cannot add or remove cells" in done.stdout + done.stderr:
                print(f"The source notebook's cells changed since these submissions were graded. To grade "
                      f"again from scratch, remove {course_dir / 'gradebook.db'} (its grades are lost).",
                      file=sys.stderr)
    from .grade import _publish_feedback, export_grades
    if (course_dir / "feedback").is_dir():
        _publish_feedback(course_dir / "feedback")
    csv = course_dir / "grades.csv"
    export_grades(course_dir)  # nbgrader export's columns, quoted properly
    names, rows = score_table(course_dir, reasons)
    print()
    print(format_table(names, rows))
    print()
    print(f"Feedback (HTML): {course_dir / 'feedback'}/<student>/{ASSIGNMENT}/")
    print(f"Grades (CSV):    {csv}")
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    return (1 if failed or reasons else 0), names, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepngrams demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--course", type=Path, default=COURSE_DIR, help="nbgrader course directory (default: grader/)")
    args = p.parse_args(argv)
    return run(args.course.resolve())[0]
