"""A run: one command's output folder and its ``run.json``, from the input checks to the final status.

:class:`Run` is the lifecycle every command that writes a run folder is written on (finetune, unlearn, eval;
audit, sweep and meta-evaluation next)::

    with Run("unlearn", out, config, seed=cfg.seed, inputs={"--model": model}, overwrite=..., resume=...) as run:
        model = load_model(...)          # checks that need the model come here: a refusal leaves --out as it was
        run.start()                      # now the folder is emptied (--overwrite) / created, run.json "running"
        ...
        run.write_json("summary.json", summary)
        run.update(final_loss=...)       # leaving the block marks it done; an error, Ctrl-C or SIGTERM records
                                         # failed / interrupted (with the signal) instead

``out=None`` is a run in memory: nothing is written, the record is still kept (``run.data``). Only the main
process of a multi-process job writes (``runtime.dist.is_main``); the other ranks run the same code.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ObliviateError
from .files import _json_default, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_json
from .process import process_identity, sigterm_raises, still_running

RUN_SCHEMA_VERSION = 1


def is_main() -> bool:
    """Whether this process writes: rank 0 of a multi-process job (``runtime.dist`` when present, else ``RANK``)."""
    try:
        from .dist import is_main as dist_is_main
    except ImportError:
        return int(os.environ.get("RANK", 0)) == 0
    return dist_is_main()


def world_size() -> int:
    try:
        from .dist import world_size as dist_world_size
    except ImportError:
        return int(os.environ.get("WORLD_SIZE", 1))
    return dist_world_size()


def _run_status(out: Path) -> str | None:
    """The ``status`` in ``out/run.json``, or None (no file, not JSON, not an object)."""
    try:
        return json.loads((out / "run.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _resumable(out: Path) -> bool:
    """A run that stopped with per-epoch checkpoints and is not done: what ``--resume`` can continue."""
    return (out / "checkpoints").is_dir() and _run_status(out) in ("failed", "interrupted", "running")


def _left_by_a_failed_start(out: Path) -> bool:
    """A folder holding only the run.json of a run that stopped before writing anything else (an error found
    after the model loaded, or a non-finite loss in its first epoch): the corrected command may reuse it."""
    names = {p.name for p in out.iterdir()}
    return names == {"run.json"} and _run_status(out) not in (None, "done")


def check_out_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                  inputs: dict[str, str | None] | None = None, resumable: bool = False) -> bool:
    """The output folder rules, checked without touching the disk; True when the folder must be emptied first
    (``--overwrite`` of an earlier run). An existing non-empty folder is refused unless ``--resume`` (continue
    in it) or ``--overwrite``: that empties it (so no old checkpoint, model or evaluation is mistaken for this
    run's), and only when it is an obliviate output folder (it has a run.json): anything else is left alone.
    A folder left by a run that failed before writing anything but its run.json is reused.
    ``inputs`` (flag -> path, e.g. ``{"--model": "runs/full"}``): an output folder that is, or holds, one of
    the run's inputs is refused (``--overwrite`` would delete it)."""
    out = Path(out)
    if resume and overwrite:
        raise ObliviateError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise ObliviateError(f"--out {out}: exists and is not a folder")
    for flag, path in (inputs or {}).items():
        if path and Path(path).exists():
            src, dst = Path(path).resolve(), out.resolve()
            if src == dst or dst in src.parents:
                raise ObliviateError(f"--out {out} is (or holds) the {flag} {path}; writing there would replace "
                                     "the run's own input: choose another --out")
    if out.exists() and any(out.iterdir()) and not resume and not _left_by_a_failed_start(out):
        if not overwrite:
            more = ", or --resume to continue the run in it" if resumable and _resumable(out) else ""
            raise ObliviateError(f"output folder {out} exists and is not empty; pass --overwrite to replace it{more}")
        if not (out / "run.json").is_file():
            raise ObliviateError(f"--overwrite: {out} has no run.json, so it is not an obliviate output folder; "
                                 "it is left alone (choose another --out, or empty it yourself)")
        return True
    return False


def prepare_out_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                    inputs: dict[str, str | None] | None = None, resumable: bool = False) -> Path:
    """The output folder, checked (:func:`check_out_dir`), emptied where ``--overwrite`` asks, and created."""
    out = Path(out)
    if check_out_dir(out, overwrite=overwrite, resume=resume, inputs=inputs, resumable=resumable):
        for p in out.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, a read-only or virtual file system, no permission
        raise ObliviateError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    return out


# Settings that may differ between a run and its --resume: the run length and its warm-up (which defaults to one
# epoch), the learning rate (lower it after a non-finite loss), progress bars and gradient checkpointing (same
# gradients, less memory). train() re-derives the learning-rate schedule from the new values.
RESUME_MAY_CHANGE = {"train.epochs": "--epochs", "train.warmup_ratio": "--warmup-ratio", "train.lr": "--lr",
                     "train.progress": "--quiet", "train.grad_checkpointing": "--grad-checkpointing"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume(out: str | os.PathLike, command: str, config: dict,
                 may_change: dict[str, str] = RESUME_MAY_CHANGE, legacy: dict | None = None) -> dict:
    """For ``--resume``: the run in ``out`` must be the same command with the same settings, except
    the keys of ``may_change`` (setting -> its flag). ``legacy``: flattened key -> the value a run.json
    written before that setting existed implicitly used (``config.legacy_values``), so that such a run folder
    still resumes. Returns ``{"previous": <old run.json>, "changed": {key: [old, new]}}``; raises an
    :class:`ObliviateError` naming every other setting that differs."""
    path = Path(out) / "run.json"
    if not path.exists():
        raise ObliviateError(f"--resume: {path} not found, so the settings of the interrupted run are unknown")
    old = read_json(path)
    if old.get("command") != command:
        raise ObliviateError(f"--resume: {out} holds an `obliviate {old.get('command')}` run, not `{command}`")
    if old.get("status") == "running":
        if still_running(old.get("process")):
            raise ObliviateError(f"--resume: the run in {out} is still going (process {old['process']['pid']} on this "
                                 "machine); stop it first, or let it finish")
        print(f"note: --resume: {path} still says running (its process was killed without a chance to record it); "
              "continuing from its last checkpoint", file=sys.stderr)
    before = _flatten(old.get("config") or {})
    before.update({k: v for k, v in (legacy or {}).items() if k not in before})
    now = _flatten(json.loads(json.dumps(config, default=_json_default)))  # compare as run.json stores it
    changed = {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}
    bad = {k: v for k, v in changed.items() if k not in may_change}
    if bad:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in bad.items())
        flags = ", ".join(may_change.values())
        raise ObliviateError(f"--resume: {out} was started with other settings ({lines}); a resumed run must use "
                             f"the same ones (only {flags} may change); use a new --out to start afresh")
    return {"previous": old, "changed": changed}


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if r.returncode != 0:
            return None
        commit = r.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("obliviate", "torch", "transformers", "accelerate", "peft", "numpy", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - provenance must never fail a run
            out[mod] = None
    try:
        from ..engine.memory import allocator

        out["allocator"] = allocator()  # glibc or tcmalloc: peak memory depends on it (engine/memory.py)
    except Exception:  # noqa: BLE001
        out["allocator"] = None
    return out




def new_record(command: str, config: dict, seed: int | None) -> dict:
    """The run.json a run starts with. ``seed`` None: a command that draws no random numbers (said so)."""
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "command": command,
        "argv": sys.argv,
        "config": config,
        "seed": seed,
        **({} if seed is not None else {"seed_note": "no seed: this command draws no random numbers "
                                                      "(greedy decoding, fixed item order)"}),
        "versions": versions(),
        "git_commit": git_commit(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timings": {},
        "status": "running",
        "process": process_identity(),
        "world_size": world_size(),
    }


def resumed_entry(data: dict, info: dict, checkpoint: str | None) -> dict:
    """run.json's note of a ``--resume``: from which checkpoint, what changed, and the earlier starts of the run."""
    prev = info["previous"]
    return {"resumes": list(prev.get("resumes") or []) + [{
                "at": data["started_at"], "from_checkpoint": checkpoint, "changed": info["changed"],
                "previous_status": prev.get("status"), "previous_started_at": prev.get("started_at"),
                "previous_git_commit": prev.get("git_commit")}],
            "first_started_at": prev.get("first_started_at") or prev.get("started_at")}


def _record_stop(rec, e: BaseException, resume_hint: bool) -> None:
    """What stopped a run, into its record (``rec``: a :class:`Run` or :class:`RunRecord`)."""
    if rec.data.get("status") != "running":
        return
    if isinstance(e, KeyboardInterrupt):
        rec.data.setdefault("signal", "SIGINT")  # Ctrl-C (a SIGTERM set its own)
        rec.save(status="interrupted")
        ck = rec.path.parent / "checkpoints" if rec.path is not None else None
        if resume_hint and ck is not None and ck.is_dir() and is_main():
            print(f"obliviate: the last per-epoch checkpoint is in {ck}; continue with the same command and "
                  "--resume", file=sys.stderr)
    else:  # our own errors are messages for the user; anything else keeps its type
        rec.data.setdefault("error", str(e) if isinstance(e, ObliviateError) else f"{type(e).__name__}: {e}")
        rec.save(status="failed")


class RunRecord:
    """The ``run.json`` of an output folder: config, versions, git commit, seeds, timings, results. The older
    interface (the folder prepared by the caller); new code uses :class:`Run`."""

    def __init__(self, out_dir, command: str, config: dict, seed: int | None = None):
        """``seed``: the run's seed; None for a command that draws no random numbers (said so in run.json)."""
        self.path = Path(out_dir) / "run.json"
        self.t0 = time.time()
        self.data = new_record(command, config, seed)

    def history_so_far(self, history: dict) -> None:
        """``train``'s ``on_history``: run.json's ``history`` is kept current as each epoch ends, so an
        interrupted or failed run still tells which epochs it finished (the run's end writes the final one)."""
        self.data["history"] = {**history, "epochs": list(history["epochs"])}  # train() appends to its own
        self.save()

    def resumed(self, info: dict, checkpoint: str) -> None:
        """Note a ``--resume``: from which checkpoint, what changed, and the earlier starts of the run."""
        self.data.update(resumed_entry(self.data, info, checkpoint))

    @contextlib.contextmanager
    def guard(self, resume_hint: bool = False):
        """Whatever stops the run inside the block (an error, Ctrl-C, a SIGTERM from ``kill``, ``timeout`` or a
        batch scheduler) leaves run.json saying so, not ``running``: status ``failed`` with the error, or
        ``interrupted`` (with ``signal`` when a signal stopped it)."""
        def on_term():
            self.data["signal"] = "SIGTERM"

        with sigterm_raises(on_term):
            try:
                yield self
            except BaseException as e:
                _record_stop(self, e, resume_hint)
                raise

    def timing(self, name: str, seconds: float) -> None:
        self.data["timings"][name] = round(seconds, 3)

    def update(self, **kw) -> None:
        self.data.update(kw)

    def save(self, status: str | None = None) -> None:
        if status:
            self.data["status"] = status
        self.data["timings"]["total_s"] = round(time.time() - self.t0, 3)
        if is_main():
            atomic_write_json(self.path, self.data)


class Run:
    """One command's run: input checks, the output folder rules, run.json and atomic result writes.

    ``command``: run.json's ``command`` (``"unlearn"``); ``out``: the output folder, or None to run in memory
    (nothing written); ``config``: the complete resolved configuration (what ``--config run.json`` reads back);
    ``seed``: the run's seed (None: draws no random numbers); ``inputs``: flag -> path of the run's inputs (an
    ``--out`` that is or holds one is refused); ``overwrite`` / ``resume`` / ``resumable``: the folder rules
    of :func:`check_out_dir`; ``checks``: callables run first on entering, before the folder is looked at;
    ``checkpoint``: with ``resume``, the checkpoint the run continues from (None: nothing to continue, the run
    starts from the beginning in the same folder; see :meth:`resume_point`); ``may_change``: with ``resume``, the
    settings (flattened config key -> its flag) a resumed run may change (default :data:`RESUME_MAY_CHANGE`);
    ``legacy``: the values settings added since older run folders were written stand for there
    (:func:`check_resume`).

    Entering checks everything that can be checked without the model and without writing. :meth:`start`
    (or the first write) prepares the folder and writes run.json; an error before it leaves ``--out`` as it was.
    Leaving the block marks the run ``done``; an exception marks it ``failed`` (with the error) or
    ``interrupted`` (Ctrl-C, or SIGTERM with ``signal``) once started.
    """

    def __init__(self, command: str, out: str | os.PathLike | None, config: dict, *, seed: int | None = None,
                 inputs: dict[str, str | None] | None = None, overwrite: bool = False, resume: bool = False,
                 resumable: bool = False, checks: Iterable[Callable[[], Any]] = (),
                 checkpoint: str | None = None, may_change: dict[str, str] | None = None,
                 legacy: dict | None = None):
        self.command, self.config, self.legacy = command, config, legacy
        self.may_change = RESUME_MAY_CHANGE if may_change is None else may_change
        self.dir = Path(out) if out is not None else None
        self.path = self.dir / "run.json" if self.dir is not None else None
        self.overwrite, self.resume, self.resumable = overwrite, resume, resumable
        self.inputs, self.checks, self.checkpoint = inputs or {}, tuple(checks), checkpoint
        self.writes = self.dir is not None and is_main()
        self.started = False
        self.t0 = time.time()
        self.data = new_record(command, config, seed)
        self._resume_info: dict | None = None
        self._term = None

    # -- entering: every check that needs neither the model nor a write ---------------------------------
    def __enter__(self) -> "Run":
        for check in self.checks:
            check()
        if self.writes:
            if self.resume and self.overwrite:
                raise ObliviateError("--resume continues the run in --out and --overwrite replaces it: give one "
                                     "of them")
            check_out_dir(self.dir, overwrite=self.overwrite, resume=self.resume, inputs=self.inputs,
                          resumable=self.resumable)
            if self.resume:  # before run.json is rewritten
                self._resume_info = check_resume(self.dir, self.command, self.config, self.may_change,
                                                 legacy=self.legacy)

        def on_term():
            self.data["signal"] = "SIGTERM"

        self._term = sigterm_raises(on_term)
        self._term.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is not None:
                if self.started:
                    _record_stop(self, exc, resume_hint=self.resumable)
            elif self.data.get("status") == "running":
                self.save(status="done")
        finally:
            term, self._term = self._term, None
            if term is not None:
                term.__exit__(None, None, None)
        return False

    # -- the folder and run.json --------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the folder (emptied under ``--overwrite``; kept under ``--resume``) and write run.json
        (status ``running``). Called once the checks that need the model have passed; idempotent."""
        if self.started:
            return
        if not self.writes:
            self.started = True
            return
        continuing = self.resume and self.checkpoint is not None
        if self.resume and not continuing and self.dir.exists():
            # --resume of a run stopped before its first checkpoint: its folder (same settings, checked on
            # entering) holds nothing to continue from, so it is started afresh
            self.note(f"--resume: {self.dir} holds no checkpoint (the run stopped before its first epoch ended); "
                      "starting from the beginning")
            for p in self.dir.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        prepare_out_dir(self.dir, overwrite=self.overwrite, resume=self.resume, inputs=self.inputs,
                        resumable=self.resumable)
        self.started = True  # from here on, how the run ends goes into run.json
        if self._resume_info is not None:
            self.data.update(resumed_entry(self.data, self._resume_info, self.checkpoint))
        self.save()

    def save(self, status: str | None = None) -> None:
        """Write run.json (once started; a run in memory or on another rank only keeps ``data``)."""
        if status:
            self.data["status"] = status
        self.data["timings"]["total_s"] = round(time.time() - self.t0, 3)
        if self.writes and self.started:
            atomic_write_json(self.path, self.data)

    def timing(self, name: str, seconds: float) -> None:
        self.data["timings"][name] = round(seconds, 3)

    def update(self, **kw) -> None:
        self.data.update(kw)

    def history_so_far(self, history: dict) -> None:
        """``train``'s ``on_history``: run.json's ``history`` is kept current as each epoch ends, so an
        interrupted or failed run still tells which epochs it finished (the run's end writes the final one)."""
        self.data["history"] = readable_history(history)
        self.save()

    def set_history(self, history: dict) -> None:
        """The run's final training history, epochs counted from 1 (:func:`readable_history`)."""
        self.data["history"] = readable_history(history)

    # -- results --------------------------------------------------------------------------------------------
    def file(self, rel: str | os.PathLike) -> Path | None:
        """The path of ``rel`` in the folder (None in memory)."""
        return self.dir / rel if self.dir is not None else None

    def write_text(self, rel: str | os.PathLike, text: str) -> None:
        if self.writes:
            self.start()
            atomic_write_text(self.dir / rel, text)

    def write_json(self, rel: str | os.PathLike, obj: Any) -> None:
        if self.writes:
            self.start()
            atomic_write_json(self.dir / rel, obj)

    def write_jsonl(self, rel: str | os.PathLike, rows: Iterable[dict]) -> None:
        if self.writes:
            self.start()
            atomic_write_jsonl(self.dir / rel, rows)

    def note(self, text: str) -> None:
        """A note for the person running it (stderr, main process only) that run.json keeps too."""
        self.data.setdefault("notes", []).append(text)
        if is_main():
            print(f"note: {text}", file=sys.stderr)


def readable_history(history: dict) -> dict:
    """A training history as run.json shows it: epochs counted from 1, as everywhere a person reads them (the
    per-epoch evaluations, messages; only the checkpoint folders ``checkpoints/epoch-K`` count from 0)."""
    return {**history, "epochs": [{**e, "epoch": e["epoch"] + 1} if isinstance(e.get("epoch"), int) else dict(e)
                                  for e in history.get("epochs", [])]}


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as run.json stores it (dataclasses as dicts, paths as strings)."""
    return json.loads(json.dumps(obj, default=_json_default))
