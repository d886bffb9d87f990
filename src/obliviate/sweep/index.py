"""The sweep's SQLite index (stdlib ``sqlite3``, WAL): points, their status, attempts and metrics.

One file, ``DIR/index.sqlite``, written by the coordinator and every worker (local subprocesses or Ray
tasks on the same file system). A point moves ``pending -> running -> done | failed``; a worker claims a
point in one ``BEGIN IMMEDIATE`` transaction, so no two workers take the same one. A point's metrics are
``INSERT OR REPLACE``d by (point, epoch, key) in the same transaction that marks it done, and ``done`` is
counted once (``completions``): a point harvested twice (a worker killed between writing its run and
updating the index) is not counted twice.

Epochs: 0 is the evaluation before unlearning, 1..N after each epoch; ``final`` marks the metrics of the
saved model (the last epoch, or the best one with ``select:``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import ObliviateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS points (
    id TEXT PRIMARY KEY, idx INTEGER UNIQUE, settings TEXT, run_dir TEXT,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0, worker TEXT, started_at REAL, finished_at REAL,
    final_epoch INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    point_id TEXT, epoch INTEGER, key TEXT, value REAL, PRIMARY KEY (point_id, epoch, key));
CREATE TABLE IF NOT EXISTS events (point_id TEXT, event TEXT, at REAL, detail TEXT);
"""
STATUSES = ("pending", "running", "done", "failed")


class Index:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)  # explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self):
        """One write transaction, taken before reading (BEGIN IMMEDIATE): claims and updates are atomic."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- points ---------------------------------------------------------------------------------------
    def add_points(self, points, run_dir_of) -> None:
        """Insert the grid's points once (a rerun finds them and keeps their status)."""
        with self.tx() as db:
            for p in points:
                db.execute("INSERT OR IGNORE INTO points (id, idx, settings, run_dir) VALUES (?, ?, ?, ?)",
                           (p.id, p.idx, json.dumps(p.settings, sort_keys=True), str(run_dir_of(p))))

    def event(self, db, pid: str, event: str, detail: str | None = None) -> None:
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (pid, event, time.time(), detail))

    def claim(self, worker: str, pid: str | None = None) -> str | None:
        """Take the first pending point (or the given one if pending): status running. None if none is left."""
        with self.tx() as db:
            if pid is None:
                row = db.execute("SELECT id FROM points WHERE status='pending' ORDER BY idx LIMIT 1").fetchone()
            else:
                row = db.execute("SELECT id FROM points WHERE status='pending' AND id=?", (pid,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE points SET status='running', worker=?, attempts=attempts+1, started_at=? WHERE id=?",
                       (worker, time.time(), row[0]))
            self.event(db, row[0], "claimed", worker)
            return row[0]

    def finish(self, pid: str, metrics: dict[int, dict], final_epoch: int | None, detail: str = "") -> bool:
        """Record a point's metrics and mark it done, in one transaction. False when it was done already
        (nothing is counted twice)."""
        with self.tx() as db:
            st = db.execute("SELECT status FROM points WHERE id=?", (pid,)).fetchone()
            if st is None:
                raise ObliviateError(f"index: unknown point {pid}")
            if st[0] == "done":
                return False
            db.execute("DELETE FROM metrics WHERE point_id=?", (pid,))
            for epoch, summary in metrics.items():
                for k, v in summary.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        db.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", (pid, epoch, k, float(v)))
            db.execute("UPDATE points SET status='done', completions=completions+1, finished_at=?, final_epoch=?, "
                       "error=NULL WHERE id=?", (time.time(), final_epoch, pid))
            self.event(db, pid, "done", detail)
            return True

    def fail(self, pid: str, error: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE points SET status='failed', error=?, finished_at=? WHERE id=? AND status!='done'",
                       (error, time.time(), pid))
            self.event(db, pid, "failed", error)

    def requeue(self, statuses=("running",), only=None) -> list[str]:
        """Put points left ``running`` by a killed sweep (or ``failed``, with --retry-failed) back to pending."""
        with self.tx() as db:
            q = f"SELECT id FROM points WHERE status IN ({','.join('?' * len(statuses))})"
            ids = [r[0] for r in db.execute(q, tuple(statuses)).fetchall()]
            if only is not None:
                ids = [i for i in ids if i in only]
            for i in ids:
                db.execute("UPDATE points SET status='pending', worker=NULL WHERE id=?", (i,))
                self.event(db, i, "requeued")
            return ids

    def points(self) -> list[dict]:
        cols = ("id", "idx", "settings", "run_dir", "status", "attempts", "completions", "worker", "started_at",
                "finished_at", "final_epoch", "error")
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM points ORDER BY idx").fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r))
            d["settings"] = json.loads(d["settings"])
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM points GROUP BY status").fetchall()
        return {s: 0 for s in STATUSES} | dict(rows)

    def metrics(self, pid: str | None = None) -> dict[str, dict[int, dict]]:
        """``{point_id: {epoch: {key: value}}}``."""
        q, args = "SELECT point_id, epoch, key, value FROM metrics", ()
        if pid is not None:
            q, args = q + " WHERE point_id=?", (pid,)
        out: dict = {}
        for p, e, k, v in self.db.execute(q, args).fetchall():
            out.setdefault(p, {}).setdefault(e, {})[k] = v
        return out

    def events(self, pid: str | None = None) -> list[tuple]:
        q, args = "SELECT point_id, event, at, detail FROM events", ()
        if pid is not None:
            q, args = q + " WHERE point_id=?", (pid,)
        return self.db.execute(q + " ORDER BY rowid", args).fetchall()


def open_index(sweep_dir: str | Path, must_exist: bool = False) -> Index:
    path = Path(sweep_dir) / "index.sqlite"
    if must_exist and not path.is_file():
        raise ObliviateError(f"{sweep_dir}: no index.sqlite; is it a sweep folder (obliviate sweep GRID --out DIR)?")
    return Index(path)
