"""Whether the other users of the grading machine can reach a course's private parts: every door
that grades (the batch grader, nbgrader by hand, the Formgrader) tells the instructor so."""
from __future__ import annotations

import shlex
import stat
from pathlib import Path

from deepngrams.config import COURSE_DIR, SOURCE_NB
from deepngrams.course.exchange import closed_ancestor
from deepngrams.grading.untrusted import printable

# What a student with an account on the grading machine must not read: the answers and hidden tests,
# the students' grades, work and feedback (students need nbgrader's exchange, not these).
PRIVATE = (SOURCE_NB.relative_to(COURSE_DIR).as_posix(), "gradebook.db", "grades.csv", "report.csv", "submitted",
           "autograded", "feedback")


def open_to_others(course: Path) -> list[str]:
    """Which of the course's private parts (PRIVATE) any user of this machine can reach, by the
    permission bits (ACLs aside): a file they may read, a folder they may enter (no need to list it:
    student ids and the assignment's name are easy to guess), through folders they may enter."""
    found = []
    for rel in PRIVATE:
        try:
            path = Path(course, rel).resolve()
            mode = path.stat().st_mode
            reachable = mode & (stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH)
            if reachable and closed_ancestor(path) is None:
                found.append(rel)
        except (OSError, RuntimeError):  # missing, not ours to look at, a loop of links: nothing to say
            continue
    return found


def open_to_others_note(course: Path) -> str | None:
    """What to tell the instructor when other users can read the course's private parts, or None."""
    found = open_to_others(course)
    if not found:
        return None
    return (f"every user of this machine can reach {', '.join(found)} in {printable(str(course))}: a student with an "
            f"account here could read the answers, the hidden tests or other students' work and grades. Close the "
            f"course folder to them (chmod o-rwx {shlex.quote(printable(str(course)))}); students need only nbgrader's exchange.")
