"""The package's shape: three packages by audience, no import cycle, and nothing of the package in the sandbox."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deepngrams"
INSIDE = PACKAGE / "grading" / "inside"
# Who may import whom: the language model knows nothing of the course, the course nothing of the grader.
LAYERS = {"lm": {"lm"}, "course": {"lm", "course"}, "grading": {"lm", "course", "grading"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every deepngrams module `path` imports, at the top or inside a function."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "deepngrams"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "deepngrams":
                continue
            for alias in node.names:  # `from deepngrams.grading import batch` imports a module
                found.add(f"{base}.{alias.name}" if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/")).exists()
                          or (PACKAGE.parent / (f"{base}.{alias.name}".replace(".", "/") + ".py")).exists() else base)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in root.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` as a path a -> ... -> a, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_import_graph_sees_imports_inside_functions(tmp_path):
    graph = import_graph()
    assert "deepngrams.grading.verdicts" in graph["deepngrams.grading.nbgrader_steps"]  # imported in a method
    assert "deepngrams.lm.solution" in graph["deepngrams.lm.weights"]  # `from deepngrams.lm import solution`


@pytest.mark.parametrize("audience", sorted(LAYERS))
def test_each_audience_imports_only_the_layers_below_it(audience):
    graph = import_graph()
    for module, deps in graph.items():
        if module.startswith(f"deepngrams.{audience}."):
            for dep in deps:
                layer = dep.split(".")[1]
                assert layer not in LAYERS or layer in LAYERS[audience], f"{module} imports {dep}"


def test_what_runs_in_the_sandbox_imports_nothing_of_the_package():
    files = sorted(INSIDE.glob("*.py"))
    assert {p.name for p in files} >= {"harness.py", "probes.py", "w1_unittest_standin.py"}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not node.level and (node.module or "").split(".")[0] != "deepngrams", f"{path.name}: {ast.dump(node)}"
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "deepngrams" for a in node.names), path.name
        assert "from deepngrams" not in path.read_text(encoding="utf-8"), path.name


def test_the_longest_first_order_names_test_files_that_exist():
    """conftest's scheduling order is only as good as its names: a renamed file would start last."""
    from conftest import LONGEST_FIRST
    here = Path(__file__).resolve().parent
    assert [name for name in LONGEST_FIRST if not (here / f"{name}.py").is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
