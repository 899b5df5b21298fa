"""Nothing survives a sandbox: two sandboxes of one worker, one after the other, cannot pass a bit.

The first sandbox tries to leave a random token in every channel it can find (keyrings, SysV
and POSIX IPC, /dev/shm, an abstract Unix socket served by a detached process, files in every
writable folder, processes) and is killed at its time limit; the second, of the same worker
(the same user id), looks in each. Plain-Python cells, no TensorFlow.

Each test runs in both modes: as root (a user per sandbox) and as nobody (a user namespace
per sandbox, through tests/rootless_runner.py), and in each with the kernel started in the sandbox
and forked into it by a kernel factory (the batch's way).
"""
import contextlib
import dataclasses
import errno
import io
import json
import os
import socket
import secrets

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from deepngrams.grading import sandbox

import hostile
from rootless_runner import as_nobody

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
# Both modes need root here: the rootless one becomes nobody first.
MODES = [pytest.param(m, marks=pytest.mark.skipif(os.geteuid() != 0, reason="runs as root, and as nobody from root"))
         for m in ("root", "rootless", "root+factory", "rootless+factory")]

SLOT = 13  # a worker slot no other test uses: the sandbox user is FIRST_UID + SLOT
NEIGHBOUR_SLOT = 15  # another one, for a sandbox beside it at the same time
UID = 65532  # without root, the grader's user: one no other test uses (each counts what its user left)

# Both notebooks start with this cell: how to reach each channel from plain Python.
CHANNELS = r'''
import ctypes, ctypes.util, json, os, socket, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
try:
    librt = ctypes.CDLL("librt.so.1", use_errno=True)
except OSError:
    librt = libc
import platform
NR = {"x86_64": dict(add_key=248, keyctl=250), "aarch64": dict(add_key=217, keyctl=219)}[platform.machine()]
NAME = b"deepngrams-isolation"
KEY = 0x5EED0DD5  # SysV IPC key
RINGS = {"keyring_user": -4, "keyring_user_session": -5, "keyring_session": -3}
KEYCTL_GET_PERSISTENT, KEYCTL_SEARCH, KEYCTL_READ, KEYCTL_INVALIDATE, KEYCTL_LINK = 22, 10, 11, 21, 8
FOLDERS = ["/tmp", "/var/tmp", os.environ.get("HOME", "/tmp"), os.getcwd(), "/dev", "/dev/shm", "/dev/mqueue",
           "/run", "/bundle", "/grader"]

def err():
    return "failed: " + os.strerror(ctypes.get_errno())

def rings():
    # The user id's keyrings, linked into this process's session keyring: their keys are then
    # this process's own (possessed), to read and to invalidate.
    for ring in (RINGS["keyring_user"], RINGS["keyring_user_session"]):
        libc.syscall(NR["keyctl"], KEYCTL_LINK, ctypes.c_long(ring), ctypes.c_long(RINGS["keyring_session"]))
    found = dict(RINGS)
    persistent = libc.syscall(NR["keyctl"], KEYCTL_GET_PERSISTENT, ctypes.c_long(-1), ctypes.c_long(-2))
    found["keyring_persistent"] = persistent if persistent >= 0 else None
    return found

def writable_folders():
    """Every folder this user may write to, /proc and /sys aside. Read-only mounts with no
    mount below them are skipped whole (the environment is large)."""
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4].replace("\\040", " ")] = "ro" in fields[5].split(",")
    def skip(path):
        if path in ("/proc", "/sys") or any(m.startswith(path + "/") for m in mounts):
            return path in ("/proc", "/sys")
        return mounts[max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len)]
    for top, dirs, _ in os.walk("/"):
        dirs[:] = [d for d in dirs if not skip(os.path.join(top, d))]
        if os.access(top, os.W_OK):
            yield top
'''

WRITE = r'''
token = TOKEN
wrote = {}
for channel, ring in rings().items():
    if ring is None:
        wrote[channel] = "failed: no persistent keyring: " + err()
        continue
    r = libc.syscall(NR["add_key"], b"user", NAME, token.encode(), ctypes.c_size_t(len(token)), ctypes.c_long(ring))
    wrote[channel] = "ok" if r >= 0 else err()
shm = libc.shmget(KEY, 4096, 0o1666)  # IPC_CREAT | 0666
if shm >= 0 and libc.shmat(shm, None, 0) not in (None, ctypes.c_void_p(-1).value):
    ctypes.memmove(libc.shmat(shm, None, 0), token.encode(), len(token))
    wrote["sysv_shm"] = "ok"
else:
    wrote["sysv_shm"] = err()
sem = libc.semget(KEY, 1, 0o1666)
wrote["sysv_sem"] = "ok" if sem >= 0 and libc.semctl(sem, 0, 16, ctypes.c_int(int(token[:3], 16))) == 0 else err()
msq = libc.msgget(KEY, 0o1666)
class Msg(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("text", ctypes.c_char * 64)]
wrote["sysv_msg"] = "ok" if msq >= 0 and libc.msgsnd(msq, ctypes.byref(Msg(1, token.encode())), 64, 0o4000) == 0 else err()
mq = librt.mq_open(b"/" + NAME, os.O_CREAT | os.O_RDWR, 0o666, None)
wrote["posix_mq"] = "ok" if mq >= 0 and librt.mq_send(mq, token.encode(), len(token), 0) == 0 else err()
# A detached process (double fork; the sandbox refuses a new session) serving the token on an
# abstract socket; its command line holds the token too. It ends by itself after two minutes if it
# ever escaped.
server = ("import os, socket, sys, time\nif os.fork(): os._exit(0)\n"
          "s = socket.socket(socket.AF_UNIX); s.bind(b'\\0' + sys.argv[1].encode()); s.listen(); s.settimeout(120)\n"
          "while True:\n    c, _ = s.accept(); c.sendall(sys.argv[2].encode()); c.close()")
subprocess.run([sys.executable, "-c", server, NAME.decode(), token])
deadline = time.monotonic() + 10
while True:  # until the server listens
    try:
        probe = socket.socket(socket.AF_UNIX); probe.settimeout(3); probe.connect(b"\0" + NAME)
        wrote["abstract_socket"] = "ok" if probe.recv(64).decode() == token else "failed: wrong answer"
        break
    except OSError as e:
        if time.monotonic() > deadline:
            wrote["abstract_socket"] = f"failed: {e}"
            break
        time.sleep(0.05)
files = []
for folder in list(writable_folders()) + FOLDERS:
    try:
        with open(os.path.join(folder, NAME.decode()), "w") as f:
            f.write(token)
        files.append(folder)
    except OSError:
        pass
wrote["files"] = sorted(set(files))
print("WROTE " + json.dumps(wrote))
'''

HANG = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)"

READ = r'''
found = {}
for channel, ring in rings().items():
    if ring is None:
        continue
    for _ in range(100):  # every key of that name, each invalidated once read: the user's keyrings stay clean
        key = libc.syscall(NR["keyctl"], KEYCTL_SEARCH, ctypes.c_long(ring), b"user", NAME, ctypes.c_long(0))
        if key < 0:
            break
        buf = ctypes.create_string_buffer(64)
        n = libc.syscall(NR["keyctl"], KEYCTL_READ, ctypes.c_long(key), buf, ctypes.c_size_t(64))
        found.setdefault(channel, []).append(buf.raw[:max(n, 0)].decode(errors="replace"))
        if libc.syscall(NR["keyctl"], KEYCTL_INVALIDATE, ctypes.c_long(key)) < 0:
            break
shm = libc.shmget(KEY, 0, 0)
if shm >= 0:
    found["sysv_shm"] = ctypes.string_at(libc.shmat(shm, None, 0), 32).split(b"\0")[0].decode(errors="replace")
sem = libc.semget(KEY, 0, 0)
if sem >= 0:
    found["sysv_sem"] = libc.semctl(sem, 0, 12)
msq = libc.msgget(KEY, 0)
if msq >= 0:
    class Msg(ctypes.Structure):
        _fields_ = [("mtype", ctypes.c_long), ("text", ctypes.c_char * 64)]
    m = Msg()
    found["sysv_msg"] = m.text.decode(errors="replace") if libc.msgrcv(msq, ctypes.byref(m), 64, 0, 0o4000) >= 0 else "exists"
mq = librt.mq_open(b"/" + NAME, os.O_RDONLY | os.O_NONBLOCK, 0, None)
if mq >= 0:
    buf = ctypes.create_string_buffer(1 << 16)
    n = librt.mq_receive(mq, buf, ctypes.c_size_t(1 << 16), None)
    found["posix_mq"] = buf.raw[:max(n, 0)].decode(errors="replace")
try:
    s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(b"\0" + NAME)
    found["abstract_socket"] = s.recv(64).decode(errors="replace")
except OSError:
    pass
for pid in os.listdir("/proc"):
    try:
        if NAME in open(f"/proc/{pid}/cmdline", "rb").read():
            found.setdefault("processes", []).append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        pass
for folder in list(writable_folders()) + FOLDERS + ["/"]:
    path = os.path.join(folder, NAME.decode())
    if os.path.exists(path):
        found.setdefault("files", {})[path] = open(path).read()
print("FOUND " + json.dumps(found))
'''


def run_notebook(tmp_path, name, *sources, wall_timeout=60.0, probes=None):
    """Run plain cells in a sandbox of worker SLOT; returns (RunResult, text printed by each cell).
    `probes` ({cell index: {"grade_id": name}}): cells whose end the harness reports at once, as
    for graded cells, which comes back even when the sandbox is killed later."""
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    limits = sandbox.Limits(cell_timeout=30, wall_timeout=wall_timeout, memory_gib=2)
    result = sandbox.run({"notebook": nb, "probes": probes or {}, "cell_timeout": 30}, tmp_path / name, SLOT,
                         limits)
    cells = (result.notebook or {}).get("cells", [])
    return result, ["".join(o.get("text", "") + str(o.get("evalue", "")) for o in c.get("outputs", [])) for c in cells]


# The serial number of the session keyring (KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, not
# created if missing); x86_64 and aarch64 numbers as in sandbox.SYSCALLS.
KEYCTL_SESSION_ID = (
    "import ctypes, platform\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "nr = {'x86_64': 250, 'aarch64': 219}[platform.machine()]\n"
    "print('SESSION', libc.syscall(nr, 0, -3, 0))")


def _session_keyring_id() -> int:
    ns: dict = {}
    with contextlib.redirect_stdout(out := io.StringIO()):
        exec(KEYCTL_SESSION_ID, ns)
    return int(out.getvalue().split()[1])


def line_after(prefix, texts):
    """The JSON printed after `prefix` in the outputs, or None."""
    for text in texts:
        for line in text.splitlines():
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
    return None


def run_in(mode, tmp_path, notebooks, refused=None, probes=None):
    """Run `notebooks` ([(cells, wall time)]) one after the other in sandboxes of worker SLOT, the
    grader being root or nobody (as UID). Returns for each the RunResult's fields, the text each cell
    printed ("texts") and the processes of the sandbox's user left once it returned ("left").
    `probes`: as for run_notebook, the same for each notebook."""
    factory = mode.endswith("+factory")
    if mode.startswith("rootless"):
        report = as_nobody({"runs": [{"cells": cells, "slot": SLOT, "factory": factory, "probes": probes or {},
                                      "limits": {"cell_timeout": 30, "wall_timeout": wall, "memory_gib": 2}}
                                     for cells, wall in notebooks],
                            **({"refused": list(refused)} if refused is not None else {})}, uid=UID)
        assert report["mode"] == sandbox.ROOTLESS_MODE, report["mode"]
        return report["results"]
    results = []
    if factory:
        assert sandbox.start_kernel_factory(1) is not None
    try:
        for i, (cells, wall) in enumerate(notebooks):
            result, texts = run_notebook(tmp_path, f"run{i}", *cells, wall_timeout=wall, probes=probes)
            left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid_of(pid) == sandbox.FIRST_UID + SLOT]
            results.append({**dataclasses.asdict(result), "texts": texts, "left": left})
    finally:
        sandbox.stop_kernel_factories()
    return results


def pass_token(tmp_path, mode="root", refused=None):
    """The first sandbox writes a fresh token everywhere and hangs until its time limit kills it
    (so its processes are still running when it ends); the second reads. Returns (token, the
    first run's result, what the second found, processes of the sandbox user left between).
    The first run's outputs never come back (it was killed): what the writer manages inside one
    sandbox is checked by test_the_writer_reaches_every_channel_inside_one_sandbox."""
    token = secrets.token_hex(8)
    first, second = run_in(mode, tmp_path, [([CHANNELS, WRITE.replace("TOKEN", repr(token)), HANG], 30),
                                            ([CHANNELS, READ], 60)], refused, probes={1: {"grade_id": "wrote"}})
    assert first["wall_timed_out"], (first["events"], first["stderr"][-2000:])
    assert "wrote" in first["probes"], ("the writer never ran", first["events"], first["stderr"][-2000:])
    assert second["notebook"], second["stderr"][-2000:]
    return token, first, line_after("FOUND ", second["texts"]), first["left"]


def _uid_of(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


@pytest.mark.parametrize("mode", MODES)
def test_the_writer_reaches_every_channel_inside_one_sandbox(tmp_path, mode):
    """Inside one sandbox every channel works (so the reader's finding nothing means something),
    except the keyrings, SysV shared memory, semaphores and message queues, which the seccomp filter refuses."""
    token = secrets.token_hex(8)
    [result] = run_in(mode, tmp_path, [([CHANNELS, WRITE.replace("TOKEN", repr(token)), READ], 60)])
    texts = result["texts"]
    wrote, found = line_after("WROTE ", texts), line_after("FOUND ", texts)
    assert wrote is not None and found is not None, (texts, result["stderr"][-2000:])
    for channel in ("keyring_user", "keyring_user_session", "keyring_session", "keyring_persistent", "sysv_shm",
                    "sysv_sem", "sysv_msg"):
        assert "Operation not permitted" in wrote[channel], wrote
    for channel in ("posix_mq", "abstract_socket"):
        assert wrote[channel] == "ok", wrote
    assert found["posix_mq"] == token and found["abstract_socket"] == token
    assert any(token in p for p in found["processes"])
    assert {"/tmp", "/bundle/work"} <= set(wrote["files"])
    assert set(found["files"].values()) == {token}


@pytest.mark.parametrize("mode", MODES)
def test_two_sandboxes_of_one_worker_cannot_pass_a_bit(tmp_path, mode):
    token, first, found, left = pass_token(tmp_path, mode)
    assert left == [], "processes of the sandbox user outlived their sandbox"
    assert found == {}, f"the second sandbox found what the first left: {found}"


def test_without_the_seccomp_filter_the_keyrings_pass_a_token(tmp_path, monkeypatch):
    """The control: with the keyring system calls allowed, the test above does catch the channel.
    As root, the keyrings of the sandbox's user id (its user and persistent keyrings) carry the
    token; each sandbox's session keyring is its own, so that one does not. Without root, every
    keyring lives in the sandbox's own user namespace, and none carries it.
    (The reader invalidates every key it finds, leaving the user's keyrings clean.)"""
    monkeypatch.setattr(sandbox, "REFUSED", ())
    token, first, found, left = pass_token(tmp_path)
    if os.geteuid() == 0:
        assert token in found.get("keyring_user", []) and token in found.get("keyring_persistent", []), found
        assert set(found) <= {"keyring_user", "keyring_user_session", "keyring_persistent"}, found
    else:
        assert found == {}, found


@pytest.mark.parametrize("mode", MODES)
def test_each_sandbox_has_a_session_keyring_of_its_own(tmp_path, mode, monkeypatch):
    """Not the grader's: a sandbox's session keyring is a new one, so with the keyring calls
    allowed, what one sandbox adds to it the next does not find (see _own_session_keyring)."""
    monkeypatch.setattr(sandbox, "REFUSED", ())
    own = KEYCTL_SESSION_ID
    first, second = run_in(mode, tmp_path, [([own], 60), ([own], 60)], refused=())
    ids = [line_after("SESSION ", r["texts"]) for r in (first, second)]
    grader = _session_keyring_id()
    assert all(isinstance(i, int) and i > 0 for i in ids), (ids, first["stderr"][-2000:])
    assert ids[0] != ids[1] and grader not in ids, (ids, grader)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as nobody from root")
def test_rootless_keyrings_stay_in_their_sandbox_even_without_the_filter(tmp_path):
    """Without root each sandbox has its keyrings in its own user namespace: with the keyring
    system calls allowed, the writer reaches every keyring inside its sandbox, and the next
    sandbox still finds none of them. (The filter refuses them all the same.)"""
    token = secrets.token_hex(8)
    write = WRITE.replace("TOKEN", repr(token))
    report = as_nobody({"refused": [], "runs": [
        {"cells": [CHANNELS, write, READ], "slot": SLOT, "limits": {"cell_timeout": 30, "wall_timeout": 60}},
        {"cells": [CHANNELS, write, HANG], "slot": SLOT, "limits": {"cell_timeout": 30, "wall_timeout": 30},
         "probes": {1: {"grade_id": "wrote"}}},
        {"cells": [CHANNELS, READ], "slot": SLOT, "limits": {"cell_timeout": 30, "wall_timeout": 60}}]}, uid=UID)
    alone, first, second = report["results"]
    assert "wrote" in first["probes"], ("the writer never ran", first["events"], first["stderr"][-2000:])
    wrote, found = line_after("WROTE ", alone["texts"]), line_after("FOUND ", alone["texts"])
    rings = ("keyring_user", "keyring_user_session", "keyring_session", "keyring_persistent")
    assert all(wrote[ring] == "ok" for ring in rings), wrote
    assert token in found["keyring_session"] and token in found["keyring_persistent"], found
    assert first["wall_timed_out"] and line_after("FOUND ", second["texts"]) == {}, second["texts"]


@pytest.mark.parametrize("mode", MODES)
def test_every_writable_file_system_is_capped(tmp_path, mode):
    """Files in a tmpfs count against no process's memory: every folder a sandbox may write to
    lies on a file system no larger than its memory limit (2 GiB here), and its root and /dev
    (tmpfs of bubblewrap's, as large as half the machine's memory) are read-only."""
    [result] = run_in(mode, tmp_path, [([hostile.FILESYSTEMS], 60)])
    seen = line_after("FILESYSTEMS ", result["texts"])
    assert seen and {"/", "/tmp", "/run", "/dev/shm", "/dev", "/bundle/work"} <= set(seen), (seen, result["stderr"])
    too_big = {p: round(v["bytes"] / 2**30, 1) for p, v in seen.items() if v["writable"] and v["bytes"] > 2 * 2**30}
    assert not too_big, f"writable file systems larger than the memory limit (GiB): {too_big}"
    assert not seen["/"]["writable"] and not seen["/dev"]["writable"], seen
    assert all(seen[p]["writable"] for p in ("/tmp", "/run", "/dev/shm", "/bundle/work")), seen


# In a fresh single-threaded process: a threaded one (the kernel) may never unshare its user namespace.
UNSHARE_USER = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "print('unshared' if libc.unshare(0x10000000) == 0 else f'refused {ctypes.get_errno()}')")


@pytest.mark.parametrize("mode", MODES)
def test_no_new_user_namespaces_inside(tmp_path, mode):
    [result] = run_in(mode, tmp_path, [(["import subprocess, sys\n"
                                         f"print(subprocess.run([sys.executable, '-c', {UNSHARE_USER!r}], "
                                         "capture_output=True, text=True).stdout.strip())"], 60)])
    texts = result["texts"]
    assert texts[0].strip() == "refused 1", (texts, result["stderr"][-2000:])  # EPERM; fork and threads still work


SESSIONS = """
import os, subprocess, sys
try:
    os.setsid()
    print("setsid allowed")
except PermissionError:
    print("setsid refused")
try:
    subprocess.run([sys.executable, "-c", "pass"], start_new_session=True)
    print("new session allowed")
except PermissionError:
    print("new session refused")
child = subprocess.run([sys.executable, "-c", "import os; print(os.getsid(0))"], capture_output=True, text=True)
print("same session" if child.stdout.strip() == str(os.getsid(0)) else f"other session {child.stdout!r}")
"""


SHELL = """
get_ipython().system("echo shell $((6 * 7))")
print(get_ipython().getoutput("printf 'a\\nb\\n'"))
"""


@pytest.mark.parametrize("mode", MODES)
def test_every_process_of_a_sandbox_stays_in_its_one_session(tmp_path, mode):
    """A session is a scheduling group (autogroup): busy processes in sessions of their own would each
    get a share of the CPU, and starve the other sandboxes' notebooks into their time limits. Shell
    commands (`!cmd`, which IPython runs in a terminal of a session of its own) still print."""
    [result] = run_in(mode, tmp_path, [([SESSIONS, SHELL], 60)])
    texts = result["texts"]
    assert texts[0].split() == ["setsid", "refused", "new", "session", "refused", "same", "session"], \
        (texts, result["stderr"][-2000:])
    assert texts[1] == "shell 42\n['a', 'b']\n", (texts, result["stderr"][-2000:])


# 32-bit getpid by `int 0x80` (mov eax, 20; int 0x80; ret): the i386 system call numbers differ
# (keyctl is 288), so without the architecture check they would pass the filter.
INT80_GETPID = """
import ctypes, mmap, os
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes.fromhex('b814000000cd80c3'))
print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))() == os.getpid())
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="32-bit system calls of x86_64")
@pytest.mark.parametrize("mode", MODES)
def test_a_32_bit_system_call_kills_the_process(tmp_path, mode):
    import subprocess
    import sys
    here = subprocess.run([sys.executable, "-c", INT80_GETPID], capture_output=True, text=True)
    if here.stdout.strip() != "True":
        pytest.skip(f"no 32-bit system calls on this kernel: {here.returncode} {here.stderr[-200:]}")
    [result] = run_in(mode, tmp_path, [(["import subprocess, sys\n"
                                         f"print(subprocess.run([sys.executable, '-c', {INT80_GETPID!r}]).returncode)"],
                                        60)])
    texts = result["texts"]
    assert texts[0].strip() == "-31", (texts, result["stderr"][-2000:])  # SIGSYS


def test_the_filter_is_refused_clearly_on_an_unknown_architecture():
    with pytest.raises(RuntimeError, match="seccomp filter on 'riscv64'"):
        sandbox.seccomp_program("riscv64")
    assert len(sandbox.seccomp_program("aarch64")) % 8 == 0


def run_filter(program: bytes, arch: int, nr: int, args=(0,) * 6) -> int:
    """What the classic-BPF `program` returns for a system call: struct seccomp_data (nr, arch,
    ip, args) read as the kernel lays it out on a little-endian machine. Only the instructions the
    filter uses."""
    import struct
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = insns[pc]
        pc += 1
        if op == sandbox.BPF_LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif op == sandbox.BPF_AND_K:
            acc &= k
        elif op in (sandbox.BPF_JEQ, sandbox.BPF_JGE, sandbox.BPF_JSET):
            hit = {sandbox.BPF_JEQ: acc == k, sandbox.BPF_JGE: acc >= k, sandbox.BPF_JSET: bool(acc & k)}[op]
            pc += jt if hit else jf
        elif op == sandbox.BPF_RET:
            return k
        else:
            raise AssertionError(f"an instruction the filter does not use: {op:#x}")


@pytest.mark.parametrize("machine", sorted(sandbox.SYSCALLS))
def test_the_filter_of_each_architecture_answers_each_rule(machine):
    """Read as the kernel reads it: the calls in REFUSED fail with EPERM, those in ABSENT (flock:
    a lock on a file that every sandbox at the same time shares) and clone3 with ENOSYS, and the
    rest pass. The numbers are the kernel's (flock is 73 on x86_64, 32 on aarch64)."""
    import errno
    program, arch, nr = sandbox.seccomp_program(machine), sandbox.AUDIT_ARCH[machine], sandbox.SYSCALLS[machine]
    assert sandbox.ABSENT == ("flock", "io_uring_setup", "io_uring_enter", "io_uring_register")
    assert {"x86_64": 73, "aarch64": 32}[machine] == nr["flock"]
    assert (nr["io_uring_setup"], nr["io_uring_enter"], nr["io_uring_register"]) == (425, 426, 427)  # both
    assert {"x86_64": 53, "aarch64": 199}[machine] == nr["socketpair"]
    assert {"x86_64": (29, 64, 68), "aarch64": (194, 190, 186)}[machine] == (nr["shmget"], nr["semget"], nr["msgget"])
    assert {"shmget", "semget", "msgget"} <= set(sandbox.REFUSED)  # SysV IPC holds memory no process shows
    assert set(sandbox.REFUSED) | set(sandbox.ABSENT) <= set(nr)
    for name in sandbox.REFUSED:
        assert run_filter(program, arch, nr[name]) == sandbox.SECCOMP_RET_ERRNO | errno.EPERM, name
    for name in (*sandbox.ABSENT, "clone3"):
        assert run_filter(program, arch, nr[name]) == sandbox.SECCOMP_RET_ERRNO | errno.ENOSYS, name
    assert {"x86_64": (188, 189, 190, 72), "aarch64": (5, 6, 7, 25)}[machine] == \
        (nr["setxattr"], nr["lsetxattr"], nr["fsetxattr"], nr["fcntl"]) and nr["setxattrat"] == 463
    for name in ("setxattr", "lsetxattr", "fsetxattr", "setxattrat"):
        assert run_filter(program, arch, nr[name]) == sandbox.SECCOMP_RET_ERRNO | errno.ENOTSUP, name
    for command in range(64):  # F_GETLK, F_SETLK, F_SETLKW and their open-file-description forms
        want = sandbox.SECCOMP_RET_ERRNO | errno.ENOLCK if command in (5, 6, 7, 36, 37, 38) else sandbox.SECCOMP_RET_ALLOW
        assert run_filter(program, arch, nr["fcntl"], (3, command, 0, 0, 0, 0)) == want, command
    getpid = {"x86_64": 39, "aarch64": 172}[machine]
    for allowed in (getpid, nr["clone"], nr["unshare"]):
        assert run_filter(program, arch, allowed) == sandbox.SECCOMP_RET_ALLOW, allowed
    assert run_filter(program, arch, nr["unshare"], (sandbox.CLONE_NEWUSER, 0, 0, 0, 0, 0)) == \
        sandbox.SECCOMP_RET_ERRNO | errno.EPERM
    assert run_filter(program, arch ^ 1, getpid) == sandbox.SECCOMP_RET_KILL_PROCESS
    for call in ("socket", "socketpair"):  # the same rule for both: family, type and protocol
        assert run_filter(program, arch, nr[call], (socket.AF_UNIX, socket.SOCK_STREAM, 0, 0, 0, 0)) == \
            sandbox.SECCOMP_RET_ALLOW, call
        assert run_filter(program, arch, nr[call], (40, socket.SOCK_STREAM, 0, 0, 0, 0)) == \
            sandbox.SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT, call  # AF_VSOCK
        assert run_filter(program, arch, nr[call], (socket.AF_INET, socket.SOCK_STREAM, 262, 0, 0, 0)) == \
            sandbox.SECCOMP_RET_ERRNO | errno.EPROTONOSUPPORT, call  # MPTCP


# flock on files every sandbox shares (the weights, the environment) and on one of its own: each fails
# as if the kernel had no flock. HDF5 opens the weights all the same, even with its locking on.
FLOCK = """
import errno, fcntl, json, os, sys
found = {"env": os.environ.get("HDF5_USE_FILE_LOCKING")}
for name, path in {"weights": "/bundle/model/grulm.weights.h5", "venv": sys.executable, "own": "/tmp/mine"}.items():
    fd = os.open(path, os.O_RDONLY | os.O_CREAT if name == "own" else os.O_RDONLY)
    for how in ("LOCK_EX", "LOCK_SH"):
        try:
            fcntl.flock(fd, getattr(fcntl, how) | fcntl.LOCK_NB)
            found[name + " " + how] = "locked"
        except OSError as e:
            found[name + " " + how] = errno.errorcode.get(e.errno, str(e.errno))
    os.close(fd)
os.environ.pop("HDF5_USE_FILE_LOCKING", None)  # HDF5's default: lock, and go on where flock is absent
import h5py
with h5py.File("/bundle/model/grulm.weights.h5", "r") as f:
    found["h5py"] = "opened" if list(f.keys()) else "empty"
print("FLOCK " + json.dumps(found))
"""


@pytest.mark.parametrize("mode", MODES)
def test_flock_is_absent_in_a_sandbox(tmp_path, mode):
    [result] = run_in(mode, tmp_path, [([FLOCK], 60)])
    found = line_after("FLOCK ", result["texts"])
    assert found is not None, (result["texts"], result["stderr"][-2000:])
    assert found.pop("env") == "FALSE" and found.pop("h5py") == "opened", found
    assert set(found.values()) == {"ENOSYS"} and len(found) == 6, found


# io_uring's queue makes sockets without the socket system call (its opcode 45), of any kind the kernel
# has: a notebook asks for a ring, then, were it given one, a vsock and an MPTCP socket through it.
URING = """
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
found = {}
for name, nr, args in (("setup", 425, (8, ctypes.create_string_buffer(120))), ("enter", 426, (0, 1, 1, 1, 0, 0)),
                       ("register", 427, (0, 0, 0, 0))):
    fd = libc.syscall(nr, *args)
    found[name] = "granted" if fd >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
for name, family in (("unix", socket.AF_UNIX), ("vsock", 40), ("tipc", 30), ("inet", socket.AF_INET)):
    try:
        for end in socket.socketpair(family, socket.SOCK_STREAM):
            end.close()
        found["socketpair " + name] = "made"
    except OSError as e:
        found["socketpair " + name] = errno.errorcode.get(e.errno, str(e.errno))
print("URING " + json.dumps(found))
"""


@pytest.mark.parametrize("mode", MODES)
def test_io_uring_is_absent_and_socketpair_keeps_the_socket_rule(tmp_path, mode):
    [result] = run_in(mode, tmp_path, [([URING], 60)])
    found = line_after("URING ", result["texts"])
    assert found == {"setup": "ENOSYS", "enter": "ENOSYS", "register": "ENOSYS", "socketpair unix": "made",
                     "socketpair vsock": "EAFNOSUPPORT", "socketpair tipc": "EAFNOSUPPORT",
                     "socketpair inet": errno.errorcode[errno.EOPNOTSUPP]}, \
        (found, result["texts"], result["stderr"][-2000:])


HOLD_THE_WEIGHTS = """
import fcntl, os, subprocess
fd = os.open("/bundle/model/grulm.weights.h5", os.O_RDONLY)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print("not locked", e.errno)
subprocess.run(["/bin/sleep", "HOLDING"])  # until the test ends it (or the wall time)
"""
OPEN_THE_WEIGHTS = """
import h5py
with h5py.File("/bundle/model/grulm.weights.h5", "r") as f:
    print("opened", len(f.keys()) > 0)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox users are real users as root only")
def test_a_sandbox_cannot_lock_the_weights_away_from_another(tmp_path):
    """Two sandboxes at the same time: while the first tries to hold an exclusive lock on the weights
    (flock needs only a descriptor open for reading), the second opens them as the notebook does
    (h5py, which by default locks a file it reads and fails where another holds a lock)."""
    import concurrent.futures
    import time
    hold = HOLD_THE_WEIGHTS.replace("HOLDING", str(60 + secrets.randbelow(10**6) / 10**7))
    marker = hold.split('"/bin/sleep", "')[1].split('"')[0]

    def sleeper():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:2] == [b"/bin/sleep", marker.encode()]:
                    return int(pid)
            except OSError:
                pass
        return None

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder = pool.submit(run_notebook, tmp_path, "holder", hold, wall_timeout=90)
        deadline = time.monotonic() + 60
        while (pid := sleeper()) is None and not holder.done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid is not None, holder.result() if holder.done() else "the first sandbox never got to its hold"
        try:
            limits = sandbox.Limits(cell_timeout=30, wall_timeout=60, memory_gib=2)
            nb = new_notebook(cells=[new_code_cell(OPEN_THE_WEIGHTS)])
            nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
            opener = sandbox.run({"notebook": nb, "probes": {}, "cell_timeout": 30}, tmp_path / "opener",
                                 NEIGHBOUR_SLOT, limits)
        finally:
            os.kill(pid, 9)
        held, held_texts = holder.result()
    texts = ["".join(o.get("text", "") + str(o.get("evalue", "")) for o in c.get("outputs", []))
             for c in (opener.notebook or {}).get("cells", [])]
    assert held_texts[0].split()[:2] == ["not", "locked"], (held_texts, held.stderr[-2000:])
    assert texts == ["opened True\n"] and not opener.events, (texts, opener.events, opener.stderr[-2000:])


# Each kind of socket, made with the raw system call's arguments: what the census counts opens; the
# rest (other families, SCTP by its type, MPTCP, UDP-Lite, ping) fails as if the kernel lacked it.
SOCKETS = """
import errno, socket
kinds = {"unix stream": (1, 1, 0), "unix datagram": (1, 2, 0), "netlink route": (16, 3, 0),
         "netlink sock_diag": (16, 3, 4), "tcp": (2, 1, 0), "tcp6": (10, 1, 6), "udp": (2, 2, 0),
         "udp6 nonblocking": (10, 2 | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 17),
         "sctp by its type": (2, 5, 0), "sctp": (2, 1, 132), "mptcp": (2, 1, 262), "udplite": (2, 2, 136),
         "ping": (2, 2, 1), "raw": (2, 3, 255), "packet": (17, 3, 0), "alg": (38, 5, 0), "vsock": (40, 1, 0),
         "tipc": (30, 5, 0), "rds": (21, 5, 0), "xdp": (44, 3, 0), "bluetooth": (31, 1, 0)}
found = {}
for name, (family, kind, protocol) in kinds.items():
    try:
        socket.socket(family, kind, protocol).close()
        found[name] = "open"
    except OSError as e:
        found[name] = errno.errorcode.get(e.errno, str(e.errno))
print(found)
"""
COUNTED_SOCKETS = {"unix stream", "unix datagram", "netlink route", "netlink sock_diag", "tcp", "tcp6", "udp",
                   "udp6 nonblocking"}


@pytest.mark.parametrize("mode", MODES)
def test_only_sockets_whose_buffers_are_counted_open(tmp_path, mode):
    [result] = run_in(mode, tmp_path, [([SOCKETS], 60)])
    found = eval(result["texts"][0])  # noqa: S307 - the dict this test's own cell printed
    assert {name for name, got in found.items() if got == "open"} == COUNTED_SOCKETS, (found, result["stderr"][-2000:])
    for name in ("packet", "alg", "vsock", "tipc", "rds", "xdp", "bluetooth"):
        assert found[name] == "EAFNOSUPPORT", found
    for name in ("sctp by its type", "sctp", "mptcp", "udplite", "ping", "raw"):
        assert found[name] == "EPROTONOSUPPORT", found

