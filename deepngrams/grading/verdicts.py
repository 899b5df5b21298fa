"""The notebook the sandbox runs (each graded test cell a probe), and what is made of what comes back:
the run's outputs, the reason it stopped, and the grader's verdict in each graded cell."""
from __future__ import annotations

import copy
import json
import re

from deepngrams import config
from deepngrams.grading.cells import NOT_RUN, is_test_cell, nbgrader_meta, source_text
from deepngrams.grading.exercises import judge
from deepngrams.grading.sandbox import Limits, RunResult
from deepngrams.grading.untrusted import colour_budget, inert_output, printable

PROBE_CELL = "__import__('sys').modules['deepngrams_probes'].run({probe!r}, globals(), {inputs!r})"


UNKNOWN_CELL = 'raise RuntimeError("This graded cell is not known to the grader, so it earns nothing.")'


PASSED = "All tests passed (checked by the grader).\n"


SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\n]*")


def cells_to_run(nb) -> int:
    """How many cells of `nb` the sandbox runs: through the last cell that is graded (by a test or
    by hand), holds an answer, is a task, or is code the course did not lock (an empty one runs
    nothing: Jupyter leaves one at the end of a notebook run to its last cell). What follows is the
    course's own locked cells (demonstrations, pictures): the same for everyone, they cannot change
    a score, and running them would cost every submission their time. The nbgrader metadata is
    the source notebook's by then (NormaliseMetadata), and a locked cell's code is the source's
    (OverwriteCells), never the student's."""
    def needed(cell) -> bool:
        meta = nbgrader_meta(cell)
        return any(meta.get(k) for k in ("grade", "solution", "task")) \
            or (cell.get("cell_type") == "code" and not meta.get("locked") and bool(source_text(cell).strip()))
    return max((i + 1 for i, cell in enumerate(nb.cells) if needed(cell)), default=0)


def build_job(nb, prepared: dict, limits: Limits) -> dict:
    """The notebook the sandbox runs: each graded test cell becomes a probe with its inputs, and the
    course's locked cells after the last one that matters are left out (`cells_to_run`); they
    come back without outputs."""
    nb = copy.deepcopy(nb)
    del nb.cells[cells_to_run(nb):]
    probes = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not is_test_cell(cell) or cell.source == NOT_RUN:
            continue
        check = prepared.get(nbgrader_meta(cell).get("grade_id"))
        if check is None:
            cell.source = UNKNOWN_CELL
            continue
        cell.source = PROBE_CELL.format(probe=check["probe"], inputs=json.dumps(check["inputs"]))
        probes[str(i)] = {"grade_id": nbgrader_meta(cell)["grade_id"]}
    return {"notebook": nb, "probes": probes, "cell_timeout": limits.cell_timeout,
            "interrupt_grace": limits.interrupt_grace, "max_observation_chars": config.MAX_OBSERVATION_CHARS,
            "max_notebook_observation_chars": config.MAX_NOTEBOOK_OBSERVATION_CHARS,
            "returned": {"mime": list(SAFE_MIME), "max_outputs": config.MAX_OUTPUTS,
                         "max_traceback_entries": config.MAX_TRACEBACK_ENTRIES}}


def _safe_outputs(outputs, colours: list[int]) -> list:
    """Outputs from the sandbox, kept only where they are well-formed and inert (no HTML or script).
    `colours`: the notebook's `colour_budget()`."""
    import nbformat
    kept = []
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream" and isinstance(out.get("text"), str):
            kept.append(nbformat.v4.new_output("stream", name="stderr" if out.get("name") == "stderr" else "stdout",
                                               text=inert_output(out["text"], colours)))
        elif kind == "error":
            tb = out.get("traceback")
            kept.append(nbformat.v4.new_output("error", ename=inert_output(str(out.get("ename"))[:200], colours),
                                               evalue=inert_output(str(out.get("evalue"))[:2000], colours),
                                               traceback=[inert_output(str(t)[:2000], colours) for t in tb[:config.MAX_TRACEBACK_ENTRIES]]
                                               if isinstance(tb, list) else []))
        elif kind in ("execute_result", "display_data") and isinstance(out.get("data"), dict):
            data = {k: v for k, v in out["data"].items() if k in SAFE_MIME and isinstance(v, (str, list))}
            for mime in ("image/png", "image/jpeg"):  # base64 and nothing else
                if mime in data and not (isinstance(data[mime], str) and _BASE64.fullmatch(data[mime])):
                    del data[mime]
            if isinstance(data.get("text/plain"), list):  # lines, which nbconvert draws as one text
                data["text/plain"] = "".join(map(str, data["text/plain"]))
            if isinstance(data.get("text/plain"), str):
                data["text/plain"] = inert_output(data["text/plain"], colours)
            if data:
                kept.append(nbformat.v4.new_output("display_data", data=data))
    return kept


def reason_of(result: RunResult, limits: Limits) -> str:
    """The first thing that stopped the notebook from running normally, in words ("" if nothing)."""
    for event in result.events:
        kind = event.get("event")
        cell = event.get("cell")
        where = f" in cell {cell}" if isinstance(cell, int) else ""
        if kind == "time limit" and event.get("ignored_interrupt"):
            return (f"time limit: a cell ran over {limits.cell_timeout:g} s and ignored the interrupt{where}, "
                    f"so its kernel was stopped; the cells after it did not run")
        if kind == "time limit":
            return f"time limit: a cell ran over {limits.cell_timeout:g} s and was interrupted{where}"
        if kind == "memory limit" and event.get("scope") == "sandbox":
            return (f"memory limit: the notebook's processes together used more than {limits.memory_gib:g} GiB "
                    f"and the sandbox was stopped; the cells after that did not run")
        if kind == "memory limit":
            return f"memory limit: a process ran out of the {limits.memory_gib:g} GiB it may use{where}"
        if kind == "process limit":
            return f"process limit: the code started more than {limits.processes} processes{where}"
        if kind == "thread refused":
            return (f"process or memory limit: a thread could not be started{where} (the notebook may run "
                    f"{limits.processes} processes and threads, in {limits.memory_gib:g} GiB)")
        if kind == "kernel died":
            code = event.get("returncode")
            how = {-9: "killed", -6: "aborted", -11: "a crash (segmentation fault)", -24: "its CPU time limit"}.get(
                code, f"exit status {code}" if code is not None else "an unknown cause")
            return f"kernel died{where} ({how}); the cells after it did not run"
        if kind == "harness error":
            return f"the notebook could not be run: {str(event.get('error'))[:200]}"
    if result.wall_timed_out:
        return f"time limit: the notebook ran over {limits.wall_timeout:g} s and was stopped"
    if result.output_cut:
        return f"output limit: the notebook printed over {limits.output_mib:g} MiB; the rest was dropped"
    if result.notebook is None:
        if "fork" in result.stderr.lower() or "resource temporarily unavailable" in result.stderr.lower():
            return f"process limit: more than {limits.processes} processes"
        return f"kernel died or the run was stopped (status {result.returncode}); nothing came back"
    return ""


def _shown(problems: list[str]) -> list[str]:
    """A graded cell's failures as its output shows them: printable (they quote what the student's code
    raised or returned, which may hold escape sequences) and of bounded length, however much the code
    made it quote."""
    shown = [printable(p) for p in problems[:config.MAX_PROBLEMS]]
    shown = [p if len(p) <= config.MAX_PROBLEM_CHARS else p[:config.MAX_PROBLEM_CHARS] + " … (cut)" for p in shown]
    if len(problems) > config.MAX_PROBLEMS:
        shown.append(f"… and {len(problems) - config.MAX_PROBLEMS} more")
    return shown


def apply_verdicts(nb, prepared: dict, result: RunResult) -> list[str]:
    """Fill `nb` (the sanitized submission) with the run's outputs and the grader's verdicts.

    Returns the graded cells that failed. Only outputs of ordinary cells come from the
    sandbox; every graded test cell's output is written here, from `checks.judge`.
    """
    import nbformat
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    ran = result.notebook.get("cells") if isinstance(result.notebook, dict) else None
    failed = []
    sanitize = SanitizeHTML()
    colours = colour_budget()
    after_hidden = False  # a hidden check ran before: its inputs reached the student's code (`unquotable`)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":  # the feedback page shows markdown as HTML: no script from students
            sanitize.preprocess_cell(cell, {}, i)
            continue
        same = isinstance(ran, list) and i < len(ran) and isinstance(ran[i], dict)
        count = ran[i].get("execution_count") if same else None
        # The run's prompt numbers stay: failure messages point at "In [k], line n" of the student's code.
        cell.execution_count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None
        if not is_test_cell(cell):
            cell.outputs = _safe_outputs(ran[i].get("outputs"), colours) if same else []
            continue
        gid = nbgrader_meta(cell).get("grade_id")
        if cell.source == NOT_RUN:
            problems = ["Not graded: this test comes after the cell marked `# grade-up-to-here`."]
        elif gid not in prepared:
            problems = ["This graded cell is not known to the grader, so it earns nothing."]
        else:
            problems = judge(prepared[gid], result.probes.get(gid), after_hidden=after_hidden)
            after_hidden = after_hidden or prepared[gid]["hidden"]
        if problems:
            problems = _shown(problems)
            failed.append(gid)
            cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="\n".join(problems),
                                                   traceback=["AssertionError: " + p for p in problems])]
        else:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=PASSED)]
    return failed
