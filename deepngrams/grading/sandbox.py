"""Run one submission's notebook in a bubblewrap sandbox and collect what came out.

The sandbox sees the operating system and the Python environment read-only, the bundle's
student files read-only (the corpus, the weights and model card: what the notebook
legitimately reads, and a w1_unittest.py without the tests' models) at /bundle, and a scratch folder of its own in memory,
/bundle/work (its working directory), gone when it ends. Nothing else of the course: not source/, not the gradebook, not
other submissions, not the reference values. It has no network (its own empty network
namespace), its own process tree, and runs as an unprivileged user with no capabilities.

Two modes, chosen by who runs the grader (`mode()`). As root, each worker's sandbox runs as a
user of its own (FIRST_UID + slot). As an ordinary user, each sandbox gets a user namespace of
its own (bubblewrap's --unshare-user) in which it is user FIRST_UID + slot; outside it is still
the grader's user, but it sees nothing of the grader: not its processes (its own PID
namespace), not its files (the same mounts as in root mode), and it cannot make namespaces or
mounts of its own (--disable-userns and the seccomp filter below).

Nothing survives a sandbox, so two sandboxes of one worker, one after the other, cannot pass
a bit: files live only in its own in-memory mounts, each capped (the root and /dev, which are
bubblewrap's own and uncapped, are read-only); SysV IPC and POSIX message queues in its own
IPC namespace; abstract Unix sockets in its own network namespace; every process in its own
PID namespace, which dies with it (`run` returns only once none of them is left). The kernel's
keyrings are kept per user id across sandboxes, so a seccomp filter refuses the keyring system
calls (and each sandbox starts with a session keyring of its own, not the grader's); the filter
also refuses new user namespaces, the way in to mounts and namespaces of the sandbox's own making,
and memory that no process's size shows (memory files, SysV shared memory, semaphores and message
queues).
Sandboxes that run at the same time share the files bound into them (the environment, the weights):
flock on them fails as if the kernel had no such call, so that no notebook can lock one and so block
or signal a neighbour (HDF5 then opens the weights without a lock; the sandbox turns its locking off too).

The kernel: each sandbox's kernel is a fresh process, but where a kernel factory runs (each grading
host starts one, `start_kernel_factory`) it is forked from one that has imported TensorFlow
already (inside/zygote.py), seconds sooner than a kernel that imports it. The fork joins the
sandbox's namespaces and gets what bubblewrap, setpriv and prlimit give the sandbox's processes
(`kernel_policy`): the same user, limits, filter and environment, no capabilities. Where the
factory gives no kernel, the harness starts one in the sandbox as usual.

Limits: wall time (the whole sandbox is killed), time per cell (the kernel is interrupted),
CPU time, memory (the resident memory, page tables and map entries of all the sandbox's
processes, the files of its in-memory folders and the buffers of its sockets together, watched
from outside (with a factory, the forked kernel and the pages it shares with the factory, counted
once; the sockets through a sock_diag socket the harness makes in the sandbox's network
namespace, `SocketCensus`), and the size of each process: its address space as root, its data
segment without root), processes, open files, file size. Each hit becomes a reason.

The process limit (RLIMIT_NPROC) counts the processes of a user id. As root that is the
sandbox's own user. Without root every sandbox runs as the grader's user, so the limit is set
inside the sandbox's user namespace, where Linux (5.14 on) counts the processes of that
namespace alone: a fork bomb in one sandbox fills its own count, not its neighbours'.
"""
from __future__ import annotations

import array
import atexit
import ctypes
import errno
import fcntl
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import stat
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepngrams.config import GRADE_JOB_ENV, ROOT, Limits
from deepngrams.grading import socket_census
from deepngrams.grading.socket_census import SocketCensus

INSIDE = Path(__file__).resolve().parent / "inside"  # what runs in the sandbox: imports nothing of the package
# What the notebook may read, at /bundle: the corpus, the weights and the model card; and, as
# w1_unittest.py, a stand-in without the tests' models and reference values (inside/w1_unittest_standin.py).
STUDENT_FILES = ("data/shakespeare_data.txt", "data/ngram_baseline.json", "model/grulm.weights.h5",
                 "model/model_card.json")
GRADED_UNITTEST = INSIDE / "w1_unittest_standin.py"
BUNDLE = "/bundle"  # where the sandbox sees the bundle's student files
FIRST_UID = 61000  # sandbox users: FIRST_UID + worker slot
ROOT_MODE = "root: a user per sandbox"
ROOTLESS_MODE = "rootless: a user namespace per sandbox"
# Per-user-namespace process counts (the rootless process limit) arrived in Linux 5.14.
ROOTLESS_KERNEL = (5, 14)
NO_SANDBOX = ("or, for trusted submissions only, grade without a sandbox knowingly: python -m deepngrams "
              "plain-autograde (or nbgrader with DEEPNGRAMS_NO_SANDBOX=1) runs each notebook as you, with nothing "
              "isolated")


@dataclass
class RunResult:
    """What came out of the sandbox; every field is untrusted data except the flags we set."""

    probes: dict = field(default_factory=dict)  # grade_id -> observations
    events: list = field(default_factory=list)  # time limit, memory limit, kernel died ...
    notebook: dict | None = None  # the executed notebook
    returncode: int | None = None
    wall_timed_out: bool = False
    output_cut: bool = False
    seconds: float = 0.0
    stderr: str = ""
    # The most memory its processes held together, as the watchdog sampled it: resident sizes and
    # page tables summed, or each shared page counted once (and map entries counted) where that sum
    # could be over the limit.
    peak_memory_mib: float = 0.0


def venv_python() -> str:
    """This interpreter by a path the sandbox can see: its folder resolved (a .venv may be a link to
    another folder, and the sandbox mounts the real one), its name kept (resolving the name too
    would step out of the virtual environment to the base interpreter)."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def mode() -> str:
    """How sandboxes are isolated here: a user each as root, a user namespace each otherwise."""
    return ROOT_MODE if os.geteuid() == 0 else ROOTLESS_MODE


def _kernel_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])


def available() -> str | None:
    """Why sandboxes cannot run here, or None if they can.

    Nothing is installed here: a grader that cannot sandbox says what is missing and how to
    grade without a sandbox, knowing it."""
    if shutil.which("bwrap") is None:
        return ("bubblewrap is not installed: install it (Debian, Ubuntu: apt-get install bubblewrap; "
                "Fedora: dnf install bubblewrap; Arch: pacman -S bubblewrap; otherwise your distribution's "
                f"bubblewrap package), {NO_SANDBOX}")
    try:
        seccomp_program()
    except RuntimeError as e:
        return str(e)
    if problem := socket_census.problem():
        return f"{problem}, {NO_SANDBOX}"
    if os.geteuid() == 0:
        return None
    if _kernel_version() < ROOTLESS_KERNEL:
        return (f"without root, sandboxes need Linux {'.'.join(map(str, ROOTLESS_KERNEL))} or later (this is "
                f"{platform.release()}): older kernels count one process limit for all of a user's processes, so one "
                f"notebook's fork bomb would stop the others. Run the grader as root, {NO_SANDBOX}")
    try:  # user namespaces may be off (sysctl) or restricted (AppArmor)
        probe = subprocess.run(["bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap does not run: {e}"
    if probe.returncode != 0:
        return (f"bubblewrap cannot make a user namespace here ({probe.stderr.strip()[-300:]}): enable unprivileged "
                f"user namespaces (kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap), "
                f"or run the grader as root, {NO_SANDBOX}")
    return None


def _cpu_cgroup(proc: Path) -> str | None:
    """The CPU cgroup this process is scheduled in, as a path from the hierarchy's root (the mount's
    root joined in: inside a container, the container's cgroup), or None for the root cgroup.

    cgroup v1 names the cpu controller in /proc/self/cgroup. Under cgroup v2 a process is scheduled
    in the nearest folder, from its own up to the mount, that has the cpu controller (cpu.weight:
    the root cgroup has none)."""
    try:
        memberships = [line.split(":", 2) for line in (proc / "self" / "cgroup").read_text().splitlines()]
        mounts = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    for mount in mounts:
        fields, _, tail = mount.partition(" - ")
        fields, tail = fields.split(), tail.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, top = fields[3], Path(fields[4].replace("\\040", " "))
        for hierarchy, controllers, path in (m for m in memberships if len(m) == 3):
            if tail[0] == "cgroup" and "cpu" in controllers.split(",") and "cpu" in tail[2].split(","):
                full = os.path.normpath(os.path.join(root, path.lstrip("/")))
                return None if full == "/" else full
            if tail[0] == "cgroup2" and hierarchy == "0":
                for folder in [top / path.lstrip("/"), *(top / path.lstrip("/")).parents]:
                    if folder != top and top not in folder.parents:
                        break
                    if (folder / "cpu.weight").exists():
                        return os.path.normpath(os.path.join(root, str(folder.relative_to(top))))
    return None


def cpu_sharing_problem(proc: Path = Path("/proc")) -> str | None:
    """Why sandboxes running side by side here might not share the CPU as equals, or None.

    Each sandbox is one session, and Linux schedules a session as one group (autogroup), so a
    notebook that starts many busy processes takes no more CPU than one sandbox's share. Linux
    applies autogroups only in the root CPU cgroup: in a container, a Kubernetes pod or a systemd
    unit that limits CPU, every process of the cgroup competes alone, and one such notebook slows
    the sandboxes beside it (their cells may then run into the time limit)."""
    try:
        enabled = (proc / "sys" / "kernel" / "sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        enabled = False
    cgroup = _cpu_cgroup(proc)
    if enabled and cgroup is None:
        return None
    where = "its container's CPU cgroup" if cgroup == "/" else f"the CPU cgroup {cgroup}"  # "/": a cgroup namespace's
    why = (f"this process is in {where}, where Linux does not group each session"
           if enabled else "this kernel does not group each session for the scheduler (autogroup is off or absent)")
    return (f"sandboxes side by side may not share the CPU as equals: {why}, so a notebook that starts many busy "
            "processes can slow the sandboxes beside it into their time limits. Grade one submission at a time "
            "in this cgroup (--workers 1; dask worker --nthreads 1), one worker per container or pod, or run "
            "the worker in the root CPU cgroup with autogroup on (sysctl kernel.sched_autogroup_enabled=1).")


def _dirs_for(path: str, made: set[str]) -> list[str]:
    """bwrap arguments creating the parents of `path` world-readable (bwrap makes them 0700)."""
    args = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def sandbox_env(threads: int) -> dict[str, str]:
    """The environment of the sandbox's processes (the harness's, hence its kernel's)."""
    return {"HOME": "/tmp", "PYTHONPATH": "/grader", "DEEPNGRAMS_BUNDLE": BUNDLE, "NBGRADER_EXECUTION": "autograde",
            "IPYTHONDIR": "/tmp/ipython", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter", "JUPYTER_DATA_DIR": "/tmp/jupyter-data",
            "MPLCONFIGDIR": "/tmp/matplotlib", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0",
            # No HDF5 file locks: the weights are one file that every sandbox at the same time reads
            # (and flock is refused there anyway, see ABSENT).
            "HDF5_USE_FILE_LOCKING": "FALSE",
            "PATH": f"{os.path.dirname(venv_python())}:/usr/local/bin:/usr/bin:/bin", **_thread_env(threads)}


def _thread_env(threads: int) -> dict:
    """Threads of the kernel's numerical libraries: the machine's cores shared among the workers."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


# ----------------------------------------------------------------------------------------
# The seccomp filter: a classic-BPF program over struct seccomp_data {int nr; u32 arch;
# u64 ip; u64 args[6];}, loaded by bubblewrap just before it starts the sandbox's command.
# ----------------------------------------------------------------------------------------
# Keyrings outlive the sandbox (the user keyring of its user id, the persistent keyring, the
# session keyring it inherits) and the next sandbox of the worker runs as the same user id.
# Memory files (memfd) and SysV shared memory, semaphores and message queues hold memory that no
# process's resident size shows (a set of 32,000 semaphores is 2 MiB of the kernel's): the watchdog
# would not see it, and a notebook could fill the machine. Nothing a notebook needs uses them (POSIX
# shared memory and semaphores live in the capped /dev/shm).
# A session is the kernel's scheduling group (autogroup): the processes of a sandbox stay in its one
# session, so a notebook that starts many busy processes shares the CPU with the other sandboxes as one
# group rather than as that many; a new session would be a new group, with a share of its own.
REFUSED = ("add_key", "request_key", "keyctl", "memfd_create", "memfd_secret", "shmget", "semget", "msgget",
           "setsid")
# Locks on files: every sandbox graded at the same time binds the same files (the environment, the
# student files such as the weights), and flock needs only a descriptor open for reading. A notebook
# holding such a lock would make a neighbour's open of the weights fail (HDF5 locks a file it reads)
# or wait, and taking and testing locks would pass bits between sandboxes. flock fails as if this
# kernel lacked it (ENOSYS), which HDF5 and most lockers take as "no locks here" and go on without.
# io_uring does in its queue what system calls do (open a socket, read, write) where no filter sees
# it: a socket made there would be of any kind. It fails as if the kernel lacked it, as in Docker's
# and Android's filters; what uses it (liburing, some event loops) then falls back to system calls.
ABSENT = ("flock", "io_uring_setup", "io_uring_enter", "io_uring_register")
# Extended attributes: an access ACL of 8,000 entries on each file of the in-memory folders holds a
# 128 KiB allocation of the kernel's that neither the folder's size nor its inodes count (a notebook
# held 6.5 GiB that way). They fail as on a file system without them (ENOTSUP), which copying tools
# (shutil.copy2) take as "nothing to copy". setxattrat is Linux 6.13's, the same number everywhere.
UNSUPPORTED = ("setxattr", "lsetxattr", "fsetxattr", "setxattrat")
# Record locks (fcntl's F_SETLK and the like, lockf): the kernel keeps each lock as a record, with no
# limit on their number (8.8 million held 1.7 GiB), and a lock, or a test for one, on a file that every
# sandbox shares would pass bits between sandboxes as flock would. They fail with ENOLCK ("no locks
# available"); what locks a file (SQLite on disk) then reports it locked.
LOCK_COMMANDS = (5, 6, 7, 36, 37, 38)  # F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW
# Sockets: only the kinds whose buffers the watchdog counts (`SocketCensus`): Unix and netlink sockets,
# and TCP and UDP over IPv4 and IPv6. Another family fails as if this kernel lacked it (EAFNOSUPPORT),
# another kind of IP socket (SCTP, MPTCP, UDP-Lite, ping) as if it lacked the protocol. socketpair
# takes the same three arguments and is held to the same rule.
SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_NETLINK)  # any type and protocol
IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)  # these types and protocols only
IP_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM)
IP_PROTOCOLS = (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP)  # 0: the type's own, TCP or UDP
SOCK_TYPE_MASK = 0xF  # the type without SOCK_NONBLOCK and SOCK_CLOEXEC
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "memfd_create": 319, "memfd_secret": 447,
               "shmget": 29, "semget": 64, "msgget": 68, "setsid": 112, "clone": 56, "unshare": 272, "clone3": 435,
               "socket": 41, "socketpair": 53, "flock": 73, "fcntl": 72,
               "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
               "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "memfd_create": 279, "memfd_secret": 447,
                "shmget": 194, "semget": 190, "msgget": 186, "setsid": 157, "clone": 220, "unshare": 97, "clone3": 435,
                "socket": 198, "socketpair": 199, "flock": 32, "fcntl": 25,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463},
}
X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: the same audit arch, other numbers
CLONE_NEWUSER = 0x10000000
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
BPF_LD_W_ABS, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_RET, BPF_AND_K = 0x20, 0x15, 0x35, 0x45, 0x06, 0x54


def seccomp_program(machine: str | None = None) -> bytes:
    """The compiled filter: the syscalls in REFUSED and new user namespaces fail with EPERM, sockets
    (and socket pairs) other than those of SOCKET_FAMILIES and IP_FAMILIES (with IP_TYPES and
    IP_PROTOCOLS) as if the kernel had none.

    clone3 fails with ENOSYS, as if the kernel were older: its flags lie in memory a filter
    cannot read, and the C library then falls back to clone, whose flags it can. The syscalls in
    ABSENT fail with ENOSYS too, as if the kernel had none: flock (a lock on a file every sandbox
    shares would let one notebook block or signal another) and io_uring (whose queue makes sockets
    and does I/O without the system calls this filter checks). Setting extended attributes fails with
    ENOTSUP (UNSUPPORTED), fcntl's record locks with ENOLCK (LOCK_COMMANDS). A system
    call of another architecture (32-bit x86 on x86_64) kills the process and one of x86_64's
    x32 ABI fails with ENOSYS: their numbers differ, so the checks above would not hold.
    """
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        raise RuntimeError(f"cannot build the sandbox's seccomp filter on {machine!r}: its system call numbers "
                           f"are known only for {', '.join(SYSCALLS)}")
    nr = SYSCALLS[machine]
    # (opcode, k, jump-if-true label, jump-if-false label); None falls through, a str names a label.
    code: list = [(BPF_LD_W_ABS, 4, None, None),  # arch
                  (BPF_JEQ, AUDIT_ARCH[machine], None, "kill"),
                  (BPF_LD_W_ABS, 0, None, None)]  # nr
    if machine == "x86_64":
        code.append((BPF_JGE, X32_SYSCALL_BIT, "enosys", None))
    code += [(BPF_JEQ, nr[name], "eperm", None) for name in REFUSED]
    code += [(BPF_JEQ, nr[name], "enosys", None) for name in ABSENT]
    code += [(BPF_JEQ, nr[name], "enotsup", None) for name in UNSUPPORTED]
    code += [(BPF_JEQ, nr["clone3"], "enosys", None),
             (BPF_JEQ, nr["clone"], "flags", None),
             (BPF_JEQ, nr["unshare"], "flags", None),
             (BPF_JEQ, nr["fcntl"], "fcntl", None),
             (BPF_JEQ, nr["socket"], "socket", None),
             (BPF_JEQ, nr["socketpair"], "socket", None),
             (BPF_RET, SECCOMP_RET_ALLOW, None, None),
             "flags", (BPF_LD_W_ABS, 16, None, None),  # low half of args[0] (little-endian): the flags
             (BPF_JSET, CLONE_NEWUSER, "eperm", None),
             (BPF_RET, SECCOMP_RET_ALLOW, None, None),
             "fcntl", (BPF_LD_W_ABS, 24, None, None)]  # low half of args[1]: the command
    code += [(BPF_JEQ, command, "enolck", None) for command in LOCK_COMMANDS]
    code += [(BPF_RET, SECCOMP_RET_ALLOW, None, None),
             "socket", (BPF_LD_W_ABS, 16, None, None)]  # args[0]: the family
    code += [(BPF_JEQ, family, "allow", None) for family in SOCKET_FAMILIES]
    code += [(BPF_JEQ, family, "ip", None) for family in IP_FAMILIES]
    code += [(BPF_RET, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT, None, None),
             "ip", (BPF_LD_W_ABS, 24, None, None),  # args[1]: the type
             (BPF_AND_K, SOCK_TYPE_MASK, None, None)]
    code += [(BPF_JEQ, kind, "protocol", None) for kind in IP_TYPES]
    code += [(BPF_RET, SECCOMP_RET_ERRNO | errno.EPROTONOSUPPORT, None, None),
             "protocol", (BPF_LD_W_ABS, 32, None, None)]  # args[2]: the protocol
    code += [(BPF_JEQ, protocol, "allow", None) for protocol in IP_PROTOCOLS]
    code += [(BPF_RET, SECCOMP_RET_ERRNO | errno.EPROTONOSUPPORT, None, None),
             "allow", (BPF_RET, SECCOMP_RET_ALLOW, None, None),
             "eperm", (BPF_RET, SECCOMP_RET_ERRNO | errno.EPERM, None, None),
             "enosys", (BPF_RET, SECCOMP_RET_ERRNO | errno.ENOSYS, None, None),
             "enotsup", (BPF_RET, SECCOMP_RET_ERRNO | errno.ENOTSUP, None, None),
             "enolck", (BPF_RET, SECCOMP_RET_ERRNO | errno.ENOLCK, None, None),
             "kill", (BPF_RET, SECCOMP_RET_KILL_PROCESS, None, None)]
    labels, insns = {}, []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for i, (op, k, jt, jf) in enumerate(insns):
        jumps = [labels[j] - i - 1 if j else 0 for j in (jt, jf)]
        assert all(0 <= j < 256 for j in jumps)
        out += struct.pack("=HBBI", op, jumps[0], jumps[1], k)
    return bytes(out)


def _seccomp_fd(program: bytes | None = None) -> int:
    """A descriptor (above 3, which the harness gets) holding the filter (`program`, by default
    `seccomp_program()`), for bwrap's --seccomp."""
    memfd = os.memfd_create("deepngrams-seccomp")
    try:
        os.write(memfd, seccomp_program() if program is None else program)
        os.lseek(memfd, 0, os.SEEK_SET)
    except OSError:
        os.close(memfd)
        raise
    return _above_10(memfd)


def bwrap_args(uid: int, limits: Limits, bundle: Path = ROOT, threads: int = 1,
               seccomp_fd: int | None = None, rootless: bool | None = None) -> list[str]:
    """The bubblewrap command line for one sandbox (the harness's command line follows it).

    `uid`: the sandbox's user (as root its real user; without root its user inside its own
    user namespace). `seccomp_fd`: a descriptor the child inherits, holding `seccomp_program()`
    (run passes one). `rootless`: the mode, by default `mode()`'s.
    """
    if rootless is None:
        rootless = mode() == ROOTLESS_MODE
    scratch = str(int(limits.scratch_mib * 2**20))
    # Without root: a user namespace of its own, which may make no other (nested ones would
    # give it the capabilities to mount over its read-only view).
    userns = ["--unshare-user", "--disable-userns", "--uid", str(uid), "--gid", str(uid)] if rootless else []
    args = ["bwrap", *userns, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            # /tmp first: the environment may live below it (a clone in /tmp), bound on top of it.
            "--perms", "1777", "--size", scratch, "--tmpfs", "/tmp"]
    made: set[str] = {"/tmp"}
    for system in ("/usr", "/etc"):
        args += ["--ro-bind", system, system]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{link}"):
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            args += ["--ro-bind", f"/{link}", f"/{link}"]
    # Python itself and the virtual environment (wherever they live), read-only.
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not prefix.startswith(("/usr/", "/etc/")):
            args += _dirs_for(prefix, made) + ["--ro-bind", prefix, prefix]
    args += ["--perms", "0755", "--dir", BUNDLE]
    for name in STUDENT_FILES:
        target = f"{BUNDLE}/{name}"
        args += _dirs_for(target, made | {BUNDLE}) + ["--ro-bind", str(bundle / name), target]
    args += ["--ro-bind", str(GRADED_UNITTEST), f"{BUNDLE}/w1_unittest.py"]
    args += ["--perms", "0755", "--dir", "/grader",
             "--ro-bind", str(INSIDE / "harness.py"), "/grader/harness.py",
             "--ro-bind", str(INSIDE / "probes.py"), "/grader/deepngrams_probes.py",
             "--perms", "1777", "--size", scratch, "--tmpfs", f"{BUNDLE}/work",
             # Files in a tmpfs count against no process's memory: every writable one is capped
             # (a bare --tmpfs is half the machine's memory). bubblewrap's /dev is such a tmpfs,
             # writable by the sandbox's user in its own namespace, so it is made read-only (its
             # device nodes still open for writing), and its /dev/shm is a capped one.
             "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--perms", "1777", "--size", scratch, "--tmpfs", "/run",
             "--perms", "1777", "--size", scratch, "--tmpfs", "/dev/shm",
             # The root itself is bubblewrap's tmpfs, owned by the sandbox's user in its own
             # namespace: read-only, once every mount on it is made (the last mount here).
             "--remount-ro", "/",
             "--chdir", f"{BUNDLE}/work",
             *[a for name, value in sandbox_env(threads).items() for a in ("--setenv", name, value)],
             "--unsetenv", "JUPYTER_CONFIG_DIR", "--unsetenv", "JUPYTER_PATH",
             *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else [])]
    if rootless:
        # The process limit, set inside the user namespace, counts this sandbox's processes only.
        # bubblewrap has already dropped every capability and set no_new_privs; setpriv checks it.
        args += ["prlimit", f"--nproc={limits.processes}:{limits.processes}", "--",
                 "setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    else:
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    return args


def _rlimits(limits: Limits, rootless: bool) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for the sandbox's processes; see `_limit`."""
    gib = int(limits.memory_gib * 2**30)  # each process's size: within the watchdog's total
    cpu = int(limits.wall_timeout * 2) + 10  # two cores for the whole wall time, then SIGXCPU
    size = int(limits.file_mib * 2**20)
    # Each open pipe or socket holds kernel memory, which the watchdog counts (`SocketCensus`, and for
    # pipes the descriptors a process has room for, `_descriptor_slots`).
    files = min(limits.open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # never above the grader's own
    found = [(resource.RLIMIT_DATA if rootless else resource.RLIMIT_AS, gib, gib), (resource.RLIMIT_CPU, cpu, cpu + 5),
             (resource.RLIMIT_FSIZE, size, size), (resource.RLIMIT_NOFILE, files, files), (resource.RLIMIT_CORE, 0, 0)]
    if not rootless:
        found.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    return found


def _limit(limits: Limits, rootless: bool = False):
    """Resource limits for the sandbox's processes, set just before bubblewrap starts.

    Without root, the size of each process is its data segment (RLIMIT_DATA: the memory it
    may write, which a large allocation exceeds with a MemoryError) rather than its address
    space, and the process limit is set inside the sandbox (`bwrap_args`): here it would count
    every process of the grader's user.
    """
    found = _rlimits(limits, rootless)

    def apply():
        for which, soft, hard in found:
            resource.setrlimit(which, (soft, hard))
        os.umask(0o022)
    return apply


def kernel_policy(uid: int, limits: Limits, rootless: bool) -> dict:
    """What the kernel factory gives a kernel it forks into a sandbox: what the sandbox's processes
    get from bubblewrap, setpriv and prlimit (`bwrap_args`, `_limit`), which a fork of the factory
    does not inherit."""
    found = _rlimits(limits, rootless)
    if rootless:  # set inside the sandbox's user namespace, as prlimit does there
        found.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    return {"uid": None if rootless else uid, "rlimits": found, "seccomp": seccomp_program().hex(),
            "keyctl": SYSCALLS.get(platform.machine(), {}).get("keyctl"), "timeout": limits.wall_timeout}


# A factory no sandbox asked for a kernel this long ends: it holds some 600 MiB, and a Formgrader's
# server may idle for days. Longer than a notebook's default time, so a batch keeps its factories.
FACTORY_IDLE_S = 900.0


class KernelFactory:
    """A worker's kernel factory (inside/zygote.py): one process that has imported TensorFlow, which
    forks each sandbox's kernel into that sandbox, seconds sooner than a kernel that imports it.

    Started with exec, never forked from the grader, and with an environment of its own: the
    sandbox's, its folders moved to a private one (what its imports read or write stays there)."""

    def __init__(self, threads: int) -> None:
        self.threads, self.owner = threads, os.getpid()
        self.home = tempfile.mkdtemp(prefix="deepngrams-kernels-")
        env = {name: self.home + value[len("/tmp"):] if value.startswith("/tmp") else value
               for name, value in sandbox_env(threads).items() if name != "PYTHONPATH"}
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # It answers its first sandbox once its imports are done: nothing waits for it here.
            self.proc = subprocess.Popen([venv_python(), str(INSIDE / "zygote.py"), str(theirs.fileno()),
                                          str(os.getpid()), self.home, str(FACTORY_IDLE_S)],
                                         pass_fds=(theirs.fileno(),), env=env,
                                         cwd=self.home,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self.sock.close()
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        finally:
            theirs.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def offer(self, policy: dict) -> socket.socket | None:
        """The sandbox's end of its line to the factory (the harness gets its number in the job), or
        None if the factory is gone."""
        ours, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.sock.sendmsg([json.dumps(policy).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [ours.fileno()]))])
        except OSError:
            sandbox_end.close()
            return None
        finally:
            ours.close()
        return sandbox_end

    def close(self) -> None:
        self.sock.close()
        if os.getpid() != self.owner:  # a forked child's copy: the factory is its parent's to end
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_factories: dict[int, KernelFactory] = {}  # by the kernels' thread count


def start_kernel_factory(threads: int) -> KernelFactory | None:
    """This process's kernel factory for `threads`, started if it has none (or its own ended); the
    sandboxes it runs, and those of the children it forks afterwards, then use it. None where it
    cannot start: their kernels then start in their sandboxes."""
    found = _factories.get(threads)
    if found is not None and (found.owner != os.getpid() or found.proc.poll() is None):
        return found  # alive, or its parent's (a forked child cannot wait on it, only use it)
    if found is not None:
        found.close()
    try:
        _factories[threads] = found = KernelFactory(threads)
    except OSError:
        _factories.pop(threads, None)
        return None
    return found


def stop_kernel_factories() -> None:
    while _factories:
        _factories.popitem()[1].close()


atexit.register(stop_kernel_factories)


WATCH_SECONDS = 0.2  # how often the memory watchdog samples the sandbox's processes
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int] | None:
    """The children of `pid` (of each of its threads), or None where the kernel does not list them."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # it ended
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(child) for child in f.read().split()]
        except FileNotFoundError:
            if os.path.exists(f"/proc/{pid}/task/{tid}"):
                return None  # a kernel without CONFIG_PROC_CHILDREN
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return found


def _memory_status(pid: int) -> tuple[int, int]:
    """Resident memory and page tables of one process in bytes (0 and 0 once it has ended, or for a
    zombie), from one read of /proc/PID/status, which is readable for every process, a rootless
    kernel (not dumpable) included.

    Page tables are the kernel's, in no resident size: a process that maps one shared page every
    2 MiB of its address space holds a page of them for each while its resident size stays one page."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return 0, 0
    found = []
    for label in (b"\nVmRSS:", b"\nVmPTE:"):  # in kB; absent where the process has no memory left
        at = status.find(label)
        try:
            kib = int(status[at + len(label):status.index(b"\n", at + 1)].split()[0]) if at >= 0 else 0
        except (ValueError, IndexError):
            kib = 0
        found.append(kib * 1024)
    return found[0], found[1]


def _resident(pid: int) -> int:
    """Resident memory and page tables of one process in bytes (`_memory_status`)."""
    return sum(_memory_status(pid))


def _sysctl(name: str, fallback: int) -> int:
    try:
        with open(f"/proc/sys/{name}", "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return fallback


# Each memory map entry of a process holds kernel memory (its vm_area_struct, a share of the maple tree
# and of its anonymous-memory links: 220 to 370 bytes, measured on Linux 6.18) that no size of the
# process shows, and a process may have vm.max_map_count of them (65,530 by default: 32 MiB at the 512
# bytes charged). 300 processes of small resident size could hold 6 GiB that way. Counting them reads
# /proc/PID/maps, a line per entry, so a sample charges each process with memory the most it may hold,
# and counts exactly (`_exact`) only when that passes the limit.
MAP_ENTRY_BYTES = 512
MAP_ENTRIES_BOUND = _sysctl("vm/max_map_count", 65530) * MAP_ENTRY_BYTES


def _map_entries(pid: int) -> int:
    """The number of memory map entries of one process (raises OSError where it cannot be read)."""
    count = 0
    with open(f"/proc/{pid}/maps", "rb") as f:
        while chunk := f.read(1 << 16):
            count += chunk.count(b"\n")
    return count


# Pipes: their buffers are kernel memory, in no process's resident size, and no interface lists a
# namespace's pipes as sock_diag lists its sockets (nor may the grader read a rootless kernel's
# descriptors: it is not dumpable). What bounds them: once a user's pipes hold fs.pipe-user-pages-soft
# pages (16384 pages, 64 MiB, by default), each new pipe gets two pages and none may grow. So each
# descriptor a sandbox's processes have room for (FDSize in /proc/PID/status, readable for every
# process) is charged two pages, as if each held a full pipe of its own; the 64 MiB a user's first pipes
# may hold are not charged (as root each sandbox is a user of its own; without root they all share the
# grader's, and one sandbox's pipes then make its neighbours' new pipes small: slower, never wrong).
# Where the soft limit is off, a pipe may grow to fs.pipe-max-size, and each descriptor is charged that.
PIPE_SLOT_BYTES = 2 * PAGE if _sysctl("fs/pipe-user-pages-soft", 16384) else _sysctl("fs/pipe-max-size", 2**20)


def _proc_number(pid: int, name: str, label: bytes) -> int:
    """The number after `label` in /proc/PID/NAME (raises OSError where it cannot be read)."""
    with open(f"/proc/{pid}/{name}", "rb") as f:
        for line in f:
            if line.startswith(label):
                return int(line.split()[1])
    raise OSError(f"no {label!r} in /proc/{pid}/{name}")


def _descriptor_slots(pids) -> int:
    """Descriptors the processes `pids` have room for, together (each process's FDSize: at least
    the number it holds; 0 for one that has ended)."""
    total = 0
    for pid in pids:
        try:
            total += _proc_number(pid, "status", b"FDSize:")
        except (OSError, ValueError, IndexError):
            continue
    return total


def _descendants(root: int) -> tuple[list[int], int, int]:
    """`root` and every process descended from it, their resident memory and page tables together
    (bytes, `_resident`), and how many of them have memory (not ended, not zombies).

    The tree is walked down from `root` through each process's list of children, so a sample
    reads a few files of the sandbox's processes, not one of every process on the machine (the
    watchdog samples several times a second for every sandbox). Orphans inside a sandbox are
    reparented to its PID namespace's init, so they stay descendants of bubblewrap. A kernel
    that does not list children gets one read of /proc/PID/stat per process on the machine.
    """
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = _children(pid)
        if children is None:
            return _descendants_by_scan(root)
        tree.append(pid)
        todo.extend(children)
    return _with_memory(tree)


def _with_memory(tree: list[int]) -> tuple[list[int], int, int]:
    held = [_resident(pid) for pid in tree]
    return tree, sum(held), sum(1 for h in held if h)


def _descendants_by_scan(root: int) -> tuple[list[int], int, int]:
    """`_descendants` from one read of /proc/PID/stat per process on the machine."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            # After the command name (which may hold spaces and parentheses): state, ppid, ...
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return _with_memory(tree)


# The sandbox's writable in-memory folders (tmpfs): their files count against its memory.
SCRATCH_MOUNTS = ("/tmp", f"{BUNDLE}/work", "/run", "/dev/shm")
# What the kernel keeps for each file or folder in a tmpfs (inode and directory entry), which
# the tmpfs's size does not cap: millions of empty files would fill the machine.
INODE_BYTES = 1024


def _scratch_usage(pids: list[int], scratch_bytes: int) -> int | None:
    """Bytes held by the files in the sandbox's in-memory folders (their data, and INODE_BYTES
    for each file), read through /proc/PID/root of a process inside it; None if none is readable.

    A folder counts only if it is the sandbox's own, of the scratch size: a process still
    outside (bubblewrap before it changes its root) would show the grader's folders."""
    size = -(-scratch_bytes // PAGE) * PAGE
    for pid in pids:
        total = 0
        try:
            for mount in SCRATCH_MOUNTS:
                st = os.statvfs(f"/proc/{pid}/root{mount}")
                if st.f_blocks * st.f_frsize != size:
                    raise FileNotFoundError(mount)
                total += (st.f_blocks - st.f_bfree) * st.f_frsize + (st.f_files - st.f_ffree) * INODE_BYTES
        except OSError:
            continue  # it ended, or it is not inside yet
        return total
    return None


def _exact(pids: list[int]) -> int:
    """The memory of `pids` together, in bytes, each page shared among them counted once, with
    their page tables and map entries.

    The sum of the proportional set sizes (a shared page counts 1/n in each of its n users):
    a fork shares all its parent's pages, which a sum of resident sizes would count twice. It
    costs a walk of each process's page tables and a read of its map, so it is read only when
    the cheap sum is high.
    """
    total = 0
    for pid in pids:
        resident, tables = _memory_status(pid)
        if not resident + tables:
            continue  # ended, or a zombie
        try:
            total += _proc_number(pid, "smaps_rollup", b"Pss:") * 1024 + tables + _map_entries(pid) * MAP_ENTRY_BYTES
        except (OSError, ValueError, IndexError):
            # A process may make itself unreadable (not dumpable, where the grader lacks the
            # capability over its memory): the most it may hold counts, never nothing.
            total += resident + tables + MAP_ENTRIES_BOUND
    return total


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _processes_in(namespace: str, uid: int) -> list[int]:
    """The processes of user `uid` in the PID namespace `namespace` (as /proc/PID/ns/pid reads)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid and _pid_namespace(int(name)) == namespace:
                    found.append(int(name))
            except OSError:
                continue
    return found


def _end_sandbox(namespace: str, uid: int, seconds: float = 10.0) -> list[int]:
    """Kill what is left of a sandbox's processes and wait until none is left.

    The kernel ends a PID namespace's processes when its init dies, but after bubblewrap (our
    child) may already have been reaped; until it has, the next sandbox of the worker (same
    user id) would share their process count. Returns those still there after `seconds`.
    """
    deadline = time.monotonic() + seconds
    while (left := _processes_in(namespace, uid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _reap_if_child(pid)
        time.sleep(0.02)
    return left


def _reap_if_child(pid: int) -> None:
    """Reap `pid` if it has ended and is this process's child. The sandbox's init outlives bubblewrap
    and is reparented to the nearest child subreaper (nbgrader_host makes each grading child one), or
    else to the machine's init, which on some machines reaps only every second or so."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


SANDBOX_USERS = 256  # sandbox users FIRST_UID ... FIRST_UID + 255, as root
USER_LOCKS = Path("/run/deepngrams-sandbox-users")  # as root: one lock per sandbox user in use


def _claim_user(preferred: int) -> tuple[int, int]:
    """A sandbox user no other sandbox on this machine has now (as root): (uid, its lock's descriptor).

    Two sandboxes of one user would share its process limit (a fork bomb in one starves the other),
    so even two batches at once, or another grader's, get users of their own: each holds a lock on
    its user until it ends, and a slot whose user is taken gets the next free one."""
    USER_LOCKS.mkdir(mode=0o700, exist_ok=True)
    info = USER_LOCKS.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise RuntimeError(f"{USER_LOCKS} must be a folder of root's alone (mode 0700): remove it and grade again")
    for uid in [preferred] + list(range(FIRST_UID, FIRST_UID + SANDBOX_USERS)):
        fd = os.open(USER_LOCKS / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise RuntimeError(f"all {SANDBOX_USERS} sandbox users are in use: grade with fewer workers")


def run(job: dict, scratch: Path, slot: int, limits: Limits, *, sandboxed: bool = True,
        bundle: Path = ROOT, threads: int = 1) -> RunResult:
    """Run the harness on `job` (notebook, probes, cell timeout) in a fresh sandbox.

    `sandboxed=False` runs the same harness as a plain child process in `scratch`, with the
    same limits but none of the isolation: only for measuring the sandbox's cost (`make bench`).
    """
    rootless = mode() == ROOTLESS_MODE
    if not sandboxed or rootless:  # without root each sandbox is a user namespace of its own
        return _run(job, scratch, FIRST_UID + slot, limits, sandboxed, bundle, threads, rootless)
    uid, lock = _claim_user(FIRST_UID + slot)
    try:
        return _run(job, scratch, uid, limits, sandboxed, bundle, threads, rootless)
    finally:
        os.close(lock)


def _run(job: dict, scratch: Path, uid: int, limits: Limits, sandboxed: bool, bundle: Path, threads: int,
         rootless: bool) -> RunResult:
    python = venv_python()
    owner = os.geteuid() if rootless else uid  # whom the sandbox's processes belong to, seen from here
    seccomp_fd = factory_fd = factory_pid = None
    if sandboxed:
        seccomp_fd = _seccomp_fd()
        factory = _factories.get(threads)
        factory_line = factory.offer(kernel_policy(uid, limits, rootless)) if factory is not None else None
        if factory_line is not None:  # the harness's line to the factory, by its number
            factory_fd, factory_pid = _above_10(factory_line.detach()), factory.pid
            job = dict(job, zygote=factory_fd)
        argv = bwrap_args(uid, limits, bundle, threads, seccomp_fd, rootless) + [python, "/grader/harness.py"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        scratch = Path("/")
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        argv = [python, str(INSIDE / "harness.py")]
        env = dict(os.environ, PYTHONPATH=str(scratch / ".probes"), DEEPNGRAMS_BUNDLE=str(bundle),
                   NBGRADER_EXECUTION="autograde", TF_CPP_MIN_LOG_LEVEL="3", **_thread_env(threads))
        env.pop(GRADE_JOB_ENV, None)  # the grader's job (where the student's key is) is not the notebook's
        (scratch / ".probes").mkdir(exist_ok=True)
        shutil.copy(INSIDE / "probes.py", scratch / ".probes" / "deepngrams_probes.py")
    payload = json.dumps(job).encode()
    # The harness's line back (its descriptor 3): a socket, which carries the sandbox's socket census
    # first (`SocketCensus`), then the lines it writes.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    write_end = theirs.detach()
    kept = tuple(fd for fd in (seccomp_fd, factory_fd) if fd is not None)
    result = RunResult()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(3, write_end) + kept, env=env, cwd=scratch, start_new_session=True,
                                preexec_fn=_fd3(write_end, _limit(limits, rootless)))
    finally:
        os.close(write_end)
        for fd in kept:
            os.close(fd)
    lines: list[bytes] = []
    cap = int(limits.output_mib * 2**20)
    census: list[SocketCensus] = []  # the sandbox's socket census, once the harness has sent it

    def collect():
        total = 0
        try:  # the harness's first message: one byte and, in the sandbox, its census socket
            first, ancillary, _, _ = ours.recvmsg(1, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
        except OSError:
            first, ancillary = b"", []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for fd in array.array("i", data[:len(data) - len(data) % 4]):
                    got = socket.socket(fileno=fd)
                    if sandboxed and not census and got.family == socket.AF_NETLINK:
                        census.append(SocketCensus(got))
                    else:  # without a sandbox it would list the grader's own sockets: not the notebook's
                        got.close()
        with os.fdopen(ours.detach(), "rb") as f:
            for line in f:
                if first != b"\n":  # not the census's byte: the start of the first line
                    line, first = first + line, b"\n"
                total += len(line)
                if total > cap:
                    result.output_cut = True
                    continue  # keep draining, so the harness never blocks
                lines.append(line)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    err = bytearray()

    def drain_stderr():
        for chunk in iter(lambda: proc.stderr.read(65536), b""):
            if len(err) < 65536:
                err.extend(chunk[:65536 - len(err)])

    err_reader = threading.Thread(target=drain_stderr, daemon=True)
    err_reader.start()

    # The memory limit holds for the sandbox as a whole: several processes, each under its
    # address-space limit, could together take far more. Cgroups would count it exactly but
    # are not delegated to the grader, so a watchdog samples the processes' resident memory and page
    # tables (summed; near the limit, recounted with each shared page once and their map entries), the
    # files of its in-memory folders (_scratch_usage) and the buffers of its sockets (SocketCensus), and
    # stops the sandbox.
    memory_cap = limits.memory_gib * 2**30
    scratch_bytes = int(limits.scratch_mib * 2**20)
    stopped_at: list[int] = []  # the total (bytes) that stopped the sandbox
    namespace: list[str] = []  # the sandbox's PID namespace, once seen
    own = _pid_namespace(os.getpid())
    done = threading.Event()
    held_by_sockets = [0]  # the last count of the sandbox's sockets (bytes)

    # Signals go through a pidfd: once the main thread has reaped bubblewrap, its pid may name
    # another process, the pidfd never does.
    pidfd = os.pidfd_open(proc.pid)

    def sockets_held(budget: float) -> int:
        """The sandbox's socket buffers, counted up to `budget` (past it the sandbox stops); where a
        count fails, the last one."""
        if census:
            try:
                held_by_sockets[0] = census[0].bytes_held(max(0, int(budget)))
            except Exception:  # noqa: BLE001 - a failed count must not end the watch; the next one counts
                pass
        return held_by_sockets[0]

    def watch():
        try:
            while not done.wait(WATCH_SECONDS):
                try:
                    tree, total, live = _descendants(proc.pid)
                    if sandboxed and not namespace:
                        namespace.extend(ns for pid in tree[1:2] if (ns := _pid_namespace(pid)) not in (None, own))
                    files = (_scratch_usage(tree[:0:-1], scratch_bytes) or 0) if sandboxed else 0
                    slots = _descriptor_slots(tree)
                    if factory_pid is not None:
                        # The kernel it forked into this sandbox and what that kernel started: their
                        # resident sizes (which hold what the kernel shares with the factory, as a kernel
                        # that imported TensorFlow itself would), not the factory's or its waiting child's;
                        # over the limit, all of them by PSS (the shared pages once). Nothing while the
                        # factory has no child (this sandbox's kernel not forked yet, or started here
                        # instead). It serves one sandbox at a time: its children are this sandbox's.
                        more, more_total, more_live = _descendants(factory_pid)
                        if len(more) > 1:
                            ours = [factory_pid, *(_children(factory_pid) or ())]
                            tree = tree + more
                            total += max(0, more_total - sum(_resident(pid) for pid in ours))
                            live += max(0, more_live - len(ours))
                            slots += _descriptor_slots(pid for pid in more if pid not in ours)
                    files += slots * PIPE_SLOT_BYTES  # the pipes they may hold, with the files: never recounted
                    # Cut short only once the sockets alone pass what the files leave: over the limit whatever
                    # the processes hold, and never counted again for a lower count of them.
                    held = sockets_held(memory_cap - files)
                    # Over the limit with shared pages maybe counted more than once and the most each process's
                    # map entries may hold: count them exactly.
                    if total + live * MAP_ENTRIES_BOUND + files + held > memory_cap:
                        total = _exact(tree)
                    total += files + held
                except Exception:  # noqa: BLE001 - a failed sample must not end the run; the next one counts
                    continue
                if done.is_set():
                    return
                result.peak_memory_mib = max(result.peak_memory_mib, total / 2**20)
                if total > memory_cap:
                    stopped_at.append(total)
                    try:  # bubblewrap; the sandbox's PID namespace dies with it (--die-with-parent)
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    except OSError:
                        pass
                    if not sandboxed:  # no PID namespace: its processes one by one
                        for pid in tree[1:]:
                            try:
                                os.kill(pid, signal.SIGKILL)
                            except OSError:
                                pass
                    return
        finally:
            os.close(pidfd)

    watchdog = threading.Thread(target=watch, daemon=True)
    watchdog.start()
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout=limits.wall_timeout)
    except subprocess.TimeoutExpired:
        result.wall_timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done.set()
    watchdog.join(timeout=5)
    if census and not watchdog.is_alive():
        census[0].close()
    if namespace:
        _end_sandbox(namespace[0], owner)
    reader.join(timeout=30)
    err_reader.join(timeout=5)
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - start
    result.stderr = err.decode("utf-8", "replace")
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line too deep to parse costs what it holds, no more
            continue
        if not isinstance(record, dict):
            continue
        if "probe" in record:
            result.probes[str(record["probe"])] = record.get("result")
        elif "event" in record:
            result.events.append(record)
        elif "notebook" in record and isinstance(record["notebook"], dict):
            result.notebook = record["notebook"]
    if stopped_at:
        result.events.append({"event": "memory limit", "scope": "sandbox", "gib": gib_rounded_up(stopped_at[0])})
    return result


def gib_rounded_up(n_bytes: int) -> float:
    """Bytes in GiB to two decimals, rounded up: a total just over the limit must not read as the limit."""
    return math.ceil(n_bytes * 100 / 2**30) / 100


KEYCTL_JOIN_SESSION_KEYRING = 1
_SYSCALL = ctypes.CDLL(None, use_errno=True).syscall  # looked up here, not in the forked child


def _own_session_keyring() -> None:
    """Give the sandbox an empty session keyring of its own, in place of the one it would inherit
    from the grader: with the keyring calls refused by the filter this changes nothing, without
    it no two sandboxes (and not the grader) share one. Where keyrings are not available (a
    container's seccomp profile), there is nothing to share."""
    nr = SYSCALLS.get(platform.machine(), {}).get("keyctl")
    if nr is not None:
        _SYSCALL(nr, KEYCTL_JOIN_SESSION_KEYRING, None)


def _above_10(fd: int) -> int:
    """`fd` moved to a number above 10 (close-on-exec), clear of descriptor 3, which `_fd3` sets."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _fd3(fd: int, then):
    """Make `fd` the child's descriptor 3 (where the harness writes), then apply the limits."""
    def setup():
        if fd != 3:
            os.dup2(fd, 3)
            os.close(fd)
        _own_session_keyring()
        then()
    return setup
