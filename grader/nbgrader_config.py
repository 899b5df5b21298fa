"""nbgrader configuration of the course (used by `nbgrader ...` run in this folder)."""
import os
import sys
from pathlib import Path

# The bundle (the folder with the deepngrams package, w1_unittest.py, data/ and model/). A course kept
# outside the bundle names it here, or in the environment variable DEEPNGRAMS_BUNDLE; by default
# it is the first folder above this one that holds it.
BUNDLE_PATH = ""


def _bundle() -> Path:
    named = BUNDLE_PATH or os.environ.get("DEEPNGRAMS_BUNDLE", "")
    candidates = [Path(named).expanduser()] if named else list(Path(__file__).resolve().parents)
    for folder in candidates:
        if (folder / "deepngrams" / "grading" / "nbgrader_steps.py").is_file():
            return folder.resolve()
    where = f"{named} (named by {'BUNDLE_PATH' if BUNDLE_PATH else 'DEEPNGRAMS_BUNDLE'})" if named else \
        f"any folder above {Path(__file__).resolve().parent}"
    raise RuntimeError(f"the Deep N-grams bundle is not in {where}: set BUNDLE_PATH in {__file__} or the "
                       f"environment variable DEEPNGRAMS_BUNDLE to the folder that holds deepngrams/ and w1_unittest.py")


BUNDLE = _bundle()
sys.path.insert(0, str(BUNDLE))
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, ClearOutput, GetGrades,  # noqa: E402
                                    IgnorePattern, LimitOutput, OverwriteKernelspec, SaveAutoGrades)

from deepngrams.config import Limits  # noqa: E402
from deepngrams.course.course_setup import set_up  # noqa: E402
from deepngrams.grading.nbgrader_steps import (CheckCellMetadataCompiled, DeduplicateIdsCleanly,  # noqa: E402
                                               FeedbackExporter, GradeUpToHere, HideHiddenTests,
                                               NormaliseMetadata, OnlyTheStudentsNotebook,
                                               OverwriteCellsKeepingOrder, SandboxedExecute)
from deepngrams.grading.submission import excluded_students  # noqa: E402

c = get_config()  # noqa: F821

# A fresh course is ready for every door: the assignment recorded in the gradebook (no need to
# click Generate first) and the students named (students.csv, nbgrader's roster format).
set_up(Path(__file__).resolve().parent)
# A student folder nbgrader cannot take (a line break in its name would stop the whole run, markup in
# it would run in the Formgrader's pages, a notebook that is a link or a pipe) is left out, and said why.
c.CourseDirectory.student_id_exclude = excluded_students(Path(__file__).resolve().parent)

c.CourseDirectory.course_id = "deep-ngrams"
# Files handed in beside the notebook are never copied for grading: the course's own
# w1_unittest.py, data/ and model/ (found in the bundle above this folder) are used.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            "w1_unittest.py", "data", "model", "deepngrams", "*.py", "*.h5", "*.txt"]

# Only the student's notebook is graded: one that holds the course's hidden tests (the source notebook,
# through a link) is refused, and what nbgrader copies beside it (HTML, links) is removed from autograded/.
# The graded structure comes from the source notebook: a submission's metadata is rebuilt against it
# first (a made-up graded cell loses it and counts for nothing). A test cell a student deleted is put
# back and run, rather than leaving its grade empty, and a copied graded cell counts once; with fixes
# of nbgrader's own steps (deepngrams/grading/nbgrader_steps.py).
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [OnlyTheStudentsNotebook, NormaliseMetadata, ClearOutput, DeduplicateIdsCleanly,
                                      OverwriteKernelspec, OverwriteCellsKeepingOrder, CheckCellMetadataCompiled]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# nbgrader's own steps, with two of ours: `# grade-up-to-here` in a solution cell stops the run there,
# and SandboxedExecute takes Execute's place: the notebook runs in a sandbox, each graded test cell
# is a probe, and the grader writes each test's verdict (deepngrams/grading/nbgrader_steps.py). So
# the Formgrader's Autograde, plain `nbgrader autograde` and `python -m deepngrams grade` grade alike.
# Without bubblewrap it refuses to run; DEEPNGRAMS_NO_SANDBOX=1 runs notebooks as you (trusted only).
c.Autograde.autograde_preprocessors = [GradeUpToHere, SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadataCompiled]

# A course that puts nbgrader's stock Execute back runs the hidden test cells of the source
# notebook instead, with the grader's time limit per cell (deepngrams/config.py) and TensorFlow's
# C++ notices kept out of the outputs (nbgrader would read any stderr as a failed test).
c.Execute.timeout = int(Limits().cell_timeout)
c.Execute.extra_arguments = ["--IPKernelApp.capture_fd_output=False"]

# Feedback shows each test cell without its hidden part. Its HTML exporter is nbconvert's, with the
# templates compiled once per grading process rather than once per submission.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests]
c.GenerateFeedback.exporter_class = FeedbackExporter

# The course exchange (nbgrader's default exchange), shared by the instructor and the students:
# DEEPNGRAMS_EXCHANGE names the folder, else nbgrader's own default. `make exchange` creates it
# (mode 1777); each student's ~/.jupyter/nbgrader_config.py names the same course id and folder.
c.Exchange.root = os.environ.get("DEEPNGRAMS_EXCHANGE") or "/usr/local/share/nbgrader/exchange"
# The ignore list above drops every .txt handed in, but a submission's timestamp.txt and
# submission_secret.txt come from nbgrader's submit: collect keeps them, so late penalties count and
# release_feedback finds the feedback's key.
from deepngrams.course.exchange import collect_class, keeping_submission_files  # noqa: E402
c.CourseDirectory.ignore = keeping_submission_files(c.CourseDirectory.ignore)
# Anyone may create entries in the inbound folder: collect takes each student's own only (an entry
# named for one student but made by another user would replace that student's work).
c.ExchangeFactory.collect = collect_class()
