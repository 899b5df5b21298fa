"""`python -m deepngrams worker-check`: whether a machine can grade, and whether its sandboxes share
the CPU as equals (Linux groups each sandbox's session only in the root CPU cgroup)."""
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepngrams.config import ROOT
from deepngrams.grading import sandbox

V1_MOUNTS = ("30 25 0:26 {root} /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,{controllers}\n"
             "31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n")


def fake_proc(tmp_path: Path, cgroup: str, mountinfo: str, autogroup: str | None = "1") -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    if autogroup is not None:
        (proc / "sys" / "kernel").mkdir(parents=True)
        (proc / "sys" / "kernel" / "sched_autogroup_enabled").write_text(autogroup + "\n")
    return proc


def v2(tmp_path: Path, own: str, with_cpu: list[str], root: str = "/") -> Path:
    """A cgroup v2 tree under tmp_path/cg (its mount), the process in `own`, cpu.weight in `with_cpu`."""
    top = tmp_path / "cg"
    (top / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for folder in with_cpu:
        (top / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (top / folder.lstrip("/") / "cpu.weight").write_text("100\n")
    return fake_proc(tmp_path, f"0::{own}\n", f"40 25 0:30 {root} {top} rw,nosuid shared:5 - cgroup2 cgroup2 rw\n")


@pytest.mark.parametrize("cgroup, root, controllers, expected", [
    ("1:cpu:/\n", "/", "cpu", None),
    ("2:cpu,cpuacct:/\n4:memory:/job\n", "/", "cpu,cpuacct", None),  # in a memory cgroup only: still fair
    ("1:cpu:/kubepods/pod7\n", "/", "cpu", "/kubepods/pod7"),
    ("2:cpu,cpuacct:/system.slice/grader.service\n", "/", "cpu,cpuacct", "/system.slice/grader.service"),
    ("1:cpu:/\n", "/docker/4f2a", "cpu", "/docker/4f2a"),  # a container's own view of its cgroup
])
def test_cgroup_v1_names_the_cpu_cgroup_unless_it_is_the_root(tmp_path, cgroup, root, controllers, expected):
    proc = fake_proc(tmp_path, cgroup, V1_MOUNTS.format(root=root, controllers=controllers))
    assert sandbox._cpu_cgroup(proc) == expected
    problem = sandbox.cpu_sharing_problem(proc)
    assert (problem is None) == (expected is None)
    if problem:
        assert "--workers 1" in problem and ("CPU cgroup " + expected in problem or "container" in problem)


@pytest.mark.parametrize("own, with_cpu, expected", [
    ("/", [], None),  # the root cgroup has no cpu.weight
    ("/user.slice/session-3.scope", [], None),  # no cgroup on the way enabled the cpu controller
    ("/system.slice/grader.service", ["/system.slice/grader.service"], "/system.slice/grader.service"),
    ("/system.slice/grader.service", ["/system.slice"], "/system.slice"),  # scheduled in the nearest with cpu
    ("/", ["/"], "/"),  # a cgroup namespace: the mount's top is the container's cgroup
])
def test_cgroup_v2_finds_the_nearest_folder_with_the_cpu_controller(tmp_path, own, with_cpu, expected):
    proc = v2(tmp_path, own, with_cpu)
    assert sandbox._cpu_cgroup(proc) == expected
    problem = sandbox.cpu_sharing_problem(proc)
    assert (problem is None) == (expected is None)
    if expected == "/":
        assert "its container's CPU cgroup" in problem


def test_a_hybrid_layout_reads_the_v1_cpu_controller(tmp_path):
    """Debian's hybrid layout: cgroup v1 controllers plus an empty unified hierarchy."""
    unified = tmp_path / "unified"
    unified.mkdir()
    mounts = (f"29 25 0:25 / {unified} rw shared:4 - cgroup2 cgroup2 rw\n"
              + V1_MOUNTS.format(root="/", controllers="cpu"))
    assert sandbox.cpu_sharing_problem(fake_proc(tmp_path, "1:cpu:/\n0::/\n", mounts)) is None
    proc = fake_proc(tmp_path / "b", "1:cpu:/batch\n0::/\n", mounts)
    assert sandbox._cpu_cgroup(proc) == "/batch"


@pytest.mark.parametrize("autogroup", ["0", None])
def test_without_autogroups_even_the_root_cgroup_is_a_problem(tmp_path, autogroup):
    proc = fake_proc(tmp_path, "1:cpu:/\n", V1_MOUNTS.format(root="/", controllers="cpu"), autogroup=autogroup)
    problem = sandbox.cpu_sharing_problem(proc)
    assert problem and "autogroup is off or absent" in problem and "sched_autogroup_enabled=1" in problem


def test_unreadable_cgroup_files_are_no_problem_of_their_own(tmp_path):
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "sched_autogroup_enabled").write_text("1\n")
    assert sandbox.cpu_sharing_problem(proc) is None


def worker_check(env: dict | None = None, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepngrams", "worker-check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env or dict(os.environ), preexec_fn=preexec_fn)


def test_a_machine_without_bubblewrap_cannot_grade_and_is_told_how_to_install_it(tmp_path):
    bin_dir = tmp_path / "bin"  # this interpreter's folder without bwrap
    bin_dir.mkdir()
    done = worker_check(env=dict(os.environ, PATH=str(bin_dir)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot grade" in done.stdout and "apt-get install bubblewrap" in done.stdout


CPU_V1 = Path("/sys/fs/cgroup/cpu")
IN_ROOT_CPU_CGROUP_AS_ROOT = pytest.mark.skipif(
    sandbox.available() is not None or os.geteuid() != 0 or not os.access(CPU_V1, os.W_OK)
    or sandbox.cpu_sharing_problem() is not None,
    reason="needs root, a writable cgroup v1 cpu hierarchy and this process in its root cgroup")


@contextlib.contextmanager
def cpu_cgroup():
    """A new cgroup v1 cpu group, and a preexec_fn that moves a child into it."""
    group = CPU_V1 / f"deepngrams-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group, lambda: (group / "tasks").write_text(str(os.getpid()))
    finally:
        for _ in range(100):  # its processes have ended; the group empties as they are reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))
def test_this_machine_can_grade_and_says_whether_its_sandboxes_share_the_cpu():
    done = worker_check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "this machine" in done.stdout and ": can grade, sandbox " in done.stdout
    assert ("note: sandboxes side by side" in done.stdout) == (sandbox.cpu_sharing_problem() is not None)


@IN_ROOT_CPU_CGROUP_AS_ROOT
def test_a_worker_moved_into_a_cpu_cgroup_is_warned_but_can_still_grade():
    with cpu_cgroup() as (group, move_into_it):
        done = worker_check(preexec_fn=move_into_it)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": can grade, sandbox " in done.stdout
    assert f"note: sandboxes side by side may not share the CPU as equals: this process is in the CPU cgroup /{group.name}" \
        in done.stdout
    assert "--workers 1" in done.stdout


@pytest.mark.slow
@IN_ROOT_CPU_CGROUP_AS_ROOT
def test_grading_side_by_side_in_a_cpu_cgroup_says_so_before_it_starts(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(ROOT / "grader" / "source", course / "source")
    shutil.copy(ROOT / "grader" / "nbgrader_config.py", course)
    with cpu_cgroup() as (_, move_into_it):
        runs = {workers: subprocess.run(
            [sys.executable, "-m", "deepngrams", "grade", "--course", str(course), "--workers", str(workers)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=move_into_it) for workers in (2, 1)}
    for workers, done in runs.items():
        assert done.returncode == 0, done.stdout + done.stderr
        assert ("note: sandboxes side by side may not share the CPU" in done.stderr) == (workers > 1), done.stderr
