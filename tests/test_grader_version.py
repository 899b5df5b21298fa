"""A verdict is never stale: the grader's fingerprint covers everything a verdict is computed from.

`deepngrams grade` skips a submission graded before with the same files and the same fingerprint
(`gradebook.grader_version`); changing any input of the verdicts must change the fingerprint, so that
the next run grades everyone again.
"""
import shutil

import pytest

from deepngrams.course import release
from deepngrams.grading import exercises, gradebook

# Every kind of file a verdict depends on, as paths in a copy of the bundle.
INPUTS = ["deepngrams/grading/exercises/__init__.py", "deepngrams/grading/exercises/sampling.py",
          "deepngrams/grading/inside/probes.py", "deepngrams/lm/solution.py", "deepngrams/config.py",
          "deepngrams/course/reference_values.py", "deepngrams/grading/inside/w1_unittest_standin.py",
          "deepngrams/grading/nbgrader_steps.py",
          "w1_unittest.py", "requirements.txt", "model/reference_values.json", "model/model_card.json",
          "model/grulm.weights.h5", "data/shakespeare_data.txt", "grader/nbgrader_config.py",
          "grader/source/deep_ngrams/deep_ngrams.ipynb", "grader/.grading/hidden-cases.key"]


@pytest.fixture()
def bundle(tmp_path):
    """A copy of what the fingerprint reads: the package, the tests, the model, the corpus, the course."""
    root = tmp_path / "bundle"
    shutil.copytree(release.ROOT / "deepngrams", root / "deepngrams", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("w1_unittest.py", "requirements.txt"):
        shutil.copy(release.ROOT / name, root / name)
    shutil.copytree(release.ROOT / "model", root / "model")
    shutil.copytree(release.ROOT / "data", root / "data")
    release.scratch_course(root)
    return root


@pytest.mark.parametrize("changed", INPUTS)
def test_changing_any_input_of_the_verdicts_changes_the_fingerprint(bundle, changed):
    course = bundle / "grader"
    before = gradebook.grader_version(course, bundle)
    assert gradebook.grader_version(course, bundle) == before  # stable while nothing changes
    path = bundle / changed
    path.write_bytes(path.read_bytes() + b"\n")
    assert gradebook.grader_version(course, bundle) != before, f"{changed} changed, the fingerprint did not"


def test_a_new_module_of_the_package_changes_the_fingerprint(bundle):
    course = bundle / "grader"
    before = gradebook.grader_version(course, bundle)
    (bundle / "deepngrams" / "new_step.py").write_text("X = 1\n")
    assert gradebook.grader_version(course, bundle) != before


def test_the_grading_key_is_made_once_and_readable_by_the_grader_alone(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    key = exercises.grading_key(course)
    path = course / ".grading" / "hidden-cases.key"
    assert len(key) == 32 and path.read_bytes() == key and exercises.grading_key(course) == key
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    (tmp_path / "other").mkdir()
    assert exercises.grading_key(tmp_path / "other") != key  # another course, other cases
