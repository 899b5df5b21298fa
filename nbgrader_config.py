"""Lets nbgrader, and the formgrader of `make lab`, run from the bundle's root: the course is grader/."""
from pathlib import Path

c = get_config()  # noqa: F821
COURSE = Path(__file__).resolve().parent / "grader"
load_subconfig(str(COURSE / "nbgrader_config.py"))  # noqa: F821
c.CourseDirectory.root = str(COURSE)
