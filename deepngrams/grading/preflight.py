"""Can a handed-in file be graded, and what will nbgrader repair? Checked before nbgrader reads it."""
from __future__ import annotations

import collections
import errno
import json
import os
import stat
from pathlib import Path

from deepngrams.config import MAX_CELLS, MAX_NOTEBOOK_BYTES
from deepngrams.grading.cells import nbgrader_meta
from deepngrams.grading.harmless import harmless_file


def read_handed_in(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """The bytes of a file a student handed in. Links, folders and devices are refused (ValueError
    with the reason): the grader runs as root, and a link could point at the solutions."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ValueError("a link, not a file: hand in the notebook itself" if e.errno == errno.ELOOP
                         else f"cannot be read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("not a plain file (a folder?): hand in the notebook itself")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise ValueError(f"file too large ({info.st_size / 2**20:.0f} MiB, at most {limit // 2**20} MiB)")
        return f.read(limit + 1)


def preflight(path: Path, graded_ids: list[str]) -> tuple[str, list[str]]:
    """(reason it cannot be graded or "", notes on what nbgrader will repair)."""
    import nbformat
    try:
        raw = harmless_file(read_handed_in(path))
    except ValueError as e:
        return str(e), []
    if not raw:
        return "empty file: nothing was handed in", []
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:100]
        return f"not JSON, so not a notebook ({detail}); was it saved from Jupyter?", []
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return "valid JSON but not a notebook (no cells): hand in the .ipynb file itself", []
    version = data.get("nbformat")
    if version != 4:
        return f"nbformat {repr(version)[:20]} is not supported: open it in JupyterLab and save it (nbformat 4)", []
    cells = data.get("cells")
    if isinstance(cells, list) and len(cells) > MAX_CELLS:
        return (f"too many cells ({len(cells)}, at most {MAX_CELLS}): hand in the assignment's notebook "
                f"with your answers"), []
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises several types for broken files
        return f"not a valid nbformat 4 notebook ({type(e).__name__}: {str(e).splitlines()[0][:100]})", []
    notes = []
    kernel = nb.metadata.get("kernelspec", {})
    if kernel.get("language", "python") != "python" or "python" not in str(kernel.get("name", "python3")):
        notes.append(f"kernel {kernel.get('name')!r} replaced by the course's python3")
    ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
    counts = collections.Counter(i for i in ids if isinstance(i, str) and i)  # linear: a notebook may have many cells
    for gid in sorted(g for g, n in counts.items() if n > 1):
        notes.append(f"cell {gid} appears {counts[gid]} times: only the first counts")
    for gid in graded_ids:
        if gid not in counts:
            notes.append(f"deleted cell {gid} put back")
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("grade") and gid not in graded_ids:
            notes.append(f"graded cell {gid} is not part of the assignment: it counts for nothing")
    return "", notes
