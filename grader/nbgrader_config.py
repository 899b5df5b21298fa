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
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput,  # noqa: E402
                                    Execute, GetGrades, IgnorePattern, LimitOutput, OverwriteKernelspec,
                                    SaveAutoGrades)

from deepngrams.config import Limits  # noqa: E402
from deepngrams.grading.nbgrader_steps import (DeduplicateIdsCleanly, GradeUpToHere, HideHiddenTests,  # noqa: E402
                                       NormaliseMetadata, OverwriteCellsKeepingOrder)

c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "deep-ngrams"
# Files handed in beside the notebook are never copied for grading: the course's own
# w1_unittest.py, data/ and model/ (found in the bundle above this folder) are used.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            "w1_unittest.py", "data", "model", "deepngrams", "*.py", "*.h5", "*.txt"]

# The graded structure comes from the source notebook: a submission's metadata is rebuilt against it
# first (a made-up graded cell loses it and counts for nothing). A test cell a student deleted is put
# back and run, rather than leaving its grade empty, and a copied graded cell counts once; with fixes
# of nbgrader's own steps (deepngrams/grading/nbgrader_steps.py).
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [NormaliseMetadata, ClearOutput, DeduplicateIdsCleanly, OverwriteKernelspec,
                                      OverwriteCellsKeepingOrder, CheckCellMetadata]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# The grader's time a cell may run (deepngrams/config.py, the sandbox's limit too).
c.Execute.timeout = int(Limits().cell_timeout)
# TensorFlow writes C++ notices to the process's stderr; keep them out of the cell outputs,
# where nbgrader would read any stderr as a failed test.
c.Execute.extra_arguments = ["--IPKernelApp.capture_fd_output=False"]

# nbgrader's own steps, after one of ours: `# grade-up-to-here` in a solution cell stops the run there.
# (`python -m deepngrams grade` swaps Execute for SandboxedExecute: the notebook runs in a sandbox and
# the grader writes each test cell's verdict; see deepngrams/grading/batch.py.)
c.Autograde.autograde_preprocessors = [GradeUpToHere, Execute, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]

# Feedback shows each test cell without its hidden part.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests]
