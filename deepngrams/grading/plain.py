"""nbgrader's own commands, without the sandbox: autograde a course's submissions, print the score table.

    python -m deepngrams plain-autograde [--course grader]

For trusted submissions only: each notebook runs as you, with nothing isolated
(DEEPNGRAMS_NO_SANDBOX=1 for the course's SandboxedExecute step; the verdicts are the grader's
as always). It runs nbgrader in the course directory (generate_assignment to record the
assignment in the gradebook, autograde, generate_feedback), makes the feedback pages safe to
open, writes grades.csv with nbgrader export's columns, then reads the gradebook.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deepngrams.config import ASSIGNMENT, COURSE_DIR
from deepngrams.course.release import nbgrader
from deepngrams.grading.preflight import preflight
from deepngrams.grading.gradebook import export_grades
from deepngrams.grading.nbgrader_steps import NO_SANDBOX_ENV
from deepngrams.grading.report import format_table, publish_feedback, score_table


def unreadable(path: Path) -> str | None:
    """Why a submitted notebook cannot be graded, or None if it can be read (the grader's own check)."""
    return preflight(path, [])[0] or None


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
        done = nbgrader(*args, cwd=course_dir, env={NO_SANDBOX_ENV: "1"})
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "| ERROR]" in line]
        if done.returncode != 0:
            failed = True
            print(f"nbgrader {args[0]} reported errors:", *errors[:20], sep="\n  ", file=sys.stderr)
            if "Cannot add or remove cells" in done.stdout + done.stderr:
                print(f"The source notebook's cells changed since these submissions were graded. To grade "
                      f"again from scratch, remove {course_dir / 'gradebook.db'} (its grades are lost).",
                      file=sys.stderr)
    if (course_dir / "feedback").is_dir():
        publish_feedback(course_dir / "feedback")
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
    p = argparse.ArgumentParser(prog="python -m deepngrams plain-autograde", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--course", type=Path, default=COURSE_DIR, help="nbgrader course directory (default: grader/)")
    args = p.parse_args(argv)
    return run(args.course.resolve())[0]
