"""A kernel factory for one grading worker: TensorFlow is imported once, each sandbox's kernel is forked.

Importing TensorFlow takes seconds of CPU, the same in every notebook. This process does it once,
then for each sandbox forks a kernel that joins that sandbox: its namespaces (mounts, processes,
network, IPC, host name, user), the limits and filter of the processes bubblewrap starts there,
and the sandbox's environment. Nothing of the previous kernel reaches the next one: each is a
fresh fork of this process, which never runs notebook code.

It is started by grading/sandbox.py with exec and an environment of its own (never forked from
the grader, which holds students' keys), and imports nothing of the grader's package. The grader
hands it, for each sandbox, one end of a socket pair with the sandbox's policy (its user, resource
limits, seccomp filter); the harness inside the sandbox holds the other end and asks there for its
kernel, passing the descriptors of its namespaces and of its standard streams. The forked child
joins the namespaces and forks the kernel into the sandbox's process tree, then waits for it and
tells the harness how it ended.
"""
from __future__ import annotations

import array
import ctypes
import fcntl
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE = {"user": 0x10000000, "mnt": 0x00020000, "pid": 0x20000000, "net": 0x40000000, "ipc": 0x08000000,
         "uts": 0x04000000, "cgroup": 0x02000000}
NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")  # the order of the harness's descriptors
NS_GET_USERNS = 0xB701
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 1, 24, 38, 22, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER, PTRACE_DETACH = 4, 2, 17
LINUX_CAPABILITY_VERSION_3 = 0x20080522
KEYCTL_JOIN_SESSION_KEYRING = 1
MAX_MESSAGE = 1 << 20
CONTROL: socket.socket | None = None  # the grader's end of the conversation, closed in every child
BASE_PATH = sys.path[1:]  # the interpreter's own path, without this script's folder
LAST_CAP = int(open("/proc/sys/kernel/cap_last_cap").read())


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _receive(sock: socket.socket, max_fds: int) -> tuple[dict, list[int]]:
    """One JSON message and the descriptors sent with it."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(max_fds * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    received = list(fds)
    try:
        if not data:
            raise EOFError
        return json.loads(data), received
    except BaseException:
        for fd in received:
            os.close(fd)
        raise


def _join(fds: dict[str, int]) -> None:
    """Join the sandbox's namespaces, in the only order the kernel allows without privilege outside.

    Without root, bubblewrap's sandbox has two user namespaces: the one that owns its mounts (no
    process stays in it) and, inside it, the one its processes run in (--disable-userns makes it).
    The outer one gives the capabilities needed to join the others; the inner one is joined last.
    (Once in the sandbox's mounts, /proc is the sandbox's: everything about this process is read before.)"""
    own = os.stat("/proc/self/ns/user").st_ino
    inner = os.fstat(fds["user"]).st_ino
    outer_ino = own
    if inner != own:
        outer = fcntl.ioctl(fds["mnt"], NS_GET_USERNS)
        try:
            outer_ino = os.fstat(outer).st_ino
            if outer_ino != own:
                _check(LIBC.setns(outer, CLONE["user"]), "joining the user namespace of the sandbox's mounts")
        finally:
            os.close(outer)
    for name in ("mnt", "pid", "net", "ipc", "uts", "cgroup"):
        _check(LIBC.setns(fds[name], CLONE[name]), f"joining the sandbox's {name} namespace")
    if inner not in (own, outer_ino):
        _check(LIBC.setns(fds["user"], CLONE["user"]), "joining the sandbox's user namespace")


def _confine(policy: dict) -> None:
    """What bubblewrap and setpriv give the sandbox's processes, given to this one: a session of its
    own, the resource limits, a session keyring of its own, no capabilities (none to gain again), the
    sandbox's user (as root), and the seccomp filter."""
    os.setsid()
    for resource_id, soft, hard in policy["rlimits"]:
        resource.setrlimit(int(resource_id), (int(soft), int(hard)))
    if policy.get("keyctl") is not None:
        LIBC.syscall(int(policy["keyctl"]), KEYCTL_JOIN_SESSION_KEYRING, None)
    _drop_privileges(policy.get("uid"))
    program = bytes.fromhex(policy["seccomp"])
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "loading the seccomp filter")
    os.umask(0o022)


def _become_kernel(request: dict, streams: list[int], sock: socket.socket) -> None:
    """In the kernel, once confined: the sandbox's working folder, streams and environment, fresh
    random generators, then ipykernel with the harness's arguments."""
    os.chdir(request["cwd"])
    for fd, stream in zip((0, 1, 2), streams):
        os.dup2(stream, fd)
    sock.detach()
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:  # every descriptor it has, however high
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own, closed by now
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = [*[p for p in request["env"].get("PYTHONPATH", "").split(":") if p], *BASE_PATH]
    random.seed()
    import numpy
    numpy.random.seed()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ipykernel.kernelapp import IPKernelApp
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    IPKernelApp.launch_instance(argv=request["argv"])


def _kernel_args(argv) -> list[str]:
    """The arguments after `python -m ipykernel_launcher`: the only command this factory starts."""
    if (not isinstance(argv, list) or len(argv) < 3 or not all(isinstance(a, str) for a in argv)
            or argv[1:3] != ["-m", "ipykernel_launcher"]):
        raise ValueError("not an ipykernel command")
    return argv[3:]


def _serve_one(policy: dict, sock: socket.socket) -> None:
    """The sandbox's request for its kernel: fork the child that joins the sandbox and waits."""
    request, fds = _receive(sock, len(NAMESPACES) + 3)
    try:
        if (len(fds) != len(NAMESPACES) + 3 or not isinstance(request, dict)
                or not isinstance(request.get("env"), dict) or not isinstance(request.get("cwd"), str)):
            raise ValueError("a malformed request")
        streams = fds[-3:]
        namespaces = dict(zip(NAMESPACES, fds[:-3]))
        request["argv"] = _kernel_args(request.get("argv"))
        request["env"] = {str(k): str(v) for k, v in request["env"].items()}
        pid = os.fork()
        if pid == 0:
            try:
                # Nothing is imported from here on; no path is searched in the sandbox's mounts.
                sys.path[:] = BASE_PATH
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # this child waits for its kernel itself
                os.close(CONTROL.detach())
                _child(policy, request, namespaces, streams, sock)
            finally:
                os._exit(1)
    except (ValueError, TypeError) as e:
        sock.sendall(json.dumps({"error": str(e)}).encode())
    finally:
        for fd in fds:
            os.close(fd)


def _child(policy: dict, request: dict, namespaces: dict, streams: list[int], sock: socket.socket) -> None:
    """Join the sandbox, fork the kernel inside its process tree, tell the harness its pid, wait for it
    and tell how it ended. Never returns."""
    try:
        _join(namespaces)
        for fd in namespaces.values():
            os.close(fd)
        kernel = os.fork()
        if kernel == 0:
            _kernel(policy, request, streams, sock)
        for fd in streams:
            os.close(fd)
        try:
            _drop_privileges()  # it only waits and writes on its socket
        except OSError:
            pass  # it must stay the kernel's parent whatever happens (see _wait)
        _wait(kernel, sock)
    except BaseException as e:  # noqa: BLE001
        try:
            sock.sendall(json.dumps({"error": f"{type(e).__name__}: {e}"[:300]}).encode())
        except OSError:
            pass
    os._exit(1)


def _kernel(policy: dict, request: dict, streams: list[int], sock: socket.socket) -> None:
    """In the forked kernel: confine it, report its pid, and start ipykernel once the harness says go
    (a harness that gave up waiting and started its own kernel says no). Never returns."""
    try:
        _confine(policy)
        sock.sendall(json.dumps({"pid": os.getpid()}).encode())
        if sock.recv(16) != b"go":
            os._exit(1)
    except BaseException as e:  # noqa: BLE001 - any failure ends this kernel, never the factory
        try:
            sock.sendall(json.dumps({"error": f"{type(e).__name__}: {e}"[:300]}).encode())
        finally:
            os._exit(1)
    try:
        _become_kernel(request, streams, sock)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    os._exit(0)


def _drop_privileges(uid: int | None = None) -> None:
    """No capabilities, none to gain again (the bounding set, no_new_privs), and as root the user
    `uid` with no groups: the bounding set goes first, while the capability to drop it is held."""
    for cap in range(LAST_CAP + 1):
        _check(LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "dropping the capability bounding set")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = ctypes.create_string_buffer(24)  # two of {effective, permitted, inheritable}, all zero
    _check(LIBC.capset(ctypes.c_char_p(header), data), "dropping capabilities")
    _check(LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")


def _wait(kernel: int, sock: socket.socket) -> None:
    """Wait for the kernel and send how it ended; then for every other child until none is left.

    This child must outlive everything of the sandbox that has it as parent: the kernel, and any
    process the kernel made its sibling (clone with CLONE_PARENT). Orphaned, they would be adopted
    outside the sandbox's process tree, where the grader's memory watchdog would not find them.
    A child that stops (one that asked to be traced, PTRACE_TRACEME) is let go on."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if os.WIFSTOPPED(status):
            LIBC.ptrace(PTRACE_DETACH, pid, None, None)
            continue
        if pid == kernel:
            try:
                sock.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass


def _has_children() -> bool:
    """Whether a child of this process still runs (those that ended are reaped on the way)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _reap(*_) -> None:
    _has_children()


def _end_while_importing(*_) -> None:
    """The grader ended before the imports did: remove the private folder, then end."""
    shutil.rmtree(sys.argv[3], ignore_errors=True)
    os._exit(1)


def main() -> None:
    global CONTROL
    CONTROL = control = socket.socket(fileno=int(sys.argv[1]))
    parent = int(sys.argv[2])
    # While it imports, its private folder (HOME) exists: a grader that dies then (killed in its first
    # seconds) sends SIGTERM, whose handler runs between two steps of the imports and removes it.
    signal.signal(signal.SIGTERM, _end_while_importing)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        _end_while_importing()
    # What every notebook imports; nothing is run (no TensorFlow op: its thread pools start in the kernel).
    import numpy  # noqa: F401
    import tensorflow  # noqa: F401
    import keras  # noqa: F401
    from ipykernel.kernelapp import IPKernelApp  # noqa: F401
    # The folder held what the imports wrote (Keras' keras.json); nothing needs it now, and removed
    # here it is never left behind. From now on the grader's death ends this process at once, and the
    # kernels it forks keep no handler of its.
    shutil.rmtree(sys.argv[3], ignore_errors=True)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGCHLD, _reap)
    # Asked for no kernel that long, it ends rather than hold its memory (a Formgrader's server may
    # idle for days); the grader starts a new one for the next sandbox. Not while a child of its
    # runs: the grader's watchdog finds a sandbox's kernel below this process.
    control.settimeout(float(sys.argv[4]))
    while True:
        try:
            policy, fds = _receive(control, 1)
        except EOFError:
            os._exit(0)
        except TimeoutError:
            if not _has_children():
                os._exit(0)
            continue
        except (OSError, ValueError, RecursionError):
            continue
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        sock = socket.socket(fileno=fds[0])
        sock.settimeout(float(policy.get("timeout", 600)))
        try:
            _serve_one(policy, sock)
        except Exception:  # noqa: BLE001 - that sandbox ended before it asked, or asked badly:
            pass  # its harness starts its own kernel
        finally:
            sock.close()


if __name__ == "__main__":
    main()
