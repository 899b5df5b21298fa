"""Each fact of the course is written once; what repeats it is generated from it or reads it."""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from deepngrams import config
from deepngrams.course import release
from deepngrams.grading.exercises import common

ROOT = Path(__file__).resolve().parent.parent
CODE = sorted(p for p in [*(ROOT / "deepngrams").rglob("*.py"), ROOT / "w1_unittest.py", ROOT / "grader" / "nbgrader_config.py"])


def literals(path: Path) -> list[tuple[float, int]]:
    """Every number written in `path`'s code, with its line (docstrings and comments are not code)."""
    return [(node.value, node.lineno) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)]


def written_in(value: float) -> set[str]:
    return {str(p.relative_to(ROOT)) for p in CODE if any(v == value for v, _ in literals(p))}


def test_the_learning_rate_is_written_in_the_recipe_and_in_the_solution_only():
    """The solution's code is what students see, so it names the rate (test_training checks it is the recipe's)."""
    assert written_in(config.COURSE.learning_rate) == {"deepngrams/config.py", "deepngrams/lm/solution.py"}


@pytest.mark.parametrize("name", ["GREEDY_MARGIN", "MAX_CELLS", "MAX_HANDED_IN_BYTES", "MAX_NOTEBOOK_BYTES", "MAX_DEEP_JSON_BYTES", "MAX_SUBMIT_FILE_BYTES", "WORKER_MARGIN_S", "class Limits",
                                  "cell_timeout: float =", "wall_timeout: float =", "memory_gib: float ="])
def test_a_margin_or_limit_is_set_in_config_only(name):
    setting = re.compile(rf"^\s*{re.escape(name)}" + ("" if name.startswith("class") or ":" in name else r"\s*="), re.M)
    places = [str(p.relative_to(ROOT)) for p in CODE if setting.search(p.read_text(encoding="utf-8"))]
    assert places == ["deepngrams/config.py"], places


def compared_with(path: Path, value: float) -> list[int]:
    """Lines of `path` that compare with the number `value` or pass it as a tolerance (atol=...)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        numbers = []
        if isinstance(node, ast.Compare):
            numbers = [n for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
        elif isinstance(node, ast.keyword) and node.arg in ("atol", "rtol") and isinstance(node.value, ast.Constant):
            numbers = [node.value]
        lines += [n.lineno for n in numbers if n.value == value]
    return lines


def test_the_tolerances_are_w1_unittests_and_the_grader_reads_them():
    for name in ("ATOL", "LOG_SUM_ATOL", "RATE_ATOL"):
        value = common.tolerance(name)
        assert f"\n{name} = " in (ROOT / "w1_unittest.py").read_text()
        exercises = {p.name for p in (ROOT / "deepngrams" / "grading" / "exercises").glob("*.py")
                     if compared_with(p, value)}
        assert not exercises, f"{name} ({value}) is typed again in {sorted(exercises)}"


def test_the_hidden_test_cells_are_the_ones_make_release_writes():
    source = nbformat.read(str(release.SOURCE_NB), 4)
    hidden = {release.grade_id(c): c.source for c in source.cells if (release.grade_id(c) or "").endswith("_hidden")}
    assert len(hidden) == 6
    for grade_id, text in hidden.items():
        assert text == release.hidden_test(grade_id)


def test_plain_nbgrader_allows_a_cell_the_graders_time():
    text = (ROOT / "grader" / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = int(Limits().cell_timeout)" in text


def test_the_finders_see_a_number_typed_again(tmp_path):
    path = tmp_path / "x.py"
    path.write_text('"""0.00125 in a docstring does not count"""\nRATE = 0.00125  # nor in a comment: 0.5\n'
                    'ok = abs(a - b) < 1e-4\nnp.allclose(a, b, atol=1e-3)\n')
    assert [v for v, _ in literals(path)] == [0.00125, 1e-4, 1e-3]
    assert compared_with(path, 1e-4) == [3] and compared_with(path, 1e-3) == [4]
