"""This process: who it is (so that ``--resume`` can tell a live run from a killed one) and SIGTERM as an
exception (a batch scheduler's stop becomes an ``interrupted`` run, not a vanished one)."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import threading


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


@contextlib.contextmanager
def sigterm_raises(on_term=None):
    """Within the block a SIGTERM raises :class:`Terminated` (after ``on_term()``), where SIGTERM would kill the
    process anyway: an inherited SIG_IGN or a caller's own handler stays, and so does any thread but the main one."""
    installed = False
    if (threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM")
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        def handler(signum, frame):
            if on_term is not None:
                on_term()
            raise Terminated

        try:
            signal.signal(signal.SIGTERM, handler)
            installed = True
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
