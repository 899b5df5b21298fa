"""docs/figures.md as `make bench` rewrites it: the merge of new rows into the page, no benchmark run."""
import os

from deepngrams import bench
from deepngrams.bench import KEYS, ROW_ORDER, merge_figures, parse_figures

TRAINING, GENERATION = KEYS["training"][0], KEYS["generation"][0]
HAND = "`make test` / `make demo` from a clean clone"

PAGE = f"""# Figures

This page is written by `make bench`: run it again rather than editing here.

Measured on: Old CPU, 4 cores

Each pair is measured side by side in one run.

| what | figure |
|---|---|
| {HAND} | 40 min / 79 s |
| {TRAINING} | 1 vs 2 tokens/s |
| {GENERATION} | 3 vs 4 characters/s |
| a row no section writes any more | kept as it is |
"""

HEADER = ["# Figures", "", "This page is written by `make bench`: run it again rather than editing here.", "",
          "Measured on: New CPU, 2 cores", "", "Each pair is measured side by side in one run.", "",
          "| what | figure |", "|---|---|"]


def rows_of(text):
    return parse_figures(text)[0]


def test_a_new_row_replaces_the_row_of_its_key_and_every_other_row_is_kept():
    out = merge_figures(PAGE, {TRAINING: "10 vs 20 tokens/s"}, "New CPU, 2 cores")
    assert out.splitlines()[:len(HEADER)] == HEADER
    rows = rows_of(out)
    assert rows[TRAINING] == "10 vs 20 tokens/s"
    assert rows[GENERATION] == "3 vs 4 characters/s"  # a section this run left out (--only)
    assert rows[HAND] == "40 min / 79 s"  # measured by hand
    assert rows["a row no section writes any more"] == "kept as it is"
    assert out.count(TRAINING) == 1 and "1 vs 2 tokens/s" not in out


def test_bench_rows_come_first_in_section_order_then_the_others_as_found():
    out = merge_figures(PAGE, {KEYS["quality"][0]: "1.2197"}, "x")
    assert list(rows_of(out)) == [TRAINING, GENERATION, KEYS["quality"][0], HAND, "a row no section writes any more"]
    assert set(ROW_ORDER) == {key for keys in KEYS.values() for key in keys}


def test_the_machine_line_is_the_new_one_or_else_the_old_one():
    assert "Measured on: New CPU, 2 cores\n" in merge_figures(PAGE, {}, "New CPU, 2 cores")
    assert "Measured on: Old CPU, 4 cores\n" in merge_figures(PAGE, {})
    assert "Measured on: unknown\n" in merge_figures(None, {})


def test_the_page_written_is_read_back_as_written():
    out = merge_figures(PAGE, {GENERATION: "5 | 6 characters/s\nover two lines"}, "New CPU, 2 cores")
    assert merge_figures(out, {}) == out
    assert rows_of(out)[GENERATION] == "5 | 6 characters/s over two lines"
    assert "5 \\| 6" in out  # a pipe in a figure does not make a third column


def test_a_missing_empty_or_malformed_page_gives_a_well_formed_one():
    new = {TRAINING: "10 vs 20 tokens/s"}
    for existing in (None, "", "not markdown at all\n\x00\x01", "| only one cell |\n|\n||\n| | no key |\n",
                     "# Figures\n| what | figure |\n|---|---|\n| unclosed row | figure\n",
                     "| what | figure |\n|:--|--:|\n| " + TRAINING + " | old |"):
        out = merge_figures(existing, new, "New CPU, 2 cores")
        assert out.splitlines()[:len(HEADER)] == HEADER, existing
        assert rows_of(out) == new, existing
        assert out.endswith(" |\n")


def test_rows_beyond_two_cells_and_duplicate_keys_are_read_without_loss_of_the_first():
    rows = rows_of(f"| a | b | c |\n| {HAND} | first |\n| {HAND} | second |\n")
    assert rows == {"a": "b | c", HAND: "first"}


def test_write_figures_replaces_the_page_and_leaves_no_temporary_file(tmp_path):
    page = tmp_path / "figures.md"
    page.write_text(PAGE)
    bench.write_figures({TRAINING: "10 vs 20 tokens/s"}, page)
    assert rows_of(page.read_text())[TRAINING] == "10 vs 20 tokens/s"
    assert rows_of(page.read_text())[HAND] == "40 min / 79 s"
    assert page.read_text().splitlines()[4] == "Measured on: " + bench.machine()
    assert os.listdir(tmp_path) == ["figures.md"]


def test_the_machines_busy_time_counts_at_least_this_processs_own_cpu_time():
    """The engine bench divides it by the wall time to say how many cores a run kept busy: it is
    the whole machine's, so it grows by this process's CPU time or more, never less."""
    import resource
    import time

    def own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    busy, mine = bench.busy_cpu_seconds(), own()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert bench.busy_cpu_seconds() - busy >= own() - mine - 2 * tick > 0.25


def _timed_cell(source, start, end, nbgrader=None, cell_type="code"):
    import nbformat
    cell = nbformat.v4.new_code_cell(source) if cell_type == "code" else nbformat.v4.new_markdown_cell(source)
    if start:
        cell.metadata["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def test_each_cells_seconds_come_from_its_recorded_timing():
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        _timed_cell("\n\nimport tensorflow as tf\nx = 1", "2026-12-04T02:45:21.000000Z", "2026-12-04T02:45:24.500000Z"),
        _timed_cell("# prose", "2026-12-04T02:45:24.5Z", "2026-12-04T02:45:25.5Z", cell_type="markdown"),
        _timed_cell("never ran", None, None),
        _timed_cell("check()", "2026-12-04T02:45:59.750000Z", "2026-12-04T02:46:01.000000Z",
                    {"grade": True, "grade_id": "test_thing", "points": 1}),
        _timed_cell("def f(): pass", "2026-12-04T02:46:01Z", "2026-12-04T02:46:01.25Z",
                    {"grade": False, "solution": True, "grade_id": "thing"}),
    ])
    assert bench.cell_seconds(nb) == [("cell 0: import tensorflow as tf", 3.5, False), ("test_thing", 1.25, True),
                                      ("thing", 0.25, False)]


def test_the_split_adds_graded_and_other_cells_apart_and_names_the_slowest_first():
    timed = [("setup", 3.5, False), ("test_a", 1.25, True), ("demo", 0.25, False), ("test_b", 2.0, True)]
    assert bench.cell_split(timed, slowest=2) == ("7.0 s of cells: the graded cells 3.2 s, the others 3.8 s; "
                                                  "slowest: setup 3.5 s, test_b 2.0 s")
