"""Atomic writes and run records (provenance)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import ObliviateError
from .runtime import dist

RUN_SCHEMA_VERSION = 1


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask); temp files start at 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written file. In a multi-process
    run only the main process writes (runtime/dist.py); the others return at once."""
    if not dist.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default, allow_nan=True) + "\n")


def _nan_to_null(v):
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _nan_to_null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_to_null(x) for x in v]
    return v


def atomic_write_jsonl(path, rows: Iterable[dict]) -> None:
    """One JSON object per line; a NaN value is written as null (a missing value): NaN is not JSON, and
    ``--from-logs`` refuses it when the file is read back."""
    atomic_write_text(path, "".join(json.dumps(_nan_to_null(r), default=_json_default) + "\n" for r in rows))


def read_text_file(path, what: str = "") -> str:
    """The text of a user's input file, or a one-line error naming it: not found, a folder, not UTF-8
    (with the line and byte). A UTF-8 byte-order mark (spreadsheet exports) is dropped. ``what``: a prefix
    for the message (``"--idk-file "``)."""
    path = Path(path)
    if not path.exists():
        raise ObliviateError(f"{what}{path}: file not found")
    if path.is_dir():
        raise ObliviateError(f"{what}{path}: is a folder, not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        raise ObliviateError(f"{what}{path}: not UTF-8 text (line {line}, byte {start}: {e.reason}); "
                             "save the file as UTF-8") from None


def read_json(path) -> Any:
    path = Path(path)
    text = read_text_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


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


def out_arg(value: str) -> str:
    """argparse type of ``--out``: an empty path would silently mean the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give the output folder's path")
    return value


def prepare_out_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                    inputs: dict[str, str | None] | None = None, resumable: bool = False) -> Path:
    """See :func:`_prepare_out_dir`; in a multi-process run the main process alone checks and empties the
    folder, and every process gets its answer (or its refusal)."""
    return dist.on_main(_prepare_out_dir, out, overwrite=overwrite, resume=resume, inputs=inputs,
                        resumable=resumable)


def _prepare_out_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                     inputs: dict[str, str | None] | None = None, resumable: bool = False) -> Path:
    """The output folder, created. An existing non-empty folder is refused unless ``--resume`` (continue in
    it) or ``--overwrite``: that empties it first (so no old checkpoint, model or evaluation is mistaken for
    this run's), and only when it is an obliviate output folder (it has a run.json): anything else is left
    alone. A folder left by a run that failed before writing anything but its run.json is reused.
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
                 may_change: dict[str, str] = RESUME_MAY_CHANGE) -> dict:
    """For ``--resume``: the run in ``out`` must be the same command with the same settings, except
    the keys of ``may_change`` (setting -> its flag). Returns ``{"previous": <old run.json>, "changed":
    {key: [old, new]}}``; raises an :class:`ObliviateError` naming every other setting that differs."""
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
        from .engine.memory import allocator

        out["allocator"] = allocator()  # glibc or tcmalloc: peak memory depends on it (engine/memory.py)
    except Exception:  # noqa: BLE001
        out["allocator"] = None
    return out


def _start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22 of stat; the name in () may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def process_identity() -> dict:
    """Who writes this run.json: host, pid and (Linux) the process's start time, so that ``--resume`` can tell
    a live run from a killed one even when the pid has been reused."""
    return {"host": platform.node(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid())}


def still_running(proc: dict | None) -> bool:
    """Whether the process recorded by :func:`process_identity` is alive (on this host; False elsewhere)."""
    if not proc or proc.get("host") != platform.node() or not isinstance(proc.get("pid"), int):
        return False
    pid = proc["pid"]
    if pid == os.getpid() or proc.get("start_ticks") is None:
        return False
    return _start_ticks(pid) == proc["start_ticks"]


class Terminated(KeyboardInterrupt):
    """A SIGTERM inside :meth:`RunRecord.guard`: the run stops like on Ctrl-C (run.json ``interrupted``), and the
    command line exits with 143 (128 + SIGTERM), as if the signal had killed it."""


class RunRecord:
    """The ``run.json`` of an output folder: config, versions, git commit, seeds, timings, results."""

    def __init__(self, out_dir, command: str, config: dict, seed: int | None = None):
        """``seed``: the run's seed; None for a command that draws no random numbers (said so in run.json)."""
        # Every process has read the old run.json (--resume's checks) before the main one replaces it.
        dist.barrier()
        self.path = Path(out_dir) / "run.json"
        self.t0 = time.time()
        self.data = {
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
            "world_size": dist.world_size(),  # processes of the run (accelerate launch / torchrun)
        }

    def history_so_far(self, history: dict) -> None:
        """``train``'s ``on_history``: run.json's ``history`` is kept current as each epoch ends, so an
        interrupted or failed run still tells which epochs it finished (the run's end writes the final one)."""
        self.data["history"] = {**history, "epochs": list(history["epochs"])}  # train() appends to its own
        self.save()

    def resumed(self, info: dict, checkpoint: str) -> None:
        """Note a ``--resume``: from which checkpoint, what changed, and the earlier starts of the run."""
        prev = info["previous"]
        self.data["resumes"] = list(prev.get("resumes") or []) + [{
            "at": self.data["started_at"], "from_checkpoint": checkpoint, "changed": info["changed"],
            "previous_status": prev.get("status"), "previous_started_at": prev.get("started_at"),
            "previous_git_commit": prev.get("git_commit")}]
        self.data["first_started_at"] = prev.get("first_started_at") or prev.get("started_at")

    @contextlib.contextmanager
    def guard(self, resume_hint: bool = False):
        """Whatever stops the run inside the block (an error, Ctrl-C, a SIGTERM from ``kill``, ``timeout`` or a
        batch scheduler) leaves run.json saying so, not ``running``: status ``failed`` with the error, or
        ``interrupted`` (with ``signal`` when a signal stopped it)."""
        installed = False
        # Only where SIGTERM would kill the process anyway: an inherited SIG_IGN or a caller's own handler stays.
        if (threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM")
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            def on_term(signum, frame):
                self.data["signal"] = "SIGTERM"
                raise Terminated

            try:
                signal.signal(signal.SIGTERM, on_term)
                installed = True
            except (ValueError, OSError):
                pass
        try:
            yield self
        except BaseException as e:
            if self.data.get("status") == "running":
                if isinstance(e, KeyboardInterrupt):
                    self.data.setdefault("signal", "SIGINT")  # Ctrl-C (a SIGTERM set its own above)
                    self.save(status="interrupted")
                    if resume_hint and (self.path.parent / "checkpoints").is_dir():
                        print(f"obliviate: the last per-epoch checkpoint is in {self.path.parent / 'checkpoints'}; "
                              "continue with the same command and --resume", file=sys.stderr)
                else:  # our own errors are messages for the user; anything else keeps its type
                    self.data.setdefault("error", str(e) if isinstance(e, ObliviateError) else f"{type(e).__name__}: {e}")
                    self.save(status="failed")
            raise
        finally:
            if installed:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def timing(self, name: str, seconds: float) -> None:
        self.data["timings"][name] = round(seconds, 3)

    def update(self, **kw) -> None:
        self.data.update(kw)

    def save(self, status: str | None = None) -> None:
        """Write run.json (the main process; the others keep their record in memory)."""
        if status:
            self.data["status"] = status
        self.data["timings"]["total_s"] = round(time.time() - self.t0, 3)
        atomic_write_json(self.path, self.data)
