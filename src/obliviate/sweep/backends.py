"""Where a sweep's points run: local worker processes, or Ray tasks. Both claim points from the same index
and write the same run folders (runner.run_point), so a sweep may even be resumed on the other backend.

Local (``--workers N``): N=1 runs the points in this process; N>1 starts N worker subprocesses, each with
``cores // N`` torch threads (``OMP_NUM_THREADS`` too) so that together they never oversubscribe the cores.
Each worker asks the kernel to kill it when the sweep process dies (``PR_SET_PDEATHSIG``): a SIGKILLed sweep
leaves no orphan training on, and the next ``obliviate sweep`` requeues what they were running.

Ray (``--backend ray``): one task per pending point, ``num_cpus`` = its threads; ``RAY_ADDRESS`` (or
``ray.init``'s default) names an existing cluster, else a local Ray instance is started for the sweep. The
sweep folder must be on a file system every node sees (the index is one SQLite file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import ObliviateError
from .index import open_index
from .runner import threads_per_worker, work_loop


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _src_path() -> str:
    """The folder holding the ``obliviate`` package in use (so a worker imports the same code)."""
    return str(Path(__file__).resolve().parents[2])


def run_local(out: Path, workers: int, progress: bool = True) -> None:
    threads = threads_per_worker(workers)
    if workers == 1:
        work_loop(out, f"local:{os.getpid()}", threads=threads, progress=progress)
        return
    run_processes([[sys.executable, "-m", "obliviate.sweep.worker", str(out), "--threads", str(threads),
                    "--name", f"local-{i}"] for i in range(workers)], threads,
                  "sweep worker(s) exited with {codes}; the index says which points ran")


def run_processes(cmds: list[list[str]], threads: int, failure: str) -> None:
    """Start one child per command with ``threads`` torch threads and this obliviate on its path (each dies with
    its parent), wait for all, stop them all if waiting is interrupted; ``failure`` (``{codes}``: the nonzero
    exit codes) is the error when any fails. Shared by the sweep's and the meta-evaluation's local workers."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([_src_path(), *filter(None, [os.environ.get("PYTHONPATH")])]))
    procs = [subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent) for cmd in cmds]
    try:
        for p in procs:
            p.wait()
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        raise ObliviateError(f"{len(bad)} " + failure.format(codes=bad))


def _ray():
    try:
        import ray
    except ImportError:
        raise ObliviateError("--backend ray needs the ray package: pip install 'obliviate[ray]' (or 'ray>=2.40')") from None
    return ray


def run_ray(out: Path, workers: int, progress: bool = True) -> None:
    ray = _ray()
    out = Path(out).resolve()
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        env = {"PYTHONPATH": os.pathsep.join([_src_path(), *filter(None, [os.environ.get("PYTHONPATH")])])}
        kw = {} if address else {"num_cpus": workers * threads_per_worker(workers), "include_dashboard": False}
        ray.init(address=address or None, runtime_env={"env_vars": env}, log_to_driver=progress,
                 configure_logging=False, **kw)
        started = True
    threads = threads_per_worker(workers)
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(_ray_point)
        idx = open_index(out)
        try:
            pending = [p["id"] for p in idx.points() if p["status"] == "pending"]
        finally:
            idx.close()
        futures = [task.remote(str(out), pid, threads) for pid in pending]
        left = list(futures)
        while left:
            _, left = ray.wait(left, num_returns=1)
        ray.get(futures)
    finally:
        if started:
            ray.shutdown()


def _ray_point(out: str, pid: str, threads: int) -> int:
    return work_loop(Path(out), f"ray:{os.uname().nodename}:{os.getpid()}", threads=threads, only=pid)
