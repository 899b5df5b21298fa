"""The sandbox, the preflight checks and the verdict step of `deepngrams grade`, piece by piece.

(tests/test_grade_hostile.py grades whole hostile submissions in one batch.)
"""
import ast
import copy
import fcntl
import json
import time
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from deepngrams import config
from deepngrams.grading import cells
from deepngrams.grading import exercises
from deepngrams.grading import preflight
from deepngrams.grading import verdicts
from deepngrams.course import release
from deepngrams.grading import sandbox
from deepngrams.grading import socket_census
from deepngrams.config import GRADE_JOB_ENV, ROOT

pytestmark = [pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]


def run_cells(tmp_path, *sources, limits=None, name="job", cell_timeout=20, grace=10, sandboxed=True):
    """Run a notebook of plain cells in a sandbox (or, with sandboxed=False, without one); returns
    (RunResult, outputs text of each cell)."""
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    result = sandbox.run({"notebook": nb, "probes": {}, "cell_timeout": cell_timeout, "interrupt_grace": grace},
                         tmp_path / name, 0,
                         limits or sandbox.Limits(wall_timeout=60, memory_gib=2), sandboxed=sandboxed)
    cells = (result.notebook or {}).get("cells", [])
    texts = ["".join(o.get("text", "") + str(o.get("evalue", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for o in c.get("outputs", [])) for c in cells]
    return result, texts


@pytest.mark.slow
def test_the_sandbox_sees_only_the_student_files_and_no_network(tmp_path):
    course_file = release.SOURCE_NB
    result, out = run_cells(
        tmp_path,
        "import os; print(os.getuid(), os.getcwd())",
        "print(sorted(os.listdir('/bundle')), sorted(os.listdir('/bundle/model')))",
        f"print(os.path.exists({str(course_file)!r}), os.path.exists({str(ROOT / 'grader')!r}), "
        f"os.path.exists({str(ROOT / 'deepngrams' / 'solution.py')!r}))",
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3); print('network')\n"
        "except OSError as e:\n    print('no network')",
        "try:\n    open('/usr/evil', 'w'); print('wrote /usr')\nexcept OSError:\n    print('read-only')",
        "open('mine.txt', 'w').write('ok'); print(open('mine.txt').read())",
        "try:\n    open('big', 'wb').write(bytes(300 * 2**20)); print('wrote 300 MiB')\nexcept OSError as e:\n"
        "    print('full')",
        "print([os.statvfs(d).f_blocks * os.statvfs(d).f_frsize // 2**20 for d in ('/tmp', '/dev/shm', '.')])",
    )
    assert result.notebook is not None and not result.events, (result.events, result.stderr[-2000:])
    uid, cwd = out[0].split()
    assert int(uid) >= sandbox.FIRST_UID and cwd == "/bundle/work"
    assert out[1].strip() == f"{sorted(['data', 'model', 'w1_unittest.py', 'work'])} " \
                             f"{sorted(['grulm.weights.h5', 'model_card.json'])}"
    assert out[2].strip() == "False False False"
    assert out[3].strip() == "no network"
    assert out[4].strip() == "read-only"
    assert out[5].strip() == "ok" and not list(tmp_path.iterdir())  # in memory, and gone
    assert out[6].strip() == "full"  # the scratch folder holds 256 MiB
    assert out[7].strip() == "[256, 256, 256]"  # every writable place is a capped tmpfs


def test_the_graders_job_never_reaches_the_notebook(tmp_path, monkeypatch):
    """The batch describes each submission's job, with the file that holds its student's key, in the
    grading process's environment: the notebook's kernel never gets it, in the sandbox or without
    one (DEEPNGRAMS_NO_SANDBOX=1, for trusted submissions)."""
    monkeypatch.setenv(GRADE_JOB_ENV, '{"student_key_file": "/somewhere/student.key"}')
    cell = f"import os; print(repr(os.environ.get({GRADE_JOB_ENV!r})), 'student.key' in str(os.environ))"
    for sandboxed in (True, False):
        result, out = run_cells(tmp_path, cell, name=f"run-{sandboxed}", sandboxed=sandboxed)
        assert [text.strip() for text in out] == ["None False"], (sandboxed, out, result.stderr[-500:])


@pytest.mark.slow
def test_a_cell_over_its_time_is_interrupted_and_the_next_cells_run(tmp_path):
    result, out = run_cells(tmp_path, "while True:\n    pass", "print('after')",
                            limits=sandbox.Limits(cell_timeout=3, wall_timeout=60, memory_gib=2), cell_timeout=3)
    assert [e["event"] for e in result.events] == ["time limit"]
    assert out[1].strip() == "after"
    assert "time limit" in verdicts.reason_of(result, sandbox.Limits(cell_timeout=3))


@pytest.mark.slow
def test_a_cell_that_ignores_its_interrupt_loses_its_kernel_after_the_grace(tmp_path):
    """Not held until the notebook's own limit: killed `interrupt_grace` seconds after the interrupt."""
    limits = sandbox.Limits(cell_timeout=2, interrupt_grace=2, wall_timeout=120, memory_gib=2)
    result, out = run_cells(tmp_path, "print('before')",
                            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                            "print('never')", limits=limits, cell_timeout=2, grace=2)
    assert [e["event"] for e in result.events] == ["time limit", "kernel died"]
    assert result.events[0]["ignored_interrupt"] and result.events[0]["cell"] == 1
    assert not result.wall_timed_out and result.seconds < 60
    assert out[0].strip() == "before" and "never" not in "".join(out)
    reason = verdicts.reason_of(result, limits)
    assert reason.startswith("time limit") and "ignored the interrupt in cell 1" in reason


@pytest.mark.slow
def test_an_interrupted_cell_that_stops_keeps_its_kernel(tmp_path):
    """A cell that honours the interrupt ends within the grace: its kernel stays and the next cells run."""
    result, out = run_cells(tmp_path, "import time\nwhile True:\n    time.sleep(0.1)", "print('after')",
                            cell_timeout=2, grace=30)
    assert [e["event"] for e in result.events] == ["time limit"]
    assert out[1].strip() == "after"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox users are real users as root only")
def test_sandboxes_at_once_never_share_a_user_even_for_one_slot(tmp_path):
    """Two batches (or two graders) on one machine: a fork bomb in one must not use up the other's
    process limit, so no two sandboxes run as one user, whatever slot they were given."""
    import concurrent.futures
    cell = "import os, time\nprint(os.getuid())\ntime.sleep(4)"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(run_cells, tmp_path, cell, name=f"job{i}") for i in range(3)]
        uids = [int(future.result()[1][0]) for future in runs]
    assert len(set(uids)) == 3 and all(sandbox.FIRST_UID <= uid < sandbox.FIRST_UID + sandbox.SANDBOX_USERS
                                       for uid in uids)
    free = []  # their users are free again: each lock can be taken at once
    for uid in uids:
        fd = os.open(sandbox.USER_LOCKS / str(uid), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free.append(uid)
        except BlockingIOError:  # another test's sandbox may hold it by now
            pass
        finally:
            os.close(fd)
    assert free
    assert oct(sandbox.USER_LOCKS.stat().st_mode & 0o777) == "0o700"


@pytest.mark.slow
def test_the_watchdog_walks_the_sandbox_tree_as_a_full_scan_would(monkeypatch):
    """The cheap walk (children lists) finds what a read of every process finds: children of other
    threads and grandchildren included; a kernel without children lists gets the full scan."""
    import subprocess
    import sys as _sys
    code = ("import subprocess, threading, time\n"
            "kids = []\n"
            "t = threading.Thread(target=lambda: kids.append(subprocess.Popen(['sleep', '30'])))\n"
            "t.start(); t.join()\n"
            "kids.append(subprocess.Popen(['sh', '-c', 'sleep 30 & sleep 30; wait']))\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([_sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while len(sandbox._descendants_by_scan(proc.pid)[0]) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        # The last children may still be starting (sh forks, then execs sleep): their memory settles.
        for _ in range(50):
            walked, scanned = sandbox._descendants(proc.pid), sandbox._descendants_by_scan(proc.pid)
            if sorted(walked[0]) == sorted(scanned[0]) and abs(walked[1] - scanned[1]) < 2**20:
                break
            time.sleep(0.1)
        assert len(scanned[0]) == 5 and sorted(walked[0]) == sorted(scanned[0])
        assert walked[1] > 0 and abs(walked[1] - scanned[1]) < 2**20
        monkeypatch.setattr(sandbox, "_children", lambda pid: None)
        assert sorted(sandbox._descendants(proc.pid)[0]) == sorted(scanned[0])
    finally:
        for pid in sandbox._descendants_by_scan(proc.pid)[0][::-1]:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        proc.wait()


def test_memory_over_the_limit_is_a_memory_error(tmp_path):
    result, out = run_cells(tmp_path, "x = bytearray(6 * 2**30)", "print('after')")
    assert [e["event"] for e in result.events] == ["memory limit"]
    assert "memory limit" in verdicts.reason_of(result, sandbox.Limits())


def test_a_total_just_over_the_limit_never_reads_as_the_limit():
    limit = int(1.25 * 2**30)
    assert sandbox.gib_rounded_up(limit + 1) > 1.25
    assert sandbox.gib_rounded_up(limit + 5 * 2**20) == 1.26
    assert sandbox.gib_rounded_up(limit) == 1.25
    assert sandbox.gib_rounded_up(2 * 2**30) == 2.0


# Four children, each writing 450 MiB (under the 1.25 GiB a process may use), together 1.8 GiB,
# then a sleep of 200 s: a sandbox that is not stopped runs longer than that, far above the bound
# the tests check, itself far above a stop's few seconds even on a loaded machine.
CHILDREN_OVER_THE_LIMIT = """
import subprocess, sys, time
hog = "b = b'x' * (450 * 2**20); import time; time.sleep(300)"
children = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range(4)]
time.sleep(200)
print('not stopped', [c.poll() for c in children])
"""
STOPPED_WITHIN_S = 120
CHILDREN_LIMITS = dict(wall_timeout=240, cell_timeout=220)  # the sleep would end within them


@pytest.mark.slow
def test_processes_together_over_the_memory_limit_stop_the_sandbox(tmp_path):
    limits = sandbox.Limits(wall_timeout=CHILDREN_LIMITS["wall_timeout"], memory_gib=1.25)
    result, out = run_cells(tmp_path, "print('before')", CHILDREN_OVER_THE_LIMIT, "print('after')", limits=limits,
                            cell_timeout=CHILDREN_LIMITS["cell_timeout"])
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, out)
    assert 1.25 < result.events[0]["gib"] < 2.0 and result.peak_memory_mib > 1.25 * 1024
    assert result.notebook is None and result.seconds < STOPPED_WITHIN_S  # stopped, not left to finish its sleep
    assert verdicts.reason_of(result, limits) == ("memory limit: the notebook's processes together used more than "
                                               "1.25 GiB and the sandbox was stopped; the cells after that did not run")


# Memory that no process's resident size shows: memory files written (never mapped) and SysV
# shared memory filled a slice at a time (each segment detached again). Each line says how much
# the notebook held that way, or the error that stopped it; then how many sockets it could open.
HIDDEN_MEMORY = r"""
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
CHUNK = 64 * 2**20
def memfd(mib):
    held, fds = 0, []
    try:
        while held < mib:
            fd = os.memfd_create('hidden')
            fds.append(fd)
            for _ in range(4):  # 256 MiB a file, under the file size limit
                os.write(fd, b'x' * CHUNK)
                held += CHUNK // 2**20
        return f'{held} MiB'
    except OSError as e:
        return f'{type(e).__name__} {errno.errorcode.get(e.errno)} after {held} MiB'
def sysv_shm(mib):
    held = 0
    while held < mib:
        shm = libc.shmget(0, 128 * 2**20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if shm < 0:
            return f'shmget {errno.errorcode.get(ctypes.get_errno())} after {held} MiB'
        at = libc.shmat(shm, None, 0)
        ctypes.memset(at, 1, 128 * 2**20)
        libc.shmdt(ctypes.c_void_p(at))
        held += 128
    return f'{held} MiB'
def queue():
    return 'msgget ' + ('ok' if libc.msgget(0, 0o1600) >= 0 else errno.errorcode.get(ctypes.get_errno()))
def semaphores(mib):
    held = 0
    while held < mib:  # a set of 32,000 semaphores (the most one set may have) holds 2 MiB of the kernel's
        if libc.semget(0, 32000, 0o1600) < 0:  # IPC_PRIVATE, IPC_CREAT | 0600
            return f'semget {errno.errorcode.get(ctypes.get_errno())} after {held} MiB'
        held += 2
    return f'{held} MiB'
def sockets():
    pairs = []
    try:
        while len(pairs) < 5000:
            pairs.append(socket.socketpair())
        return f'{len(pairs)} pairs'
    except OSError as e:
        return f'{errno.errorcode.get(e.errno)} after {len(pairs)} pairs'
print("memfd", memfd(1536)); print("shm", sysv_shm(1536)); print("sem", semaphores(1536)); print(queue())
print('sockets', sockets())
"""
HIDDEN_MEMORY_LIMITS = dict(wall_timeout=300, memory_gib=1.0)
# Writing 3 GiB and 5,000 socket pairs: 20 s on a loaded machine is not enough, and once, as an ordinary user
# beside two other test workers, 75 s was not either.
HIDDEN_MEMORY_CELL_S = 150


def hidden_memory_lines(text: str) -> dict:
    return dict(line.split(" ", 1) for line in text.strip().splitlines())


@pytest.mark.slow
def test_memory_that_no_process_shows_is_refused(tmp_path):
    """Memory files, SysV shared memory and semaphores are refused (the watchdog could not see them), and a
    process may hold a thousand descriptors (pipes and sockets hold memory too), not a million."""
    result, out = run_cells(tmp_path, HIDDEN_MEMORY, limits=sandbox.Limits(**HIDDEN_MEMORY_LIMITS),
                            cell_timeout=HIDDEN_MEMORY_CELL_S)
    assert result.notebook is not None and not result.events, (result.events, result.stderr[-2000:])
    found = hidden_memory_lines(out[0])
    assert found["memfd"] == "PermissionError EPERM after 0 MiB", found
    assert found["shm"] == "shmget EPERM after 0 MiB" and found["msgget"] == "EPERM", found
    assert found["sem"] == "semget EPERM after 0 MiB", found
    assert found["sockets"].startswith("EMFILE after ") and int(found["sockets"].split()[2]) < 520, found


@pytest.mark.slow
def test_without_the_filter_memory_files_and_shared_memory_hide_from_the_watchdog(tmp_path, monkeypatch):
    """The control: with those calls allowed, a notebook held 4.5 GiB past a 1 GiB limit unseen."""
    monkeypatch.setattr(sandbox, "REFUSED", ("add_key", "request_key", "keyctl"))
    result, out = run_cells(tmp_path, HIDDEN_MEMORY, limits=sandbox.Limits(**HIDDEN_MEMORY_LIMITS),
                            cell_timeout=HIDDEN_MEMORY_CELL_S)
    assert result.notebook is not None and not result.events, (result.events, result.stderr[-2000:])
    found = hidden_memory_lines(out[0])
    assert found["memfd"] == found["shm"] == found["sem"] == "1536 MiB" and found["msgget"] == "ok", found
    assert result.peak_memory_mib < 1024, result.peak_memory_mib


# Files in the sandbox's in-memory folders: 180 MiB of data in each of the four (720 MiB) and
# 300,000 empty files (about 290 MiB the kernel keeps for them, which no tmpfs size caps).
IN_MEMORY_FILES = """
import os, time
for d in ('/tmp', '/run', '/dev/shm', '.'):
    with open(os.path.join(d, 'data'), 'wb') as f:
        for _ in range(180):
            f.write(b'x' * 2**20)
    os.mkdir(os.path.join(d, 'many'))
    for i in range(75_000):
        os.close(os.open(os.path.join(d, 'many', str(i)), os.O_CREAT | os.O_WRONLY))
time.sleep(3)
print('not stopped')
"""
IN_MEMORY_FILES_LIMITS = dict(wall_timeout=120, memory_gib=1.0)


@pytest.mark.slow
def test_files_in_memory_count_against_the_memory_limit(tmp_path):
    """The in-memory folders' files, their data and each file itself, are the sandbox's memory."""
    result, out = run_cells(tmp_path, IN_MEMORY_FILES, limits=sandbox.Limits(**IN_MEMORY_FILES_LIMITS),
                            cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, result.stderr[-2000:])
    assert result.notebook is None


@pytest.mark.slow
def test_without_counting_each_file_many_empty_files_pass_the_limit(tmp_path, monkeypatch):
    """The control: counting the files' data alone, the same notebook runs to its end."""
    monkeypatch.setattr(sandbox, "INODE_BYTES", 0)
    result, out = run_cells(tmp_path, IN_MEMORY_FILES, limits=sandbox.Limits(**IN_MEMORY_FILES_LIMITS),
                            cell_timeout=100)
    assert result.notebook is not None and not result.events, (result.events, result.stderr[-2000:])
    assert "not stopped" in out[0] and 720 < result.peak_memory_mib < 1024, result.peak_memory_mib


@pytest.mark.slow
def test_a_small_notebook_is_not_stopped_and_its_peak_memory_is_recorded(tmp_path):
    # The second cell holds the 100 MiB for ten of the watchdog's samples: the kernel is stopped as soon
    # as the last cell ends, and a loaded machine could otherwise take no sample while it is there.
    result, out = run_cells(tmp_path, "b = b'x' * (100 * 2**20); print(len(b))",
                            f"import time; time.sleep({10 * sandbox.WATCH_SECONDS})",
                            limits=sandbox.Limits(wall_timeout=60, memory_gib=1.25))
    assert not result.events and out[0].strip() == str(100 * 2**20)
    assert 100 < result.peak_memory_mib < 1024, result.peak_memory_mib


@pytest.mark.slow
def test_a_failing_memory_sample_does_not_end_the_watch(tmp_path, monkeypatch):
    """Processes vanish between the listing of /proc and its reading: whatever a sample raises,
    the watchdog goes on, and the samples after it still stop the sandbox."""
    real, calls = sandbox._descendants, []

    def flaky(root):
        calls.append(root)
        if len(calls) % 2:
            raise ProcessLookupError(root)
        return real(root)

    monkeypatch.setattr(sandbox, "_descendants", flaky)
    limits = sandbox.Limits(wall_timeout=60, memory_gib=1.25)
    result, out = run_cells(tmp_path, "print('before')", CHILDREN_OVER_THE_LIMIT, limits=limits)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], result.events
    assert len(calls) > 2


# The end of the two notebooks below: CHILDREN children, each holding what HOLD() made while the
# watchdog looks.
HELD_BY_CHILDREN = """
kids = []
for _ in range(CHILDREN):
    pid = os.fork()
    if pid == 0:
        kept = HOLD()
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
time.sleep(50)
print('not stopped')
"""


# Kernel memory in socket buffers, in no process's resident size: CHILDREN processes each fill
# socket pairs ("unix": both ends, about 0.4 MiB a pair at the default buffer sizes) or TCP
# connections on 127.0.0.1 ("tcp": a few MiB each), together well over the 1 GiB limit, then sleep.
SOCKET_BUFFERS = r"""
import os, socket, time
KIND, CHILDREN, EACH = {kind!r}, {children}, {each}
def fill(end):
    end.setblocking(False)
    try:
        while True:
            end.send(b'x' * 65536)
    except (BlockingIOError, OSError):
        pass
def held():
    if KIND == 'unix':
        pairs = [socket.socketpair() for _ in range(EACH)]
        for pair in pairs:
            for end in pair:
                fill(end)
        return pairs
    server = socket.create_server(('127.0.0.1', 0), backlog=EACH)
    ends = []
    for _ in range(EACH):
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        ends += [client, accepted]
        fill(client); fill(accepted)
    return ends
""" + HELD_BY_CHILDREN.replace("HOLD", "held")
SOCKET_BUFFERS_CASES = {"unix": dict(kind="unix", children=8, each=450), "tcp": dict(kind="tcp", children=4, each=40)}
SOCKET_LIMITS = dict(wall_timeout=120, memory_gib=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SOCKET_BUFFERS_CASES))
def test_socket_buffers_count_against_the_memory_limit(tmp_path, kind):
    """Buffers of the sandbox's sockets are its memory, whatever process holds them."""
    limits = sandbox.Limits(**SOCKET_LIMITS)
    result, out = run_cells(tmp_path, "print('before')", SOCKET_BUFFERS.format(**SOCKET_BUFFERS_CASES[kind]),
                            limits=limits, cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, out, result.stderr[-2000:])
    assert result.notebook is None and result.peak_memory_mib > 1024 and result.seconds < STOPPED_WITHIN_S


# Forked children each hold as many pipes as their open files allow, each pipe full (past the user's
# first 64 MiB of pipes, two pages a pipe): together more than the limit, in no process's resident size.
PIPE_BUFFERS = """
import os, resource, time
CHILDREN = {children}
def fill():
    pipes = []
    try:
        while True:
            r, w = os.pipe()
            os.set_blocking(w, False)
            try:
                while True:
                    os.write(w, b'x' * 4096)
            except BlockingIOError:
                pass
            pipes.append((r, w))
    except OSError:
        return pipes
""" + HELD_BY_CHILDREN.replace("HOLD", "fill")


@pytest.mark.slow
def test_pipe_buffers_count_against_the_memory_limit(tmp_path):
    """Each descriptor a sandbox's processes have room for is charged the pipe it could hold: 160
    processes of 1024 descriptors (1.25 GiB of pipes at two pages each) pass a 1 GiB limit."""
    limits = sandbox.Limits(**SOCKET_LIMITS)
    result, out = run_cells(tmp_path, "print('before')", PIPE_BUFFERS.format(children=160), limits=limits,
                            cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, out, result.stderr[-2000:])
    assert result.notebook is None and result.peak_memory_mib > 1024 and result.seconds < STOPPED_WITHIN_S


# Kernel memory no count would see, refused by the filter: extended attributes (an access ACL of
# 8,000 entries is a 128 KiB allocation per file) and record locks (no limit on their number). What
# still works: copying a file with its metadata, fcntl's other commands, SQLite in memory, IPython's
# history of the cells run.
XATTRS_AND_LOCKS = r"""
import errno, fcntl, os, shutil, sqlite3, struct
found = {}
open('/tmp/f', 'w').write('x')
def tried(name, call):
    try:
        call(); found[name] = 'ok'
    except OSError as e:
        found[name] = errno.errorcode.get(e.errno, str(e.errno))
acl = struct.pack('<I', 2) + struct.pack('<HHI', 1, 6, 0xFFFFFFFF) + b''.join(
    struct.pack('<HHI', 2, 4, 70000 + i) for i in range(8000)) + struct.pack('<HHI', 4, 4, 0xFFFFFFFF) +     struct.pack('<HHI', 0x10, 6, 0xFFFFFFFF) + struct.pack('<HHI', 0x20, 4, 0xFFFFFFFF)
tried('acl', lambda: os.setxattr('/tmp/f', 'system.posix_acl_access', acl))
tried('user_xattr', lambda: os.setxattr('/tmp/f', 'user.note', b'x'))
fd = os.open('/tmp/f', os.O_RDWR)
tried('lockf', lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
tried('getlk', lambda: fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0)))
found['getfl'] = 'ok' if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_RDWR else 'wrong'
shutil.copy2('/tmp/f', '/tmp/g'); found['copy2'] = open('/tmp/g').read()
con = sqlite3.connect(':memory:'); con.execute('create table t (x)'); con.execute('insert into t values (7)')
found['sqlite_memory'] = con.execute('select x from t').fetchone()[0]
found['history'] = len(list(get_ipython().history_manager.get_range())) >= 1
print('FOUND', found)
"""


@pytest.mark.slow
def test_extended_attributes_and_record_locks_are_refused(tmp_path):
    result, out = run_cells(tmp_path, "print('before')", XATTRS_AND_LOCKS)
    assert result.notebook is not None and not result.events, (result.events, result.stderr[-2000:])
    assert "FOUND" in out[1], out
    found = ast.literal_eval(out[1].split("FOUND", 1)[1].strip())
    assert found == {"acl": "ENOTSUP", "user_xattr": "ENOTSUP", "lockf": "ENOLCK", "getlk": "ENOLCK", "getfl": "ok",
                     "copy2": "x", "sqlite_memory": 7, "history": True}, found


# Memory map entries: one every other page of an unreadable reservation (ENTRIES_EACH x 2, under
# vm.max_map_count), no memory touched. Each entry holds about 220 bytes of the kernel's.
MAP_ENTRIES = """
import ctypes, os, time
CHILDREN = {children}
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
def entries(n={each}):
    page = os.sysconf('SC_PAGE_SIZE')
    base = libc.mmap(None, 2 * n * page, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS
    for i in range(n):
        libc.mprotect(base + 2 * i * page, page, 1)  # PROT_READ: an entry of its own
    return base
"""
# One shared page of a file mapped every 2 MiB of the address space: a page of page tables for each.
PAGE_TABLES = """
import ctypes, tempfile, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
f = tempfile.TemporaryFile(); f.truncate(4096)
n, stride = {each}, 2 * 2**20
base = libc.mmap(None, n * stride, 0, 0x22, -1, 0)  # a reservation: PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS
for i in range(n):  # PROT_READ, MAP_SHARED | MAP_FIXED
    ctypes.string_at(libc.mmap(base + i * stride, 4096, 1, 0x11, f.fileno(), 0), 1)
print('ready', flush=True)
time.sleep(60)
"""


def _status_kib(pid: int, label: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(label))


def test_page_tables_and_map_entries_are_counted_and_zombies_hold_nothing(tmp_path):
    """What no resident size shows: the watchdog's cheap count holds the page tables, its exact count
    the map entries too; a zombie (ended, not yet reaped) holds nothing."""
    import subprocess
    import sys as _sys
    code = MAP_ENTRIES.format(children=0, each=20000) + "entries()\nprint('ready', flush=True)\ntime.sleep(60)\n"
    procs = [subprocess.Popen([_sys.executable, "-S", "-c", source], stdout=subprocess.PIPE, text=True)
             for source in (code, PAGE_TABLES.format(each=2000))]
    zombie = subprocess.Popen([_sys.executable, "-S", "-c", "pass"])
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
        many_entries, many_tables = (p.pid for p in procs)
        rss, tables = (_status_kib(many_tables, label) * 1024 for label in ("VmRSS:", "VmPTE:"))
        assert tables > 5 * 2**20 and sandbox._resident(many_tables) == rss + tables
        pss = sandbox._proc_number(many_entries, "smaps_rollup", b"Pss:") * 1024
        assert sandbox._map_entries(many_entries) > 40000
        assert sandbox._exact([many_entries]) >= pss + 40000 * sandbox.MAP_ENTRY_BYTES
        deadline = time.monotonic() + 10
        while "Z" not in open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1][:3]:  # ended, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sandbox._resident(zombie.pid) == 0 and sandbox._exact([zombie.pid]) == 0
        tree, held, live = sandbox._with_memory([many_entries, many_tables, zombie.pid])
        assert live == 2 and held == sandbox._resident(many_entries) + sandbox._resident(many_tables)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        zombie.wait()


@pytest.mark.slow
def test_map_entries_of_many_small_processes_count_against_the_memory_limit(tmp_path):
    """80 forked processes of 60,000 map entries each (about 1.2 GiB of the kernel's, while their
    proportional sizes stay small) pass a 1 GiB limit."""
    limits = sandbox.Limits(**SOCKET_LIMITS)
    source = MAP_ENTRIES.format(children=80, each=30000) + HELD_BY_CHILDREN.replace("HOLD", "entries")
    result, out = run_cells(tmp_path, "print('before')", source, limits=limits, cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, out, result.stderr[-2000:])
    assert result.notebook is None and result.peak_memory_mib > 1024 and result.seconds < STOPPED_WITHIN_S


def test_the_descriptors_a_process_has_room_for_are_read_from_its_status(tmp_path):
    """FDSize: at least the descriptors it holds, for any process, a process that is not dumpable too."""
    import subprocess
    import sys
    code = ("import ctypes, os, sys, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); "
            "kept = [os.pipe() for _ in range(300)]; print('ready', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert sandbox._descriptor_slots([child.pid]) >= 600
        assert sandbox._descriptor_slots([child.pid, os.getpid()]) > sandbox._descriptor_slots([child.pid])
    finally:
        child.kill()
        child.wait()
    assert sandbox._descriptor_slots([child.pid]) == 0  # ended: nothing


@pytest.mark.slow
def test_a_failing_socket_count_does_not_end_the_watch(tmp_path, monkeypatch):
    """A count of the sandbox's sockets that fails keeps the last one, and the counts after it still
    stop the sandbox."""
    real, calls = socket_census.SocketCensus.bytes_held, []

    def flaky(self, budget):
        calls.append(budget)
        if len(calls) % 2:
            raise OSError("sock_diag failed")
        return real(self, budget)

    monkeypatch.setattr(socket_census.SocketCensus, "bytes_held", flaky)
    result, out = run_cells(tmp_path, "print('before')", SOCKET_BUFFERS.format(**SOCKET_BUFFERS_CASES["unix"]),
                            limits=sandbox.Limits(**SOCKET_LIMITS), cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, result.peak_memory_mib, out)
    assert len(calls) > 2


@pytest.mark.slow
def test_a_notebook_holding_idle_sockets_keeps_its_small_peak(tmp_path):
    """Idle sockets hold next to nothing: a notebook with a few dozen of them (and the harness's
    own) is charged what they hold, not what they could hold."""
    held = ("import socket, time\npairs = [socket.socketpair() for _ in range(48)]\n"
            "server = socket.create_server(('127.0.0.1', 0))\nclient = socket.create_connection(server.getsockname())\n"
            "client.sendall(b'x' * 4096)\n"
            f"time.sleep({10 * sandbox.WATCH_SECONDS})\nprint(len(pairs))")
    result, out = run_cells(tmp_path, held, limits=sandbox.Limits(wall_timeout=60, memory_gib=1.0))
    assert not result.events and out[0].strip() == "48", (result.events, result.peak_memory_mib, out)
    assert 0 < result.peak_memory_mib < 400, result.peak_memory_mib


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a network namespace of its own")
def test_the_socket_census_counts_what_each_socket_holds_once_and_stops_past_its_budget():
    """In a fresh network namespace (as each sandbox has): its sockets' buffers, and no more than
    needed once over the budget, the next count whole again."""
    import subprocess
    import sys
    code = r"""
import fcntl, json, socket, struct
from deepngrams.grading import socket_census
with socket.socket() as control:  # the loopback interface up (SIOCSIFFLAGS, IFF_UP), as bubblewrap does
    fcntl.ioctl(control, 0x8914, struct.pack("16sH14x", b"lo", 1))
census = socket_census.SocketCensus(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket_census.NETLINK_SOCK_DIAG))
empty = census.bytes_held(2**62)
pairs = [socket.socketpair() for _ in range(40)]
sent = 0
for a, b in pairs:
    a.setblocking(False)
    try:
        while True:
            sent += a.send(b'x' * 65536)
    except BlockingIOError:
        pass
full = census.bytes_held(2**62)
cut = census.bytes_held(2**20)
unfinished = census.unfinished
again = census.bytes_held(2**62)
# TCP, both families in one dump; where a kernel refuses that request (here one it refuses), one a family.
ends = []
for family, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    server = socket.create_server((host, 0), family=family)
    client = socket.create_connection(server.getsockname()[:2])
    client.setblocking(False)
    try:
        while True:
            sent_tcp = client.send(b'x' * 65536)
    except BlockingIOError:
        pass
    ends += [server, client, server.accept()[0]]
tcp = census.bytes_held(2**62) - again
refused = (99,) + socket_census.TCP_BOTH_FAMILIES[1:]
socket_census.INSTEAD[refused] = socket_census.INSTEAD[socket_census.TCP_BOTH_FAMILIES]
census.kinds[census.kinds.index(socket_census.TCP_BOTH_FAMILIES)] = refused
without_tcp = census.bytes_held(2**62)
tcp_apart = census.bytes_held(2**62) - again
print(json.dumps([empty, sent, full, cut, unfinished, again, census.unfinished, tcp, without_tcp - again,
                  tcp_apart, refused in census.kinds]))
"""
    found = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert found.returncode == 0, found.stderr
    empty, sent, full, cut, unfinished, again, still, tcp, refused_tcp, tcp_apart, still_refused = json.loads(found.stdout)
    # Nothing but the census's own socket, holding its answer while it reads it.
    assert empty < 2**16 and sent <= full - empty < 2 * sent + 80 * 65536, (empty, sent, full)
    assert 2**20 < cut < full and unfinished and again == full and not still
    assert tcp > 2 * 65536 and refused_tcp < tcp and abs(tcp_apart - tcp) < tcp // 10 and not still_refused, \
        (tcp, refused_tcp, tcp_apart)


@pytest.mark.slow
def test_memory_shared_after_a_fork_counts_once(tmp_path):
    """Three forks of a kernel holding 600 MiB: 2.4 GiB of resident sizes summed, 0.7 GiB in truth."""
    fork = ("import os, time\nb = b'x' * (600 * 2**20)\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n"
            "    if pid == 0:\n        time.sleep(3); os._exit(0)\n    kids.append(pid)\n"
            "for pid in kids:\n    os.waitpid(pid, 0)\nprint('done')")
    result, out = run_cells(tmp_path, fork, limits=sandbox.Limits(wall_timeout=60, memory_gib=1.5))
    assert not result.events and out[0].strip() == "done", (result.events, result.peak_memory_mib, out)
    assert 600 < result.peak_memory_mib < 1.5 * 1024


@pytest.mark.slow
def test_a_later_cell_cannot_rewrite_what_an_earlier_cell_showed(tmp_path):
    """An output stays as its cell showed it: update_display, or a display with the same id, from a later
    cell (which may run after a hidden test's inputs reached the student's code) changes no earlier output."""
    _, out = run_cells(tmp_path, "h = display('before', display_id=True)", "h.update('rewritten')",
                       "_ = display('shown here', display_id=h.display_id)")
    assert out[0] == "'before'" and out[1] == "" and out[2] == "'shown here'", out


@pytest.mark.slow
def test_a_dying_kernel_and_a_hung_sandbox_get_reasons(tmp_path):
    result, out = run_cells(tmp_path, "print('before')", "import os; os._exit(3)", "print('never')")
    assert result.events[0]["event"] == "kernel died" and result.events[0]["cell"] == 1
    assert result.events[0]["returncode"] == 3  # its exit status, kept past jupyter_client's shutdown
    assert "kernel died in cell 1 (exit status 3)" in verdicts.reason_of(result, sandbox.Limits())
    # Hung past the wall limit, well before its cell's own limit would interrupt it.
    result, _ = run_cells(tmp_path, "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                    "while True:\n    time.sleep(1)", name="hung",
                          limits=sandbox.Limits(wall_timeout=8, memory_gib=2), cell_timeout=60)
    assert result.wall_timed_out and "time limit" in verdicts.reason_of(result, sandbox.Limits(wall_timeout=8))


# ----------------------------------------------------------------------------------------
# Preflight
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def solved():
    return release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]


GRADED = ["test_line_to_tensor", "test_log_perplexity"]


@pytest.mark.parametrize("content, phrase", [
    (b"", "empty"),
    (b"{ not json", "not json"),
    (b"[1, 2]", "not a notebook"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode(), "nbformat 3"),
    (json.dumps({"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}).encode(), "nbformat 5"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code"}], "metadata": {}}).encode(),
     "not a valid nbformat 4"),
    (b"\xff\xfe garbage", "not json"),
    (b"[" * 100000, "nested too deeply"),
])
def test_files_that_cannot_be_graded_get_a_reason(tmp_path, content, phrase):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    reason, notes = preflight.preflight(path, GRADED)
    assert phrase in reason.lower() and notes == []


def test_links_and_folders_are_refused(tmp_path):
    """The grader runs as root: a link handed in could point at the solutions."""
    (tmp_path / "link.ipynb").symlink_to(release.SOURCE_NB)
    assert "a link, not a file" in preflight.preflight(tmp_path / "link.ipynb", GRADED)[0]
    with pytest.raises(ValueError, match="a link"):
        preflight.read_handed_in(tmp_path / "link.ipynb")
    (tmp_path / "folder.ipynb").mkdir()
    assert "not a plain file" in preflight.preflight(tmp_path / "folder.ipynb", GRADED)[0]


def test_repairable_problems_are_noted(tmp_path, solved):
    nb = copy.deepcopy(solved)
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    test_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_log_perplexity")
    nb.cells.append(copy.deepcopy(test_cell))
    bonus = copy.deepcopy(test_cell)
    bonus.metadata["nbgrader"]["grade_id"] = "test_bonus"
    nb.cells.append(bonus)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_line_to_tensor"]
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    reason, notes = preflight.preflight(tmp_path / "nb.ipynb", GRADED)
    assert reason == ""
    assert any("kernel 'ir'" in n for n in notes)
    assert any("test_log_perplexity appears 2 times" in n for n in notes)
    assert any("deleted cell test_line_to_tensor" in n for n in notes)
    assert any("graded cell test_bonus is not part of the assignment" in n for n in notes)
    nbformat.write(solved, str(tmp_path / "ok.ipynb"))
    every = [c.metadata["nbgrader"]["grade_id"] for c in solved.cells if cells.is_test_cell(c)]
    assert preflight.preflight(tmp_path / "ok.ipynb", every) == ("", [])


# ----------------------------------------------------------------------------------------
# What goes into the sandbox, and what comes out
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared():
    return exercises.draw_cases(exercises.secret_for(bytes(32), "alice", b"her notebook"))


def test_the_sandbox_gets_inputs_but_never_expected_values_or_test_code(prepared, solved):
    source = release.read(release.SOURCE_NB)
    job = verdicts.build_job(solved, prepared, sandbox.Limits(cell_timeout=30))
    text = json.dumps(job)
    hidden = [c.source for c in source.cells if "BEGIN HIDDEN TESTS" in c.source]
    assert hidden and not any(h.split("### BEGIN HIDDEN TESTS")[1][:200] in text for h in hidden)
    assert "w1_unittest.test_" not in text  # the public test calls are replaced too
    sent = {}
    for cell in job["notebook"].cells:
        if "deepngrams_probes" in cell.source:
            call = ast.parse(cell.source).body[0].value
            probe, inputs = ast.literal_eval(call.args[0]), json.loads(ast.literal_eval(call.args[2]))
            sent[cell.metadata["nbgrader"]["grade_id"]] = (probe, inputs)
    assert sent == {gid: (check["probe"], check["inputs"]) for gid, check in prepared.items()}
    # Expected values that are not inputs: the outputs of the small random GRU, the hidden log perplexity.
    assert repr(prepared["test_GRULM_hidden"]["expected"][0]["full"][0][0][0]) not in text
    assert repr(prepared["test_log_perplexity_hidden"]["expected"][0]["value"]) not in text
    probes = [c for c in job["notebook"].cells if "deepngrams_probes" in c.source]
    assert len(probes) == len(job["probes"]) == len(prepared)


def _grade_ids(nb) -> list:
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_the_course_cells_after_the_last_one_that_matters_are_not_run(prepared, solved):
    """The course's locked cells after the last graded, answer, task or unlocked code cell cannot
    change a score: they are left out of the run. Anything a student added still runs."""
    ids = _grade_ids(solved)
    job = verdicts.build_job(solved, prepared, sandbox.Limits())
    ran = _grade_ids(job["notebook"])
    assert ran == ids[:len(ran)] and ran[-1] == "test_GenerativeModel_hidden"
    assert "temperature_table" in ids and "temperature_table" not in ran  # the closer look is not run
    assert "generate_demo" not in ran and "train_demo" in ran  # nor the demo after the last test
    extra = copy.deepcopy(solved)  # code a student adds at the end runs, and all before it
    extra.cells += [new_code_cell("print('mine')"), nbformat.v4.new_markdown_cell("notes"), new_code_cell(" \n")]
    assert len(verdicts.build_job(extra, prepared, sandbox.Limits())["notebook"].cells) == len(extra.cells) - 2
    empty = copy.deepcopy(solved)  # the empty cell Jupyter leaves at the end runs nothing: no reason to run up to it
    empty.cells += [new_code_cell(""), new_code_cell(["\n", "  "])]
    assert _grade_ids(verdicts.build_job(empty, prepared, sandbox.Limits())["notebook"]) == ran
    unlocked = copy.deepcopy(solved)  # unlocked code (a student's, or a course cell nbgrader does not restore) runs
    unlocked.cells[-1].cell_type, unlocked.cells[-1].metadata["nbgrader"]["locked"] = "code", False
    unlocked.cells[-1].update(outputs=[], execution_count=None, source=["print(", "'mine')"])
    assert verdicts.cells_to_run(unlocked) == len(unlocked.cells)
    moved = copy.deepcopy(solved)  # an answer moved to the end is run, and all before it
    answer = next(i for i, c in enumerate(moved.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    moved.cells.append(moved.cells.pop(answer))
    assert verdicts.cells_to_run(moved) == len(moved.cells)
    task = copy.deepcopy(solved)  # so is a task or a cell graded by hand
    task.cells[-1].metadata["nbgrader"].update(task=True, points=1)
    assert verdicts.cells_to_run(task) == len(task.cells)
    assert verdicts.cells_to_run(new_notebook(cells=[nbformat.v4.new_markdown_cell("1")])) == 0


def test_cells_that_were_not_run_come_back_without_outputs(prepared, solved):
    nb = copy.deepcopy(solved)
    tail = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "temperature_table")
    nb.cells[tail].outputs = [nbformat.v4.new_output("stream", name="stdout", text="the student's own run\n")]
    ran = verdicts.build_job(nb, prepared, sandbox.Limits())["notebook"]
    assert len(ran.cells) <= tail  # not run
    verdicts.apply_verdicts(nb, prepared, sandbox.RunResult(notebook=ran, probes={}))
    assert len(nb.cells) == len(solved.cells) and nb.cells[tail].outputs == []
    assert nb.cells[tail].execution_count is None


def test_outputs_from_the_sandbox_are_kept_inert_and_test_cells_get_the_grader_verdict(prepared, solved):
    nb = copy.deepcopy(solved)
    for cell in nb.cells:  # faked passing outputs in the submitted file count for nothing
        if cells.is_test_cell(cell):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="All tests passed\n")]
    ran = copy.deepcopy(nb)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    ran.cells[first].outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<script>alert(1)</script>", "application/javascript": "alert(1)", "text/plain": "shown"}),
        {"output_type": "bogus"}, "not even a dict"]
    result = sandbox.RunResult(notebook=ran, probes={})
    failed = verdicts.apply_verdicts(nb, prepared, result)
    assert sorted(failed) == sorted(prepared)  # no observations: every test fails
    assert nb.cells[first].outputs == [nbformat.v4.new_output("display_data", data={"text/plain": "shown"})]
    for cell in nb.cells:
        if cells.is_test_cell(cell):
            assert [o.output_type for o in cell.outputs] == ["error"]
    nbformat.validate(nb)


def test_terminal_codes_from_the_students_run_and_messages_reach_no_graded_notebook(prepared, solved):
    """What the student's code printed, raised or displayed, and the verdicts that quote what it raised,
    keep their colours and lose every other escape sequence and control character."""
    nb = copy.deepcopy(solved)
    ran = copy.deepcopy(nb)
    osc, colour = "\x1b]0;owned\x07\x1b]8;;https://evil.example\x1b\\", "\x1b[31mred\x1b[0m"
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not cells.is_test_cell(c))
    ran.cells[first].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"{osc}out {colour}\x1b[2J\n"),
        nbformat.v4.new_output("error", ename=f"Err{osc}", evalue=f"bad{osc}\x07", traceback=[f"tb{osc}{colour}"]),
        nbformat.v4.new_output("display_data", data={"text/plain": [f"shown{osc}", "\x9b2Jtoo\ud800"]}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=\n", "text/plain": "picture"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR\x9b2J\u202e", "image/jpeg": ["/9j/"],
                                                     "text/plain": "no picture"})]
    gid = "test_line_to_tensor"
    cases = prepared[gid]["inputs"]["cases"]
    raised = {"error": "ValueError", "message": f"{osc}boom\x1b[2J\u202e"}
    verdicts.apply_verdicts(nb, prepared, sandbox.RunResult(notebook=ran, probes={gid: {"observations": [raised] * len(cases)}}))
    stream, error, shown, picture, forged = nb.cells[first].outputs
    assert stream.text == f"out {colour}\n"
    assert (error.ename, error.evalue, error.traceback) == ("Err", "bad", [f"tb{colour}"])
    assert shown.data["text/plain"] == "showntoo"  # lines of a display's text are one text, as nbformat joins them
    assert picture.data == {"image/png": "iVBORw0KGgo=\n", "text/plain": "picture"}
    assert forged.data == {"text/plain": "no picture"}  # an image that is not base64 is no image
    nbformat.writes(nb)  # a lone surrogate would have made this raise
    test = next(c for c in nb.cells if cells.nbgrader_meta(c).get("grade_id") == gid)
    message = test.outputs[0].evalue
    assert "boom" in message and "\x1b" not in message and "\x07" not in message and "\u202e" not in message
    assert "\\x1b]0;owned" in message  # shown as text, so the grader sees what was there


def test_verdicts_after_the_first_hidden_test_quote_nothing_the_code_raised(prepared, solved):
    """The notebook's hidden tests run in turn with the visible ones: once the first hidden test has run,
    the student's code has seen its inputs, so the verdicts of the visible tests after it say what was
    raised by its type alone, as a hidden test's do; the visible tests before it say all of it."""
    nb = copy.deepcopy(solved)
    order = [cells.nbgrader_meta(c).get("grade_id") for c in nb.cells if cells.is_test_cell(c)]
    first_hidden = next(i for i, gid in enumerate(order) if prepared[gid]["hidden"])
    assert 0 < first_hidden < len(order) - 1
    raised = {"error": "ValueError", "message": "SECRET-INPUT carried out", "where": {"cell": 4, "line": 321}}
    probes = {gid: {"observations": [raised] * len(prepared[gid]["inputs"]["cases"])} for gid in order}
    verdicts.apply_verdicts(nb, prepared, sandbox.RunResult(notebook=copy.deepcopy(nb), probes=probes))
    said = {cells.nbgrader_meta(c)["grade_id"]: c.outputs[0].evalue for c in nb.cells if cells.is_test_cell(c)}
    for i, gid in enumerate(order):
        assert "raised ValueError" in said[gid], gid
        quoted = "SECRET-INPUT" in said[gid] and "line 321" in said[gid]
        assert quoted == (i < first_hidden), (gid, said[gid])


@pytest.mark.slow
def test_what_comes_back_from_the_sandbox_is_text_within_the_jobs_limits(tmp_path):
    """The grader parses what comes back outside the sandbox, where its memory is not counted. A probe
    cell's observations are parsed up to the job's `max_observation_chars`, and all of them up to
    `max_notebook_observation_chars`: past that a cell's come back as its error. The notebook comes back
    as prompt numbers and outputs as text (`returned`: the MIME types kept, how many outputs and traceback
    lines): no output's data of another type, however it is nested. `build_job` sets config's limits."""
    show = "from IPython.display import display\ndisplay({{'application/vnd.deepngrams.probe+json': {text!r}}}, raw=True)"
    observation = lambda pad: '{"observations": [], "pad": "' + "x" * pad + '"}'  # noqa: E731
    nb = new_notebook(cells=[new_code_cell(show.format(text=observation(0))),
                             new_code_cell(show.format(text=observation(3000))),
                             new_code_cell(show.format(text=observation(1500))),
                             new_code_cell(show.format(text=observation(1500))),
                             new_code_cell("display({'application/json': [[[]] * 50] * 50, 'text/plain': ['a', 'b']}, raw=True)\n"
                                           "for i in range(5):\n    display(i)"),
                             new_code_cell("def deep(n):\n    return deep(n - 1) if n else 1 / 0\ndeep(10)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    job = {"notebook": nb, "probes": {str(i): {"grade_id": f"cell{i}"} for i in range(4)}, "cell_timeout": 20,
           "interrupt_grace": 10, "max_observation_chars": 2000, "max_notebook_observation_chars": 3000,
           "returned": {"mime": ["text/plain"], "max_outputs": 6, "max_traceback_entries": 3}}
    result = sandbox.run(job, tmp_path / "job", 0, sandbox.Limits(wall_timeout=60, memory_gib=2))
    too_large = "observations too large (the notebook's together)"
    assert result.probes == {"cell0": {"observations": [], "pad": ""}, "cell1": {"error": "observations too large (over "
                             "0.00190735 MiB)"}, "cell2": {"observations": [], "pad": "x" * 1500}, "cell3": {"error": too_large}}
    ran = result.notebook["cells"]
    assert [c["outputs"] for c in ran[:4]] == [[]] * 4 and all(set(c) == {"execution_count", "outputs"} for c in ran)
    assert ran[4]["outputs"][0] == {"output_type": "display_data", "data": {"text/plain": "ab"}}
    assert [o["data"] for o in ran[4]["outputs"][1:]] == [{"text/plain": str(i)} for i in range(5)]
    assert ran[5]["outputs"] == []  # the run's first six outputs come back; the traceback is left out
    job = verdicts.build_job(copy.deepcopy(nb), {}, sandbox.Limits())
    assert (job["max_observation_chars"], job["max_notebook_observation_chars"]) == \
        (config.MAX_OBSERVATION_CHARS, config.MAX_NOTEBOOK_OBSERVATION_CHARS)
    assert job["returned"] == {"mime": list(verdicts.SAFE_MIME), "max_outputs": config.MAX_OUTPUTS,
                               "max_traceback_entries": config.MAX_TRACEBACK_ENTRIES}
    job["returned"]["max_traceback_entries"] = 3
    result = sandbox.run(dict(job, notebook=nb, probes={}), tmp_path / "again", 0,
                         sandbox.Limits(wall_timeout=60, memory_gib=2))
    error = result.notebook["cells"][5]["outputs"][0]
    assert error["ename"] == "ZeroDivisionError" and len(error["traceback"]) == 3, error


def test_a_verdict_quotes_a_bounded_part_of_what_the_code_returned(prepared, solved):
    """A visible test's verdict before any hidden one quotes what the code returned (its type's name,
    say), and the code chooses how long that is: each failure shown is cut at MAX_PROBLEM_CHARS, and
    a cell shows MAX_PROBLEMS of them, then how many more there were."""
    nb = copy.deepcopy(solved)
    first = next(cells.nbgrader_meta(c)["grade_id"] for c in nb.cells if cells.is_test_cell(c))
    assert not prepared[first]["hidden"]
    n = len(prepared[first]["inputs"]["cases"])
    probes = {first: {"observations": [{"kind": "K" * 3_000_000, "tensor": False}] * n}}
    verdicts.apply_verdicts(nb, prepared, sandbox.RunResult(notebook=copy.deepcopy(nb), probes=probes))
    said = next(c.outputs[0] for c in nb.cells if cells.nbgrader_meta(c).get("grade_id") == first)
    assert "KKKK" in said.evalue and len(said.evalue) < (config.MAX_PROBLEM_CHARS + 20) * config.MAX_PROBLEMS
    assert all(len(line) < config.MAX_PROBLEM_CHARS + 40 for line in said.traceback)
    shown = verdicts._shown([f"problem {i} " + "x" * 5000 for i in range(45)])
    assert len(shown) == config.MAX_PROBLEMS + 1 and shown[-1] == "… and 25 more"
    assert all(p.startswith(f"problem {i} ") and p.endswith(" … (cut)") for i, p in enumerate(shown[:-1]))


def test_an_environment_under_tmp_stays_visible(monkeypatch):
    """A clone in /tmp: the sandbox's own /tmp is mounted first, the environment bound on top."""
    import sys
    monkeypatch.setattr(sys, "prefix", "/tmp/clone/.venv")
    args = sandbox.bwrap_args(sandbox.FIRST_UID, sandbox.Limits())
    tmpfs = [i for i in range(len(args) - 1) if args[i] == "--tmpfs" and args[i + 1] == "/tmp"]
    bind = args.index("/tmp/clone/.venv")
    assert len(tmpfs) == 1 and tmpfs[0] < bind
    assert not any(args[i] == "--dir" and args[i + 1] == "/tmp" for i in range(len(args) - 1))


@pytest.mark.slow
def test_a_virtual_environment_reached_through_a_link_still_runs(tmp_path, monkeypatch):
    """A .venv that is a link to another folder (a second checkout sharing one environment): the
    sandbox mounts the real folder, so it must run the interpreter by its real folder too."""
    import os
    import sys
    link = tmp_path / "linked-venv"
    link.symlink_to(os.path.realpath(sys.prefix))
    monkeypatch.setattr(sys, "executable", str(link / "bin" / os.path.basename(sys.executable)))
    result, out = run_cells(tmp_path, "import sys; print(sys.prefix)")
    assert result.notebook is not None and not result.events, (result.returncode, result.stderr[-500:])
    assert out[0].strip() == os.path.realpath(sys.prefix)


def test_a_kernel_that_cannot_say_what_unix_sockets_hold_gets_no_sandbox(monkeypatch):
    """Without the census a notebook's sockets could pin memory past its limit: the grader says what is
    missing and does not sandbox. Asked for a family no kernel has, this kernel refuses that dump, as
    one without unix_diag refuses the Unix one."""
    import struct
    unknown = (socket_census.SOCK_DIAG_BY_FAMILY, struct.pack("=BBHIIIII", 250, 0, 0, 0xFFFFFFFF, 0, 0x20, 0, 0), 16, 5)
    assert socket_census.problem() is None
    monkeypatch.setattr(socket_census, "SOCKET_KINDS", (unknown,) + socket_census.SOCKET_KINDS[1:])
    problem = sandbox.available()
    assert problem and "cannot say what sockets hold" in problem and "unix_diag" in problem, problem
    assert "plain-autograde" in problem


def test_hdf5_takes_no_locks_on_the_files_sandboxes_share():
    """The weights are one file that every sandbox at the same time reads: HDF5, which locks a file
    it opens, is told not to, in the sandbox's environment and so in its kernel's."""
    assert sandbox.sandbox_env(2)["HDF5_USE_FILE_LOCKING"] == "FALSE"
    args = sandbox.bwrap_args(sandbox.FIRST_UID, sandbox.Limits())
    assert any(args[i:i + 3] == ["--setenv", "HDF5_USE_FILE_LOCKING", "FALSE"] for i in range(len(args)))


def ipython_error(*frames: str, ename="BlockingIOError", evalue="[Errno 11] Resource temporarily unavailable",
                  cause: tuple = (), source: str | None = None) -> dict:
    """An error output as IPython writes it (coloured): the frames, each a header line and source
    lines, the one that raised marked "---->"; `cause`, the frames of an exception it was raised from;
    `source` (not part of the output), the code of its cell."""
    def colour(text):
        return "".join(f"\x1b[32m{word}\x1b[39m" if word.strip() else word for word in text.split(" "))

    def section(name, value, frames):
        return [f"\x1b[31m{name}\x1b[39m                           Traceback (most recent call last)",
                *[colour(frame) for frame in frames], f"\x1b[31m{name}\x1b[39m: {value}"]

    before = [*section("FileNotFoundError", "[Errno 2]", cause),
              "\nThe above exception was the direct cause of the following exception:\n"] if cause else []
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": ["\x1b[31m" + "-" * 75 + "\x1b[39m", *before, *section(ename, evalue, frames)],
            **({"source": source} if source is not None else {})}


NONBLOCKING_READ = "import socket\na, b = socket.socketpair()\na.setblocking(False)\na.recv(1)"
RAISE_EAGAIN = "raise BlockingIOError(11, 'Resource temporarily unavailable')"
FORK_UNTIL_REFUSED = """
import os, signal, time
kids = []
try:
    while len(kids) < 1000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
finally:
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
"""
POPEN_UNTIL_REFUSED = """
import subprocess
kids = []
try:
    while len(kids) < 1000:
        kids.append(subprocess.Popen(["/bin/sleep", "60"]))
finally:
    for kid in kids:
        kid.kill()
        kid.wait()
"""


FORK_FRAME = ("Cell In[4], line 5\n      3 while True:\n      4     # forks until it cannot\n"
              "----> 5     pid = os.fork()\n")
SPAWN_FRAME = ("Cell In[4], line 2\n      1 for _ in range(2000):\n"
               "----> 2     os.posix_spawn('/bin/true', ['true'], {})\n")
POPEN_FRAMES = ("Cell In[2], line 1\n----> 1 kids = [start() for _ in range(600)]\n",
                "Cell In[1], line 3, in start()\n      2 def start():\n"
                "----> 3     return subprocess.Popen(['sleep', '9'])\n",
                "File /usr/lib/python3.11/subprocess.py:1026, in Popen.__init__(self, args)\n"
                "-> 1026     self._execute_child(args, executable, preexec_fn, close_fds,\n",
                "File /usr/lib/python3.11/subprocess.py:1883, in Popen._execute_child(self, args)\n"
                "   1882 try:\n-> 1883     self.pid = _fork_exec(\n   1884             args, executable_list,\n")
MULTIPROCESSING_FRAME = ("File /usr/lib/python3.11/multiprocessing/popen_fork.py:66, in Popen._launch(self, obj)\n"
                         "     65 parent_r, child_w = os.pipe()\n---> 66 self.pid = os.fork()\n")
NO_SOURCE_FRAME = "File /usr/lib/python3.11/multiprocessing/util.py:452, in spawnv_passfds(path, args, passfds)\n"
SOCKET_FRAME = ("Cell In[7], line 4\n      2 a, b = socket.socketpair()\n      3 a.setblocking(False)\n"
                "----> 4 a.recv(1)\n")
# Python 3.11 marks a line of the `finally:` that re-raised the error, not the os.fork() before it: the cell shows it.
FINALLY_FRAME = ("Cell In[1], line 11\n      8             os._exit(0)\n      9         kids.append(pid)\n"
                 "     10 finally:\n---> 11     for pid in kids:\n     12         os.kill(pid, signal.SIGKILL)\n")
FLOCK_FRAME = ("Cell In[3], line 2\n      1 other = os.open(path, os.O_RDONLY)\n"
               "----> 2 fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)\n")
RAISE_FRAME = "Cell In[5], line 1\n----> 1 raise BlockingIOError(11, 'Resource temporarily unavailable')\n"


@pytest.mark.parametrize("error, limit", [
    (ipython_error(FORK_FRAME), True),
    (ipython_error(SPAWN_FRAME), True),
    (ipython_error(*POPEN_FRAMES), True),
    (ipython_error(MULTIPROCESSING_FRAME), True),
    (ipython_error(NO_SOURCE_FRAME), True),
    (ipython_error(SOCKET_FRAME), False),
    (ipython_error(FINALLY_FRAME, source=FORK_UNTIL_REFUSED), True),
    (ipython_error(SOCKET_FRAME, source=NONBLOCKING_READ), False),
    (ipython_error(FLOCK_FRAME), False),
    (ipython_error(RAISE_FRAME), False),
    (ipython_error(RAISE_FRAME, cause=POPEN_FRAMES), False),  # a process started before, not this error
    (ipython_error(FORK_FRAME, ename="OSError"), False),
    (ipython_error(FORK_FRAME, evalue="[Errno 11] Try again"), False),
    ({"output_type": "error", "ename": "BlockingIOError", "evalue": "[Errno 11] Resource temporarily unavailable"},
     False),
], ids=["fork", "posix_spawn", "Popen", "multiprocessing", "no source", "non-blocking socket",
        "fork before a finally", "non-blocking socket in its cell", "flock", "raised",
        "raised from Popen's error", "another error", "another message", "no traceback"])
def test_only_eagain_where_a_process_starts_is_the_process_limit(error, limit):
    """EAGAIN is the process limit where a process or thread was being started; from anything else (a
    lock taken without waiting, a non-blocking read, the cell's own raise) it is the cell's error."""
    from deepngrams.grading.inside import harness
    error = dict(error)
    assert harness.hit_the_process_limit(error, error.pop("source", "")) is limit


THREAD_FRAMES = ("Cell In[3], line 4\n      2 for _ in range(2000):\n      3     t = threading.Thread(target=time.sleep, "
                 "args=(9,))\n----> 4     t.start()\n",
                 "File /usr/lib/python3.11/threading.py:957, in Thread.start(self)\n    955     _limbo[self] = self\n"
                 "    956 try:\n--> 957     _start_new_thread(self._bootstrap, ())\n    958 except Exception:\n")
POOL_FRAMES = ("Cell In[2], line 2\n      1 pool = ThreadPoolExecutor(64)\n----> 2 list(pool.map(work, range(64)))\n",
               "File /usr/lib/python3.11/concurrent/futures/thread.py:199, in ThreadPoolExecutor._adjust_thread_count(self)\n"
               "    197 t = threading.Thread(name=thread_name, target=_worker)\n--> 199 t.start()\n")
RAISE_THREAD_FRAME = "Cell In[5], line 1\n----> 1 raise RuntimeError(\"can't start new thread\")\n"
CANT = dict(ename="RuntimeError", evalue="can't start new thread")


@pytest.mark.parametrize("error, refused", [
    (ipython_error(*THREAD_FRAMES, **CANT), True),
    (ipython_error(*POOL_FRAMES, **CANT), True),
    (ipython_error("Cell In[1], line 11\n     10 finally:\n---> 11     stop.set()\n", **CANT,
                   source="import threading\nthreads = [threading.Thread(target=f) for _ in range(999)]\n"
                          "try:\n    for t in threads:\n        t.start()\nfinally:\n    stop.set()\n"), True),
    (ipython_error(RAISE_THREAD_FRAME, **CANT), False),
    (ipython_error(RAISE_THREAD_FRAME, **CANT, cause=THREAD_FRAMES), False),  # a thread started before, not this one
    (ipython_error(*THREAD_FRAMES, ename="RuntimeError", evalue="threads can only be started once"), False),
    (ipython_error(*THREAD_FRAMES), False),  # EAGAIN: the process limit's own rule decides
    ({"output_type": "error", **CANT}, False),
], ids=["Thread.start", "ThreadPoolExecutor", "start before a finally", "raised", "raised after a thread started",
        "another message", "another error", "no traceback"])
def test_only_a_thread_the_system_refused_is_reported_as_one(error, refused):
    """"can't start new thread" is the process or the memory limit where a thread was being started;
    raised by the cell itself it is that cell's error."""
    from deepngrams.grading.inside import harness
    error = dict(error)
    assert harness.could_not_start_a_thread(error, error.pop("source", "")) is refused


THREADS_UNTIL_REFUSED = """
import threading
stop = threading.Event()
threads = []
try:
    while len(threads) < 1000:
        threads.append(threading.Thread(target=stop.wait))
        threads[-1].start()
finally:
    stop.set()
    for t in threads:
        if t.is_alive():
            t.join()
"""
BIG_STACKS_UNTIL_REFUSED = "import threading\nthreading.stack_size(256 * 2**20)\n" + THREADS_UNTIL_REFUSED


@pytest.mark.slow
def test_a_sandbox_names_both_limits_where_a_thread_is_refused(tmp_path):
    """Threads count as processes, and each needs room for its stack: starting threads until refused, at
    the process limit (many threads) or at the memory limit (big stacks), is reported as either limit;
    the cell's own raise of the same error is not, and the notebook goes on."""
    limits = sandbox.Limits(wall_timeout=90, memory_gib=2, processes=64)
    result, out = run_cells(tmp_path, THREADS_UNTIL_REFUSED, BIG_STACKS_UNTIL_REFUSED,
                            "raise RuntimeError(\"can't start new thread\")", "print('after')", limits=limits)
    assert all("can't start new thread" in text for text in out[:3]), (out, result.stderr[-2000:])
    assert result.events == [{"event": "thread refused", "cell": 0}, {"event": "thread refused", "cell": 1}], \
        (result.events, out)
    assert out[3].strip() == "after"
    reason = verdicts.reason_of(result, limits)
    assert reason.startswith("process or memory limit: a thread could not be started in cell 0"), reason
    assert "64 processes and threads" in reason and "2 GiB" in reason, reason


@pytest.mark.slow
def test_a_sandbox_reports_the_process_limit_only_for_processes(tmp_path):
    """In a sandbox of 64 processes: the cells that start processes until refused get the process limit,
    the ones whose EAGAIN comes from a socket or their own raise do not, and the notebook goes on."""
    result, out = run_cells(tmp_path, NONBLOCKING_READ, RAISE_EAGAIN, FORK_UNTIL_REFUSED, POPEN_UNTIL_REFUSED,
                            "print('after')", limits=sandbox.Limits(wall_timeout=90, memory_gib=2, processes=64))
    assert all("emporarily unavailable" in text for text in out[:4]), (out, result.stderr[-2000:])
    assert result.events == [{"event": "process limit", "cell": 2}, {"event": "process limit", "cell": 3}], \
        (result.events, out)
    assert out[4].strip() == "after"
    assert verdicts.reason_of(result, sandbox.Limits(processes=64)).startswith("process limit")
