"""The kernel factory (grading/inside/zygote.py): a kernel forked into the sandbox, TensorFlow already
imported, must be confined exactly as a kernel started in the sandbox, and each must be a fresh one.

The batch uses a factory (each grading host starts one); these tests start one in this process and
compare its kernels with kernels started in the sandbox. tests/test_sandbox_isolation.py runs the
isolation tests both ways too, and the hostile suite grades through the factory.
"""
import json
import os
import signal
import stat
import threading
import time

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from deepngrams.config import GRADE_JOB_ENV
from deepngrams.grading import sandbox, verdicts

from rootless_runner import as_nobody, wait_ready
from test_sandbox_isolation import line_after

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
MODES = ["root", pytest.param("rootless", marks=pytest.mark.skipif(os.geteuid() != 0, reason="as nobody from root"))]
SLOT = 14  # a worker slot no other test uses
# Without root, as a user no other test uses: the isolation tests, which may run at the same time,
# count every process their own user (nobody) has left in a sandbox.
UID = 65533
LIMITS = dict(cell_timeout=30, wall_timeout=90, memory_gib=4)

# What a kernel sees of itself and of its sandbox.
SELF = r'''
import json, os, socket, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
mounts = sorted(line.split()[4] for line in open("/proc/self/mountinfo"))
print("SELF " + json.dumps({
    "ppid": os.getppid(), "tensorflow": "tensorflow" in sys.modules,
    "status": {k: v.strip() for k, v in status.items() if k.startswith(("Cap", "Uid", "Gid", "Groups", "NoNewPrivs",
                                                                       "Seccomp"))},
    "limits": open("/proc/self/limits").read(), "umask": os.umask(0o022), "group": os.getpgid(0) == os.getpid(),
    "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path, "hostname": socket.gethostname(),
    "interfaces": sorted(name for _, name in socket.if_nameindex()), "mounts": mounts,
    "root": sorted(os.listdir("/")), "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
'''


def cells_run(cells, *, factory: bool | None, limits=None, tmp_path, name="run", cell_timeout=None, grace=10.0):
    """Run plain cells in a sandbox of worker SLOT as this process's user, the kernel forked by a
    factory or started in the sandbox (None: whatever this process's factory does now); returns
    (RunResult, text printed by each cell)."""
    limits = limits or sandbox.Limits(**LIMITS)
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    if factory:
        wait_ready(sandbox.start_kernel_factory(1))
    elif factory is not None:
        sandbox.stop_kernel_factories()
    job = {"notebook": nb, "probes": {}, "cell_timeout": cell_timeout or limits.cell_timeout,
           "interrupt_grace": grace}
    result = sandbox.run(job, tmp_path / name, SLOT, limits)
    texts = ["".join(o.get("text", "") + str(o.get("evalue", "")) for o in c.get("outputs", []))
             for c in (result.notebook or {}).get("cells", [])]
    return result, texts


@pytest.fixture(autouse=True)
def _no_factory_left():
    yield
    sandbox.stop_kernel_factories()


def both_ways(mode, tmp_path, cells):
    """(fresh, forked): the texts of `cells` run with a kernel started in the sandbox, then forked."""
    if mode == "rootless":
        runs = [{"cells": cells, "slot": SLOT, "limits": LIMITS, "factory": f} for f in (False, True)]
        return [r["texts"] for r in as_nobody({"runs": runs}, uid=UID)["results"]]
    return [cells_run(cells, factory=f, tmp_path=tmp_path, name=f"f{f}")[1] for f in (False, True)]


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_kernel_is_confined_as_one_started_in_the_sandbox(tmp_path, mode):
    """The same user and groups, no capabilities (none to gain back), no_new_privs, the seccomp filter,
    the same resource limits (the process limit too), umask, process group of its own, working folder, environment,
    module path, host name, network, mounts and processes. What differs: its parent is outside the
    sandbox's process tree (the factory's child waits for it), TensorFlow is already imported, and its
    standard input is /dev/null rather than a pipe."""
    fresh_texts, forked_texts = both_ways(mode, tmp_path, [SELF])
    fresh, forked = line_after("SELF ", fresh_texts), line_after("SELF ", forked_texts)
    assert fresh and forked, (fresh_texts, forked_texts)
    assert (fresh["ppid"], fresh["tensorflow"]) == (2, False)
    assert (forked["ppid"], forked["tensorflow"]) == (0, True)  # forked by the factory, not started here
    for key in ("status", "limits", "umask", "group", "cwd", "env", "path", "hostname", "interfaces", "mounts",
                "root", "processes"):
        assert forked[key] == fresh[key], (key, fresh[key], forked[key])
    assert forked["status"]["CapBnd"] == forked["status"]["CapEff"] == "0000000000000000"
    assert forked["status"]["NoNewPrivs"] == "1" and forked["status"]["Seccomp"] == "2"
    uid = int(forked["status"]["Uid"].split()[0])
    assert uid == sandbox.FIRST_UID + SLOT and forked["processes"] == [1, 2, 3]
    assert "Max processes" in forked["limits"] and forked["interfaces"] == ["lo"]


HARNESS = b"/grader/harness.py"  # the harness's command line: python, then this


def _namespaces(pid: int) -> dict:
    return {name: os.readlink(f"/proc/{pid}/ns/{name}") for name in ("user", "mnt", "pid", "net", "ipc", "uts")}


@pytest.mark.skipif(os.geteuid() != 0, reason="reads the sandbox's processes from outside, as root")
def test_a_forked_kernel_lives_in_its_sandboxs_namespaces(tmp_path):
    """Seen from outside while it runs: the kernel shares every namespace with the harness of its own
    sandbox (and none with the grader), and the next sandbox's kernel has new ones."""
    seen: list = []
    held: list[int] = []

    def harnesses_beside(pid_ns: str) -> list[str]:
        found = []
        for p in os.listdir("/proc"):
            try:  # any process may end meanwhile: only that one is skipped
                if p.isdigit() and open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[1:2] == [HARNESS] \
                        and os.readlink(f"/proc/{p}/ns/pid") == pid_ns:
                    found.append(p)
            except OSError:
                continue
        return found

    def look():
        deadline = time.monotonic() + 600  # a safety net only: both runs end long before
        own = _namespaces(os.getpid())["pid"]
        while time.monotonic() < deadline and len(seen) < 2 and not done.is_set():
            for name in os.listdir("/proc"):
                try:
                    if not name.isdigit() or os.readlink(f"/proc/{name}/ns/pid") == own:
                        continue
                    if b"KERNEL_MARK" in open(f"/proc/{name}/environ", "rb").read():
                        harness = harnesses_beside(os.readlink(f"/proc/{name}/ns/pid"))
                        entry = (_namespaces(int(name)), [_namespaces(int(p)) for p in harness])
                        if not seen or seen[-1][0] != entry[0]:
                            # A namespace's inode number is reused once it is freed: holding each one
                            # open keeps the next sandbox from getting the same number.
                            held.extend(os.open(f"/proc/{name}/ns/{n}", os.O_RDONLY) for n in ("pid", "net"))
                            seen.append(entry)
                except OSError:
                    continue
            time.sleep(0.2)

    done = threading.Event()
    watcher = threading.Thread(target=look)
    watcher.start()
    try:
        for i in range(2):
            cells_run(["import os, time\nos.environ['KERNEL_MARK'] = '1'\nos.putenv('KERNEL_MARK', '1')\n"
                       "import subprocess\nsubprocess.run(['sleep', '5'], env=dict(os.environ))"],
                      factory=True, tmp_path=tmp_path, name=f"r{i}")
    finally:
        done.set()
        watcher.join()
    for fd in held:
        os.close(fd)
    assert len(seen) == 2, seen
    grader = _namespaces(os.getpid())
    for kernel_child, harnesses in seen:
        assert harnesses == [kernel_child], (kernel_child, harnesses)
        assert all(kernel_child[n] != grader[n] for n in ("mnt", "pid", "net", "ipc", "uts")), kernel_child
    assert all(seen[0][0][n] != seen[1][0][n] for n in ("pid", "net")), seen


@pytest.mark.parametrize("mode", MODES)
def test_each_forked_kernel_draws_its_own_random_numbers(tmp_path, mode):
    """Forks of one process share its random state: each kernel reseeds Python's and numpy's."""
    draw = "import random, numpy\nprint('DRAW ' + repr((random.random(), float(numpy.random.rand()))))"
    if mode == "rootless":
        runs = [{"cells": [draw], "slot": SLOT, "limits": LIMITS, "factory": True}] * 3
        texts = [r["texts"] for r in as_nobody({"runs": runs}, uid=UID)["results"]]
    else:
        texts = [cells_run([draw], factory=True, tmp_path=tmp_path, name=f"d{i}")[1] for i in range(3)]
    draws = [t[0].strip() for t in texts]
    assert all(d.startswith("DRAW (") for d in draws), texts
    assert len(set(draws)) == 3 and len({d.split(",")[1] for d in draws}) == 3, draws


def open_files(pid: int) -> set[tuple[int, int]]:
    """(device, inode) of each regular file process `pid` holds open, /dev/null aside."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if stat.S_ISREG(st.st_mode):
            found.add((st.st_dev, st.st_ino))
    return found


def exec_finished(pid: int, timeout: float = 60) -> list[bytes]:
    """The arguments of process `pid` once its exec is done. Popen returns when exec has closed the
    descriptors, a moment before the kernel sets up the new arguments and environment: read then,
    both are empty (and an environment check would pass unseen)."""
    deadline = time.monotonic() + timeout
    while not (cmdline := open(f"/proc/{pid}/cmdline", "rb").read()):
        assert time.monotonic() < deadline, f"process {pid} shows no arguments"
        time.sleep(0.01)
    return cmdline.split(b"\0")


def test_the_factory_holds_no_key(tmp_path, monkeypatch):
    """Started by exec with an environment of its own, never forked from the grader: the job (where the
    student's key is) is not in its environment, and no descriptor of the grader's reaches it."""
    key = tmp_path / "student.key"
    key.write_text("c0ffee" * 8)
    monkeypatch.setenv(GRADE_JOB_ENV, json.dumps({"student_key_file": str(key)}))
    inheritable = os.open(key, os.O_RDONLY)
    os.set_inheritable(inheritable, True)
    try:
        factory = sandbox.start_kernel_factory(1)
        assert factory is not None
        cmdline = exec_finished(factory.pid)
        assert cmdline[1].endswith(b"inside/zygote.py"), cmdline
        environ = open(f"/proc/{factory.pid}/environ", "rb").read()
        assert GRADE_JOB_ENV.encode() not in environ and b"student.key" not in environ
        # While it imports, the loader briefly opens libraries of its own: none of the grader's files.
        grader_files = open_files(os.getpid())
        assert key.stat().st_ino in {ino for _, ino in grader_files}
        assert not grader_files & open_files(factory.pid), (grader_files, open_files(factory.pid))
        # Its private folder goes once its imports are done: a factory killed later leaves nothing.
        cells_run(["print('ok')"], factory=None, tmp_path=tmp_path)
        assert not os.path.exists(factory.home)
        # Idle, it holds no file but /dev/null (its standard streams).
        targets = [os.readlink(f"/proc/{factory.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{factory.pid}/fd")]
        assert not [t for t in targets if t.startswith("/") and t != "/dev/null"], targets
    finally:
        os.close(inheritable)


def test_an_idle_factory_ends_but_never_while_a_kernel_of_its_runs(tmp_path, monkeypatch):
    """It holds hundreds of MiB: asked for no kernel for FACTORY_IDLE_S it ends, and the next sandbox
    gets a new one. While a kernel it forked runs, it stays (the watchdog finds the kernel below it)."""
    monkeypatch.setattr(sandbox, "FACTORY_IDLE_S", 2.0)
    idle = sandbox.start_kernel_factory(1)
    wait_ready(idle)
    assert idle.proc.wait(timeout=120) == 0
    alive_while_serving = []

    def watch():
        factory, deadline = None, time.monotonic() + 300
        while time.monotonic() < deadline and not (factory and sandbox._children(factory.pid)):
            factory = sandbox._factories.get(1)
            time.sleep(0.1)
        time.sleep(6)  # three times its idle time, well within the cell's 20 s
        alive_while_serving.append(factory is not None and factory.proc.poll() is None)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result, texts = cells_run(["import os, time\ntime.sleep(20)\nprint('PPID', os.getppid())"], factory=True,
                              tmp_path=tmp_path)
    watcher.join()
    assert texts == ["PPID 0\n"] and not result.events, (texts, result.events)
    assert sandbox._factories[1] is not idle and alive_while_serving == [True]
    assert sandbox._factories[1].proc.wait(timeout=120) == 0  # idle again once that kernel ended


def test_a_kernel_starts_in_the_sandbox_when_the_factory_is_gone_or_fails(tmp_path, monkeypatch):
    """The factory only saves time: gone, or failing to confine its kernel (here a filter the kernel
    refuses to load), the kernel starts in the sandbox, and no notebook code ran in the forked one."""
    fork = "import os\nprint('PPID', os.getppid())"
    result, texts = cells_run([fork], factory=True, tmp_path=tmp_path, name="ok")
    assert texts == ["PPID 0\n"], (texts, result.stderr[-1000:])
    sandbox._factories[1].proc.kill()
    sandbox._factories[1].proc.wait()
    result, texts = cells_run([fork], factory=None, tmp_path=tmp_path, name="gone")
    assert texts == ["PPID 2\n"] and not result.events, (texts, result.stderr[-1000:])
    assert sandbox.start_kernel_factory(1) is not None
    real_fd, real_program = sandbox._seccomp_fd, sandbox.seccomp_program()  # bubblewrap keeps the real filter
    monkeypatch.setattr(sandbox, "_seccomp_fd", lambda: real_fd(real_program))
    monkeypatch.setattr(sandbox, "seccomp_program", lambda *_: b"\x06\x00\x00\x00")  # half an instruction
    result, texts = cells_run([fork], factory=True, tmp_path=tmp_path, name="refused")
    assert texts == ["PPID 2\n"] and not result.events, (texts, result.stderr[-1000:])
    assert "starting the kernel here" in result.stderr and "seccomp" in result.stderr, result.stderr[-1000:]


def test_a_forked_kernels_crash_interrupts_and_kill_are_seen(tmp_path):
    """Its end reaches the harness through the factory's child: a segmentation fault is reported as one;
    a cell over its time is interrupted and the next cell runs; one that ignores the interrupt loses its
    kernel after the grace."""
    result, _ = cells_run(["print('before')", "import ctypes\nctypes.string_at(0)", "print('never')"],
                          factory=True, tmp_path=tmp_path, name="segv")
    assert [(e["event"], e.get("returncode")) for e in result.events] == [("kernel died", -signal.SIGSEGV)]
    assert "segmentation fault" in verdicts.reason_of(result, sandbox.Limits())
    limits = sandbox.Limits(cell_timeout=2, interrupt_grace=2, wall_timeout=90, memory_gib=4)
    result, texts = cells_run(["import time\nwhile True:\n    time.sleep(0.1)", "print('after')"], factory=True,
                              tmp_path=tmp_path, name="interrupted", limits=limits, grace=30)
    assert [e["event"] for e in result.events] == ["time limit"] and texts[1] == "after\n", (result.events, texts)
    result, texts = cells_run(["import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                               "print('never')"], factory=True, tmp_path=tmp_path, name="ignored", limits=limits,
                              grace=2)
    assert [e["event"] for e in result.events] == ["time limit", "kernel died"], result.events
    assert result.events[0]["ignored_interrupt"] and result.seconds < 60


# Four processes started by the kernel, each holding 600 MiB: 2.3 GiB with nothing of the kernel's own.
CHILDREN = """
import subprocess, sys, time
hog = "b = b'x' * (600 * 2**20); import time; time.sleep(120)"
children = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range(4)]
time.sleep(60)
print('not stopped', [c.poll() for c in children])
"""


def test_a_forked_kernels_memory_counts_against_its_sandbox(tmp_path):
    """The watchdog counts the kernel the factory forked and the processes it starts (outside the
    sandbox's process tree until the kernel ends), and the pages the kernel shares with the factory
    count once: a notebook's total stays what it would be in a kernel that imported TensorFlow."""
    limits = sandbox.Limits(cell_timeout=80, wall_timeout=90, memory_gib=2)
    result, texts = cells_run(["print('before')", CHILDREN, "print('after')"], factory=True, tmp_path=tmp_path,
                              name="over", limits=limits)
    assert [(e["event"], e.get("scope")) for e in result.events] == [("memory limit", "sandbox")], \
        (result.events, texts)
    assert result.notebook is None and result.seconds < 60
    hold = ("import tensorflow as tf\nb = bytearray(300 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
            "import time\ntime.sleep(2)\nprint('held')")
    result, texts = cells_run([hold], factory=True, tmp_path=tmp_path,
                              name="under", limits=limits)
    assert texts == ["held\n"] and not result.events, (texts, result.events)
    assert 300 < result.peak_memory_mib < 1536, result.peak_memory_mib


# The kernel asks to be traced by its parent (the factory's waiting child) and stops: a waiting child
# that took the stop for an end would leave, and the kernel, orphaned outside the sandbox's process
# tree, would hide from the watchdog. Then the kernel's children take 2.3 GiB.
TRACED = ("import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
          "print('traceme', libc.ptrace(0, 0, None, None))\nos.kill(os.getpid(), signal.SIGUSR1)\nprint('went on')")
def test_a_traced_kernel_stays_in_its_sandboxs_count(tmp_path):
    limits = sandbox.Limits(cell_timeout=80, wall_timeout=60, memory_gib=2)
    result, texts = cells_run([TRACED, CHILDREN], factory=True, tmp_path=tmp_path, name="traced", limits=limits)
    assert ("memory limit", "sandbox") in [(e["event"], e.get("scope")) for e in result.events], \
        (result.events, texts, result.wall_timed_out, result.peak_memory_mib)
    assert not result.wall_timed_out and result.seconds < 50


@pytest.mark.skipif(os.geteuid() != 0, reason="as nobody from root")
def test_a_rootless_kernel_that_hides_its_memory_map_is_still_counted(tmp_path):
    """Without root the grader cannot read the memory map of a forked kernel that made itself not
    dumpable (its memory belongs to the grader's own user namespace): it counts at its full resident
    size. Shared memory (which RLIMIT_DATA does not cover) over the limit stops the sandbox."""
    hide = ("import ctypes, mmap\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"
            "m = mmap.mmap(-1, 2300 * 2**20)\nfor i in range(0, len(m), 4096):\n    m[i] = 1\n"
            "import time\ntime.sleep(60)\nprint('not stopped')")
    report = as_nobody({"runs": [{"cells": [hide], "slot": SLOT, "factory": True,
                                  "limits": dict(cell_timeout=80, wall_timeout=90, memory_gib=2)}]}, uid=UID)
    [result] = report["results"]
    assert [(e["event"], e.get("scope")) for e in result["events"]] == [("memory limit", "sandbox")], \
        (result["events"], result["texts"])
    assert result["seconds"] < 60


def test_the_factory_shares_no_writable_memory_with_its_kernels(tmp_path):
    """Every kernel is a fork of the factory: a writable shared mapping in it would be a channel from
    one sandbox's kernel to the next one's. After it has served a kernel, it has none, and one thread."""
    cells_run(["print('ok')"], factory=True, tmp_path=tmp_path)
    pid = sandbox._factories[1].pid
    shared_writable = [line for line in open(f"/proc/{pid}/maps") if line.split()[1][1] == "w"
                       and line.split()[1][3] == "s"]
    assert shared_writable == [] and os.listdir(f"/proc/{pid}/task") == [str(pid)], shared_writable


def test_the_factorys_waiting_child_outlives_every_child_it_has():
    """The waiting child sends the kernel's exit status when it ends, but stays until its last child
    ends: a process the kernel made its sibling (CLONE_PARENT) has it as parent, and orphaned it
    would be adopted outside the sandbox's process tree, where the watchdog does not look. (Here the
    waiter's children are made directly, in a plain process: a bare clone of a threaded kernel can hang.)"""
    import subprocess
    import sys
    script = r"""
import json, os, socket, sys, time
sys.path.insert(0, sys.argv[1])
import zygote
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
release_read, release_write = os.pipe()
waiter = os.fork()
if waiter == 0:
    kernel = os.fork()
    if kernel == 0:
        os._exit(7)
    if os.fork() == 0:  # the kernel's sibling, as CLONE_PARENT would make it: the waiter's child too
        os.close(release_write)
        os.read(release_read, 1)  # lives until the test lets it go
        os._exit(0)
    os.close(release_read)
    os.close(release_write)
    zygote._wait(kernel, theirs)
os.close(release_read)
message = json.loads(ours.recv(100))  # sent while the sibling lives: it waits for the test
time.sleep(0.5)  # time for a waiter that wrongly left with the kernel to be gone (no time for a right one)
try:
    waiter_alive = os.waitpid(waiter, os.WNOHANG) == (0, 0)
except ChildProcessError:
    waiter_alive = False
os.write(release_write, b"x")
if waiter_alive:
    os.waitpid(waiter, 0)
print(json.dumps({"message": message, "waiter_alive_when_sent": waiter_alive}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(sandbox.INSIDE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen == {"message": {"exit": 7}, "waiter_alive_when_sent": True}, seen


def test_a_forked_child_uses_its_parents_factory_and_never_ends_it():
    """Each grading host starts the factory and forks a child per submission: the child uses the
    factory it inherited (it cannot wait on it, not being its parent) and leaves it running."""
    factory = sandbox.start_kernel_factory(1)
    assert factory is not None
    pid = os.fork()
    if pid == 0:
        same = False
        try:
            same = sandbox.start_kernel_factory(1) is factory
            sandbox.stop_kernel_factories()
        finally:
            os._exit(0 if same else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert factory.proc.poll() is None


def test_a_factory_whose_grader_dies_while_it_imports_leaves_no_folder():
    """A grader killed in its first seconds (SIGKILL: nothing of it runs) ends its factory while
    TensorFlow is still being imported; the factory's private folder goes with it."""
    import shutil
    import subprocess
    import sys
    with subprocess.Popen([sys.executable, "-c", "import time\nfrom deepngrams.grading import sandbox\n"
                           "factory = sandbox.KernelFactory(1)\nprint(factory.home, factory.pid, flush=True)\n"
                           "time.sleep(120)"], stdout=subprocess.PIPE, text=True, cwd=sandbox.ROOT) as owner:
        home, pid = owner.stdout.readline().split()
        try:
            # Killed once it is importing (its SIGTERM handler is set) and before it is done (folder there).
            deadline = time.monotonic() + 60
            while not _catches_sigterm(int(pid)) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _catches_sigterm(int(pid)) and os.path.isdir(home)
            owner.kill()
            owner.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _running(int(pid)):
                time.sleep(0.1)
            assert not _running(int(pid)) and not os.path.exists(home)
        finally:
            owner.kill()
            shutil.rmtree(home, ignore_errors=True)


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except FileNotFoundError:
        return {}


def _catches_sigterm(pid: int) -> bool:
    return bool(int(_status(pid).get("SigCgt", "0"), 16) & (1 << (signal.SIGTERM - 1)))


def _running(pid: int) -> bool:
    return _status(pid).get("State", "Z").split()[0] != "Z"
