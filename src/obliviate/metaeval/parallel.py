"""Parallel pools: several models of a meta-evaluation built at once, by local worker processes or Ray tasks.

The unit of work is a model: its fine-tune, evaluation and attacks run in order in one process (each needs the
previous one's output), and no model depends on another (the retain control's records are read only when the
table is made). A worker claims a model with an exclusive ``flock`` on ``locks/NAME.lock``
(:meth:`PoolRunner.run`), so the backends need no index of their own, a killed worker's model is claimable
again at once, and a parallel run may be resumed serially, or on the other backend, and vice versa.

Local (``--workers N``, N > 1): N worker subprocesses (``python -m obliviate.metaeval.parallel OUT``), each with
``cores // N`` torch threads, each taking the next unclaimed model until none is left; they die with the
coordinator (``PR_SET_PDEATHSIG``). Ray (``--backend ray``): one task per model with work left, ``num_cpus`` =
its threads; ``RAY_ADDRESS`` names an existing cluster, else a local Ray instance is started (the sweep's
conventions: :mod:`obliviate.sweep.backends`). A worker reads the pools from ``OUT/run.json``, which the
coordinator wrote before starting it, so every worker builds exactly the recorded pools.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ObliviateError

BACKENDS = ("local", "ray")


def recorded_pools(out: Path) -> dict:
    """The pools config the meta-evaluation in ``out`` was started with (its run.json)."""
    from ..io import read_json

    path = Path(out) / "run.json"
    rec = read_json(path) if path.is_file() else {}
    if rec.get("command") != "meta-eval" or not isinstance((rec.get("config") or {}).get("pools"), dict):
        raise ObliviateError(f"{path}: not the run.json of an `obliviate meta-eval` run")
    return rec["config"]["pools"]


def work(out: Path, threads: int | None = None, only: str | None = None, progress: bool = False) -> dict:
    """One worker's life: build every model not yet done and not claimed by another worker (or only ``only``)."""
    from ..sweep.runner import set_threads
    from .pools import PoolRunner

    if threads:
        set_threads(threads)
    tag = f"[{os.uname().nodename}:{os.getpid()}]"
    runner = PoolRunner(recorded_pools(out), out, progress=progress,
                        log=lambda s: print(f"{s} {tag}", file=sys.stderr, flush=True))
    return runner.run(only=only)


def run_local(out: Path, workers: int, progress: bool = False) -> None:
    from ..sweep.backends import run_processes
    from ..sweep.runner import threads_per_worker

    threads = threads_per_worker(workers)
    cmd = [sys.executable, "-m", "obliviate.metaeval.parallel", str(out), "--threads", str(threads)]
    run_processes([cmd + (["--progress"] if progress else [])] * workers, threads,
                  "meta-eval worker(s) exited with {codes}; rerun with --resume to finish")


def run_ray(out: Path, workers: int, progress: bool = False) -> None:
    from ..sweep.backends import _ray, _src_path
    from ..sweep.runner import threads_per_worker
    from .pools import PoolRunner

    ray = _ray()
    out = Path(out).resolve()
    names = list(dict.fromkeys(n for n, _ in PoolRunner(recorded_pools(out), out).pending()))
    if not names:
        return
    threads = threads_per_worker(workers)
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        env = {"PYTHONPATH": os.pathsep.join([_src_path(), *filter(None, [os.environ.get("PYTHONPATH")])])}
        kw = {} if address else {"num_cpus": workers * threads, "include_dashboard": False}
        ray.init(address=address or None, runtime_env={"env_vars": env}, log_to_driver=progress,
                 configure_logging=False, **kw)
        started = True
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(_ray_model)
        try:
            ray.get([task.remote(str(out), name, threads) for name in names])
        except Exception as e:  # noqa: BLE001 - a RayTaskError wraps the worker's own error
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ObliviateError(f"a meta-eval Ray task failed ({first}); rerun with --resume to finish") from None
    finally:
        if started:
            ray.shutdown()


def _ray_model(out: str, name: str, threads: int) -> dict:
    return work(Path(out), threads, only=name)


def run_parallel(out: Path, workers: int, backend: str = "local", progress: bool = False) -> None:
    """Build the pools recorded in ``out/run.json`` with ``workers`` workers on ``backend``."""
    if backend not in BACKENDS:
        raise ObliviateError(f"--backend {backend!r}; valid: {', '.join(BACKENDS)}")
    (run_ray if backend == "ray" else run_local)(Path(out), workers, progress)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="obliviate.metaeval.parallel", description="one meta-eval worker")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        work(Path(args.out), args.threads, progress=args.progress)
    except ObliviateError as e:
        print(f"obliviate meta-eval worker: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
