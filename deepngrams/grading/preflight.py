"""Can a handed-in file be graded, and what will nbgrader repair? Checked before nbgrader reads it."""
from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import stat
from pathlib import Path

from deepngrams.config import (ASSIGNMENT, MAX_CELLS, MAX_HANDED_IN_BYTES, MAX_NOTEBOOK_BYTES, MAX_SUBMIT_FILE_BYTES,
                               SECRET, TIMESTAMP)
from deepngrams.course.exchange import SECRET_REPLACED, new_secret, submitted_time, usable_secret
from deepngrams.grading.cells import SOURCE_NOTEBOOK, holds_hidden_tests, nbgrader_meta
from deepngrams.grading.harmless import harmless_file


def read_handed_in(path: Path, limit: int = MAX_HANDED_IN_BYTES) -> bytes:
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
            raise ValueError(f"file too large ({info.st_size / 2**20:.0f} MiB, at most {limit // 2**20} MiB): clear "
                             f"its outputs in Jupyter (Edit, Clear Outputs of All Cells), save it and hand it in")
        return f.read(limit + 1)


NOTEBOOK = f"{ASSIGNMENT}.ipynb"


def read_submission(folder: Path) -> tuple[dict[str, bytes | str], list[str]]:
    """What grading reads of a student's folder, each file read once: the assignment's notebook and
    what nbgrader's submit writes beside it (its timestamp and secret), by name, as bytes or as the
    reason they could not be read (files that are missing are left out); and the names of the other
    notebooks, never read (nbgrader grades only the assignment's: a thousand links to one large file
    cost nothing)."""
    if any(p.is_symlink() for p in (folder.parent, folder)):
        return {NOTEBOOK: "the submission folder is a link: hand in the files themselves"}, []
    found = _read_present(folder, {NOTEBOOK: MAX_HANDED_IN_BYTES}) | read_submit_files(folder)
    others = sorted(p.name for p in folder.glob("*.ipynb") if p.name != NOTEBOOK) if folder.is_dir() else []
    return found, others


def read_submit_files(folder: Path) -> dict[str, bytes | str]:
    """What nbgrader's submit writes beside the notebook (its timestamp and secret), as `_read_present`."""
    return _read_present(folder, dict.fromkeys((TIMESTAMP, SECRET), MAX_SUBMIT_FILE_BYTES))


def _read_present(folder: Path, limits: dict[str, int]) -> dict[str, bytes | str]:
    """Each file of `limits` (name -> most bytes read) in `folder`, by name, as bytes or as the reason it
    could not be read (`read_handed_in`); missing ones are left out."""
    found: dict[str, bytes | str] = {}
    for name, limit in limits.items():
        if os.path.lexists(folder / name):
            try:
                found[name] = read_handed_in(folder / name, limit)
            except ValueError as e:
                found[name] = str(e)
    return found


def handed_in_timestamp(raw: bytes) -> bytes | None:
    """nbgrader's timestamp.txt as nbgrader reads it (a time, in UTC: exchange.submitted_time), written
    again in nbgrader's own format: whatever else the file held (terminal codes, a time zone nobody
    knows) never reaches the graded folders. None when it holds no time nbgrader can read."""
    try:
        when = submitted_time(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return None if when is None else when.strftime("%Y-%m-%d %H:%M:%S.%f UTC").encode()


def submitted_with(found: dict[str, bytes | str]) -> tuple[dict[str, bytes], str]:
    """The timestamp.txt and submission_secret.txt that go beside every graded notebook and feedback page
    (nbgrader's release_feedback reads both there, and stops for the whole class where one is missing or
    unreadable), from those handed in (`read_submit_files`), and a note when a secret had to be replaced.
    The time is written again in nbgrader's format, or empty where none was handed in or it holds none
    (then the submission is not late, as nbgrader reads an empty one). A secret the grader does not keep
    (`usable_secret`) is replaced by a new one, under which the feedback is released where no one fetches
    it; so is a missing one (handed in without nbgrader's submit), without a note."""
    raw, secret = found.get(TIMESTAMP), found.get(SECRET)
    files = {TIMESTAMP: (handed_in_timestamp(raw) if isinstance(raw, bytes) else None) or b""}
    if isinstance(secret, bytes) and usable_secret(secret):
        return {**files, SECRET: secret}, ""
    return {**files, SECRET: new_secret()}, SECRET_REPLACED if secret is not None else ""


def fingerprint(found: dict[str, bytes | str], others: list[str]) -> str:
    """A digest of what `read_submission` read: a batch skips a student whose fingerprint and grader
    are those of their last grading. Each part is length-prefixed and a file's bytes are told from
    the reason it was not read, so no two readings share one."""
    h = hashlib.sha256()
    parts = [p for name in sorted(found) for p in (name.encode("utf-8", "surrogateescape"), (
        b"B" + found[name] if isinstance(found[name], bytes) else b"E" + found[name].encode("utf-8", "replace")))]
    if NOTEBOOK not in found:  # the others count only in the reason of a missing notebook
        parts += [name.encode("utf-8", "surrogateescape") for name in others]
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def preflight(path: Path, graded_ids: list[str]) -> tuple[str, list[str]]:
    """(reason it cannot be graded or "", notes on what nbgrader will repair)."""
    try:
        return check_notebook(read_handed_in(path), graded_ids)[:2]
    except ValueError as e:
        return str(e), []


def check_notebook(handed_in: bytes, graded_ids: list[str]) -> tuple[str, list[str], bytes]:
    """(reason it cannot be graded or "", notes on what nbgrader will repair, the bytes nbgrader
    reads: metadata made harmless, saved outputs dropped) of a notebook's bytes as handed in."""
    import nbformat
    raw = harmless_file(handed_in)
    if not raw:
        return "empty file: nothing was handed in", [], raw
    if len(raw) > MAX_NOTEBOOK_BYTES:
        return (f"too large, even without its saved outputs ({len(raw) / 2**20:.0f} MiB, at most "
                f"{MAX_NOTEBOOK_BYTES // 2**20} MiB): hand in the assignment's notebook with your answers"), [], raw
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:100]
        return f"not JSON, so not a notebook ({detail}); was it saved from Jupyter?", [], raw
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return "valid JSON but not a notebook (no cells): hand in the .ipynb file itself", [], raw
    version = data.get("nbformat")
    if version != 4:
        return (f"nbformat {repr(version)[:20]} is not supported: open it in JupyterLab and save it "
                f"(nbformat 4)"), [], raw
    cells = data.get("cells")
    if isinstance(cells, list) and len(cells) > MAX_CELLS:
        return (f"too many cells ({len(cells)}, at most {MAX_CELLS}): hand in the assignment's notebook "
                f"with your answers"), [], raw
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises several types for broken files
        first = (str(e).splitlines() or [""])[0][:100]  # some of nbformat's errors have no message
        return f"not a valid nbformat 4 notebook ({type(e).__name__}{': ' * bool(first)}{first})", [], raw
    if holds_hidden_tests(data.get("cells")):
        return SOURCE_NOTEBOOK, [], raw
    notes = []
    kernel = nb.metadata.get("kernelspec", {})
    if kernel.get("language", "python") != "python" or "python" not in str(kernel.get("name", "python3")):
        notes.append(f"kernel {kernel.get('name')!r} replaced by the course's python3")
    ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
    counts = collections.Counter(i for i in ids if isinstance(i, str) and i)  # linear: a notebook may have many cells
    for gid in sorted(g for g, n in counts.items() if n > 1):
        notes.append(f"cell {gid} appears {counts[gid]} times: the first is graded, the others run as ordinary cells")
    for gid in graded_ids:
        if gid not in counts:
            notes.append(f"deleted cell {gid} put back")
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("grade") and gid not in graded_ids:
            notes.append(f"graded cell {gid} is not part of the assignment: it counts for nothing")
    return "", notes, raw
