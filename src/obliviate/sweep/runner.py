"""Run a sweep: predeclare the grid, do the shared work once, run each point once, resumably.

Folder ``DIR``::

    grid.yaml, grid.json     the grid as given and as expanded, with its hash: written before any run
    sweep.json               the options of the last ``obliviate sweep`` (SweepConfig; ``--config`` reads it)
    index.sqlite             points, status, metrics (index.py)
    shared/retain-eval/      the retain model's TOFU evaluation (once per sweep; forget quality's reference)
    shared/initial-eval/     the evaluation before unlearning (epoch 0), shared by the points of one model
    shared/reference-cache/  the reference log-likelihoods of each (model, forget set, format), computed once
    runs/p000/ ...           one ``obliviate unlearn`` run folder per point

Resume (the same command again, after a crash or a SIGKILL at any moment): the coordinator holds an
exclusive lock on ``DIR/sweep.lock`` while it runs; a new one finds the points a dead one left ``running``
and puts them back to ``pending``. A point whose run folder says ``done`` (killed between saving and
indexing) is only indexed; one with a per-epoch checkpoint resumes from it (``run_unlearn(resume=True)``);
one without (killed before its first epoch ended) starts again in an emptied folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ObliviateError
from ..io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_json
from .grid import Grid, Point, load_grid, sha256_json
from .index import open_index

if TYPE_CHECKING:
    from ..config import SweepConfig


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True):
    """An exclusive ``flock`` on ``path`` (released by the kernel when the process dies, even by SIGKILL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ObliviateError(f"another sweep is running in {path.parent} (it holds {path.name}); "
                                 "wait for it, or stop it first") from None
        yield


def cpu_count() -> int:
    """The cores this sweep may use: ``OBLIVIATE_CORES`` if set (a share of a machine), else those the process
    may run on."""
    if os.environ.get("OBLIVIATE_CORES", "").isdigit() and int(os.environ["OBLIVIATE_CORES"]) > 0:
        return int(os.environ["OBLIVIATE_CORES"])
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads of each of ``workers`` processes so that together they use at most the cores."""
    cores = cores or cpu_count()
    return max(1, cores // max(1, workers))


def set_threads(n: int) -> None:
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)


def eval_target(grid: Grid) -> tuple[str, str]:
    from ..unlearn import _eval_target

    ev = grid.top["eval"]
    return _eval_target(grid.top["forget"], ev.get("eval_data"), ev.get("eval_split"))


def run_dir(out: Path, p: Point) -> Path:
    return out / "runs" / p.name


def load_recorded_grid(out: Path) -> Grid:
    """The grid as recorded in ``DIR/grid.json``."""
    path = Path(out) / "grid.json"
    if not path.is_file():
        raise ObliviateError(f"{out}: no grid.json; is it a sweep folder (obliviate sweep GRID --out DIR)?")
    rec = read_json(path)
    g = Grid(rec["top"], [Point(d["idx"], d["settings"], d["id"]) for d in rec["points"]], rec.get("varying", []),
             rec.get("source", ""))
    if g.hash != rec["grid_hash"]:
        raise ObliviateError(f"{path}: its points do not match its grid_hash (edited by hand?)")
    return g


def predeclare(grid_path: str | Path, out: Path) -> Grid:
    """Write grid.yaml and grid.json (with the hash) before anything runs; a rerun must bring the same grid."""
    grid = load_grid(grid_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "grid.json"
    if path.is_file():
        old = read_json(path)
        if old.get("grid_hash") != grid.hash:
            raise ObliviateError(f"{out} holds the sweep of another grid (hash {str(old.get('grid_hash'))[:12]}, this "
                                 f"one {grid.hash[:12]}): a predeclared grid does not change; use a new --out")
        return grid
    atomic_write_text(out / "grid.yaml", Path(grid_path).read_text(encoding="utf-8"))
    atomic_write_json(path, {**grid.record(), "declared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return grid


# ------------------------------------------------------------------------------------------- shared work
def shared_retain_eval(grid: Grid, out: Path, progress: bool = True) -> str | None:
    """The retain model's evaluation, done once per sweep (or the one given by ``retain_eval:``)."""
    top = grid.top
    if top.get("retain_eval"):
        return str(top["retain_eval"])
    if not top.get("retain_model"):
        return None
    dest = out / "shared" / "retain-eval"
    if (dest / "run.json").is_file() and read_json(dest / "run.json").get("status") == "done":
        return str(dest)
    from ..evaluate import run_tofu_eval

    ev = top["eval"]
    data, split = eval_target(grid)
    run0 = grid.points[0].settings["run"]
    gen = ev.get("eval_generation", True)
    if progress:
        print(f"[sweep] shared: evaluating the retain model {top['retain_model']} once", flush=True)
    if dest.exists():
        shutil.rmtree(dest)
    run_tofu_eval(top["retain_model"], dest, data=data, split=split, data_dir=top.get("data_dir"),
                  limit=ev.get("eval_limit"), utility_limit=ev.get("eval_limit"),
                  style=run0.get("style", "chat"), system_prompt=run0.get("system_prompt"),
                  generation=bool(gen), gradnorm=ev.get("eval_gradnorm", True), progress=progress)
    return str(dest)


_SETS: dict = {}


def _tofu_sets(data, split, data_dir, limit):
    """The evaluation sets, loaded once per worker process (every point of the worker reuses them)."""
    from ..evaluate import tofu_sets

    key = (data, split, data_dir, limit)
    if key not in _SETS:
        _SETS[key] = tofu_sets(data, split, data_dir, limit, limit)
    return _SETS[key]


class SweepEvaluator:
    """The per-epoch TOFU evaluation of a point (``run_unlearn``'s ``evaluator``). Its first call in a run that
    starts at epoch 0 evaluates the model before unlearning, which is the same for every point of the sweep
    (same model, same evaluation; LoRA adapters start at zero): it is computed once, stored in
    ``shared/initial-eval/<key>/`` and read back by the other points."""

    def __init__(self, shared_dir: Path, key: str, next_epoch: int, epochs: int, generation: bool | str = True,
                 gradnorm: bool = True):
        """``next_epoch``: the epoch of the first call (0 = before unlearning; a resumed run starts later);
        ``generation``: True, False, or ``"last"`` (greedy answers, hence ROUGE and model utility, only before
        unlearning and after the last epoch: most of an evaluation's time on CPU)."""
        if generation not in (True, False, "last"):
            raise ObliviateError(f"eval_generation: {generation!r}; valid: true, false, last")
        self.dir, self.key, self.next_epoch, self.epochs = shared_dir, key, next_epoch, epochs
        self.generation, self.gradnorm = generation, gradnorm
        self.initial_reused: bool | None = None

    def _evaluate(self, model, tok, epoch, *, data, split, data_dir, limit, retain_records, formatter, progress):
        from ..evaluate import evaluate_tofu

        gen = self.generation if self.generation != "last" else epoch in (0, self.epochs)
        return evaluate_tofu(model, tok, data=data, split=split, data_dir=data_dir, limit=limit,
                             utility_limit=limit, retain_records=retain_records, formatter=formatter,
                             progress=progress, generation=gen, gradnorm=self.gradnorm,
                             sets=_tofu_sets(data, split, data_dir, limit))

    def __call__(self, model, tok, **kw):
        epoch = self.next_epoch
        self.next_epoch += 1
        if epoch != 0:
            return self._evaluate(model, tok, epoch, **kw)
        d = self.dir / self.key
        with file_lock(self.dir / f"{self.key}.lock"):
            if (d / "summary.json").is_file() and (d / "items.jsonl").is_file():
                from ..interop import read_records

                self.initial_reused = True
                records, _, _ = read_records(str(d))
                return read_json(d / "summary.json"), records
            summary, records = self._evaluate(model, tok, 0, **kw)
            atomic_write_jsonl(d / "items.jsonl", records)
            atomic_write_json(d / "summary.json", summary)  # last: its presence means both are complete
            self.initial_reused = False
            return summary, records


def _model_key(model: str) -> str:
    p = Path(model)
    return sha256_json(str(p.resolve()) if p.exists() else model)[:16]


# ------------------------------------------------------------------------------------------- one point
def harvest(rdir: Path) -> tuple[dict[int, dict], int | None]:
    """A finished run folder -> ({epoch: summary}, the epoch of the saved model)."""
    rec = read_json(rdir / "run.json")
    metrics: dict[int, dict] = {}
    if (rdir / "eval" / "initial" / "summary.json").is_file():
        metrics[0] = read_json(rdir / "eval" / "initial" / "summary.json")
    epochs = rec["config"]["train"]["epochs"]
    for e in range(1, epochs + 1):
        f = rdir / "eval" / f"epoch-{e}" / "summary.json"
        if f.is_file():
            metrics[e] = read_json(f)
    sel = rec.get("selection") or {}
    final = sel.get("best_epoch") or epochs
    return metrics, final


def _done(rdir: Path) -> bool:
    f = rdir / "run.json"
    if not f.is_file():
        return False
    try:
        return read_json(f).get("status") == "done" and (rdir / "config.json").is_file()
    except ObliviateError:
        return False


def run_point(out: Path, grid: Grid, p: Point, threads: int | None = None, progress: bool = False) -> str:
    """Run (or resume, or only index) one point; returns what happened: indexed, resumed, started."""
    from ..robust import RobustConfig
    from ..train import latest_checkpoint
    from ..unlearn import default_train_config, run_unlearn

    if threads:
        set_threads(threads)
    rdir = run_dir(out, p)
    s, top, ev = p.settings, grid.top, grid.top["eval"]
    how = "indexed"
    if not _done(rdir):
        resume = latest_checkpoint(rdir) is not None and (rdir / "run.json").is_file()
        if not resume and rdir.exists():
            shutil.rmtree(rdir)  # killed before its first checkpoint: nothing to keep
        how = "resumed" if resume else "started"
        retain_eval = shared_retain_eval(grid, out, progress=False)
        data, split = eval_target(grid)
        run = s["run"]
        ikey = sha256_json({"model": _model_key(top["model"]), "data": data, "split": split,
                            "data_dir": top.get("data_dir"), "eval": ev, "retain_eval": retain_eval,
                            "style": run.get("style", "chat"), "system_prompt": run.get("system_prompt"),
                            "max_length": run.get("max_length", 512)})[:16]
        cfg = default_train_config(s["method"], **s["train"], progress=progress)
        start = int(latest_checkpoint(rdir).name.split("-")[1]) + 2 if resume else 0  # 1-based epoch after it
        evaluator = SweepEvaluator(out / "shared" / "initial-eval", ikey, next_epoch=start, epochs=cfg.epochs,
                                   generation=ev.get("eval_generation", True), gradnorm=ev.get("eval_gradnorm", True))
        retain = top.get("retain")
        from ..methods.base import get_method, make_config

        cls = get_method(s["method"])
        if retain and not cls.needs_retain(make_config(cls, s["options"])):
            retain = None  # e.g. grad_ascent in a grid over methods: the sweep's retain set is not its input
        run_unlearn(top["model"], s["method"], top["forget"], rdir, retain=retain, options=dict(s["options"]),
                    cfg=cfg, robust=RobustConfig(**s["robust"]), data_dir=top.get("data_dir"),
                    style=run.get("style", "chat"), system_prompt=run.get("system_prompt"),
                    max_length=run.get("max_length", 512), idk_file=run.get("idk_file"), eval_every_epoch=True,
                    retain_eval=retain_eval, select=run.get("select"), eval_data=data, eval_split=split,
                    eval_limit=ev.get("eval_limit"), evaluator=evaluator, reference=run.get("reference", "cached"),
                    reference_cache=out / "shared" / "reference-cache" / _model_key(top["model"]), resume=resume)
    metrics, final = harvest(rdir)
    import torch

    idx = open_index(out)
    try:
        idx.finish(p.id, metrics, final, f"{how}; {torch.get_num_threads()} torch threads")
    finally:
        idx.close()
    return how


def work_loop(out: Path, worker: str, threads: int | None = None, progress: bool = False,
              only: str | None = None) -> int:
    """Claim pending points from the index and run them until none is left (a worker's life). ``only``: one
    point id (a Ray task). Returns the number of points this worker ran."""
    grid = load_recorded_grid(out)
    n = 0
    while True:
        idx = open_index(out)
        try:
            pid = idx.claim(worker, only)
        finally:
            idx.close()
        if pid is None:
            return n
        p = grid.point(pid)
        t0 = time.time()
        print(f"[sweep] {p.name} ({p.label()}): running [{worker}]", flush=True)
        try:
            how = run_point(out, grid, p, threads, progress)
            print(f"[sweep] {p.name}: done ({how}, {time.time() - t0:.0f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - one failed point does not stop the sweep; the index says why
            msg = str(e) if isinstance(e, ObliviateError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, ObliviateError):
                traceback.print_exc()
            idx = open_index(out)
            try:
                idx.fail(p.id, msg)
            finally:
                idx.close()
            print(f"[sweep] {p.name}: failed: {msg}", file=sys.stderr, flush=True)
        n += 1
        if only is not None:
            return n


# ------------------------------------------------------------------------------------------- the sweep
def run_sweep(config: "SweepConfig | str | Path | None" = None, *args, out: str | Path | None = None,
              **settings) -> dict:
    """Run (or resume) the sweep of a grid file in ``out``: ``run_sweep(SweepConfig(grid=...), out)``, or the
    keyword convenience ``run_sweep(grid_path, out, workers=2, backend="ray", retry_failed=True, progress=False)``.
    Writes ``out/sweep.json`` (the resolved options, the grid file's absolute path and its hash: ``obliviate sweep
    --config out/sweep.json`` repeats them).
    Returns the index counts and the grid hash."""
    from ..config import SweepConfig, config_of_call

    config, out = config_of_call(SweepConfig, config, args, settings, ("out",), out, call="run_sweep", first="grid")
    config.validate()
    if out is None:
        raise ObliviateError("run_sweep: give the sweep folder (out)")
    grid_path, workers, backend = config.grid, config.workers, config.backend
    retry_failed, progress = config.retry_failed, config.progress
    out = Path(out)
    grid = predeclare(grid_path, out)  # before the first run, and before anything else is written
    with file_lock(out / "sweep.lock", blocking=False):
        # the grid's absolute path: --config sweep.json names the same file from any working directory
        recorded = {**config.to_dict(), "grid": os.path.abspath(grid_path)}
        atomic_write_json(out / "sweep.json", {"command": "sweep", "config": recorded, "grid_hash": grid.hash,
                                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        idx = open_index(out)
        try:
            idx.set_meta("grid_hash", grid.hash)
            idx.add_points(grid.points, lambda p: run_dir(out, p))
            back = idx.requeue(("running", "failed") if retry_failed else ("running",))
            counts = idx.counts()
        finally:
            idx.close()
        if progress:
            print(f"[sweep] {len(grid.points)} points (grid {grid.hash[:12]}), {counts['done']} done"
                  + (f", {len(back)} requeued" if back else "") + f"; backend {backend}, {workers} worker(s)",
                  flush=True)
        if counts["pending"]:
            shared_retain_eval(grid, out, progress=progress)  # once, before the workers start
            from .backends import run_local, run_ray

            (run_ray if backend == "ray" else run_local)(out, workers, progress)
        idx = open_index(out)
        try:
            counts = idx.counts()
        finally:
            idx.close()
    if progress:
        print(f"[sweep] finished: {counts['done']} done, {counts['failed']} failed; index {out / 'index.sqlite'}",
              flush=True)
    return {"counts": counts, "grid_hash": grid.hash, "out": str(out)}

