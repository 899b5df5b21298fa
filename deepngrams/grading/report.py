"""What a grading run tells: one Outcome per student, the score table, report.csv and grades.csv, and
feedback pages made safe to open. Every student-controlled string is escaped on its way out."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from deepngrams.atomic import write_bytes
from deepngrams.config import ASSIGNMENT
from deepngrams.course.release import exercise_names
from deepngrams.grading.untrusted import clean_feedback_html, csv_cell, printable

def exercise_of(grade_id: str, names: list[str]) -> str:
    """The exercise a test cell belongs to: test cells are named test_<exercise>[_<part>]."""
    for name in sorted(names, key=len, reverse=True):
        if grade_id == f"test_{name}" or grade_id.startswith(f"test_{name}_"):
            return name
    return "other"


def format_table(names: list[str], rows) -> str:
    """The score table as text for a terminal: student ids and reasons are shown with every
    control character escaped (deepngrams.grading.untrusted.printable)."""
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


@dataclass
class Outcome:
    """One student's result."""

    student: str
    scores: dict = field(default_factory=dict)  # exercise -> (points, out of)
    reason: str = ""  # why it could not run normally ("" when it did)
    notes: list = field(default_factory=list)  # what was repaired
    seconds: float = 0.0
    skipped: bool = False
    sandbox: str = ""  # the sandbox mode it ran in (sandbox.mode(), or "none"); "" when it did not run

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))


def publish_feedback(folder: Path) -> None:
    """Every HTML page in `folder` made safe to open (deepngrams.grading.untrusted.clean_feedback_html)."""
    for page in folder.rglob("*.html"):
        if page.is_file() and not page.is_symlink():
            page.write_text(clean_feedback_html(page.read_text(encoding="utf-8", errors="replace"),
                                                f"{ASSIGNMENT}: feedback"), encoding="utf-8")


def write_report(course: Path, outcomes: list[Outcome]) -> None:
    """report.csv: per student, the points of each exercise, the total, the time, the sandbox mode
    it ran in and the reason."""
    names = exercise_names()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", *names, "total", "out_of", "seconds", "sandbox", "reason", "notes"])
    for o in outcomes:
        got, out_of = o.total
        w.writerow([csv_cell(o.student), *[f"{o.scores[n][0]:g}" if n in o.scores else "" for n in names],
                    f"{got:g}", f"{out_of:g}", f"{o.seconds:.1f}", o.sandbox, csv_cell(o.reason),
                    csv_cell("; ".join(o.notes))])
    write_bytes(course / "report.csv", buf.getvalue().encode())


def format_report(outcomes: list[Outcome]) -> str:
    rows = [(o.student, o.scores, "; ".join(filter(None, [o.reason, *o.notes]))
             + (" (already graded)" if o.skipped else "")) for o in outcomes]
    return format_table(exercise_names(), rows)
