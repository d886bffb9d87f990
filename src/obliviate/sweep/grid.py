"""A sweep's grid: one YAML file -> the ordered list of points, recorded (predeclared) with its hash.

Format::

    model: runs/full                       # the model to unlearn from (every point)
    forget: synthetic:forget10
    retain: synthetic:retain90
    retain_model: runs/retain90            # evaluated once per sweep (forget quality's reference)
    # retain_eval: runs/eval-retain90      #   ... or an evaluation that already exists
    fixed:                                 # settings shared by every point
      method: npo
      epochs: 2
      lora: true
      eval_limit: 20
    grid:                                  # the cartesian product of these lists (a list of such
      lr: [1.0e-5, 5.0e-5]                 #   mappings: their union, e.g. one per method)
      alpha: [1, 2]

A key is a training setting (``TrainConfig``: epochs, lr, batch_size, lora, lora_r, ...), a robustness
setting (``RobustConfig``: sam_rho, smooth_n, grad_penalty, weight_avg, ...), a run setting (style,
system_prompt, max_length, idk_file, select, reference), ``method``, an evaluation setting (eval_limit,
eval_data, eval_split, eval_generation (true, false, or last: greedy answers, hence ROUGE and model utility,
only before unlearning and after the last epoch), eval_gradnorm: fixed only, since every point is compared
on the same evaluation) or else one of the method's options (beta=, alpha=, retain_loss=, ...), checked against
the method before anything runs.

The hash is the sha256 of the canonical JSON (sorted keys, no spaces) of the top-level settings and the
expanded points in order: what selection, the report and the card quote as "the predeclared grid".
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ObliviateError
from ..io import read_text_file

TOP_KEYS = ("name", "model", "forget", "retain", "data_dir", "retain_model", "retain_eval", "fixed", "grid")
RUN_KEYS = ("style", "system_prompt", "max_length", "idk_file", "select", "reference")
EVAL_KEYS = ("eval_limit", "eval_data", "eval_split", "eval_generation", "eval_gradnorm")
# TrainConfig fields a grid may not set: the sweep owns checkpoints and progress output
NOT_GRID = ("checkpoint_every_epoch", "progress", "extra")


def _fields(cls) -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def train_fields() -> dict[str, type]:
    from ..train import TrainConfig

    return {k: v for k, v in _fields(TrainConfig).items() if k not in NOT_GRID}


def robust_fields() -> dict[str, type]:
    from ..robust import RobustConfig

    return _fields(RobustConfig)


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_json(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def _number(where: str, key: str, value, typ):
    """YAML 1.1 reads ``1e-5`` (no dot) as a string: numbers given so are read as numbers here."""
    base = typ
    if getattr(typ, "__args__", None):  # float | None
        args = [a for a in typ.__args__ if a is not type(None)]
        base = args[0] if args else typ
        if value is None:
            return None
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ObliviateError(f"{where}: {key}={value!r} must be true or false")
    if base in (int, float):
        if isinstance(value, bool):
            raise ObliviateError(f"{where}: {key}={value!r} must be a number")
        try:
            v = float(value) if base is float else value
            if base is int:
                if isinstance(value, str) or float(value) != int(value):
                    raise ValueError
                v = int(value)
            return v
        except (TypeError, ValueError):
            raise ObliviateError(f"{where}: {key}={value!r} must be {'an integer' if base is int else 'a number'}") from None
    return value


@dataclass
class Point:
    """One run of the sweep: its index in the grid, its settings, its id (hash of the settings)."""

    idx: int
    settings: dict  # method, options, train, robust, run: only what the grid or `fixed` gave
    id: str = ""

    def __post_init__(self):
        self.id = self.id or sha256_json(self.settings)[:12]

    @property
    def name(self) -> str:
        return f"p{self.idx:03d}"

    def label(self) -> str:
        """Short ``key=value`` text of what varies, for tables and plots."""
        s = self.settings
        parts = [s["method"]] + [f"{k}={v}" for k, v in {**s["train"], **s["options"], **s["robust"]}.items()]
        return " ".join(parts)


@dataclass
class Grid:
    top: dict  # model, forget, retain, data_dir, retain_model, retain_eval, eval settings, name
    points: list[Point]
    varying: list[str] = field(default_factory=list)  # the keys that take more than one value
    source: str = ""

    @property
    def hash(self) -> str:
        return sha256_json(self.record_body())

    def record_body(self) -> dict:
        return {"top": self.top, "points": [{"idx": p.idx, "id": p.id, "settings": p.settings} for p in self.points]}

    def record(self) -> dict:
        return {**self.record_body(), "varying": self.varying, "grid_hash": self.hash, "source": self.source,
                "n_points": len(self.points)}

    def point(self, pid: str) -> Point:
        for p in self.points:
            if p.id == pid:
                return p
        raise ObliviateError(f"no point {pid} in the grid")


def _split_settings(where: str, d: dict) -> dict:
    """A flat ``{key: value}`` -> ``{"method", "options", "train", "robust", "run", "eval"}``."""
    tf, rf = train_fields(), robust_fields()
    out = {"method": None, "options": {}, "train": {}, "robust": {}, "run": {}, "eval": {}}
    for k, v in d.items():
        k2 = str(k).replace("-", "_")
        if k2 == "method":
            out["method"] = v
        elif k2 == "options":
            if not isinstance(v, dict):
                raise ObliviateError(f"{where}: options must be a mapping (beta: 0.1)")
            out["options"].update({str(a): b for a, b in v.items()})
        elif k2 in tf:
            out["train"][k2] = _number(where, k2, v, tf[k2])
        elif k2 in rf:
            out["robust"][k2] = _number(where, k2, v, rf[k2])
        elif k2 in RUN_KEYS:
            out["run"][k2] = v
        elif k2 in EVAL_KEYS:
            out["eval"][k2] = v
        elif k2 in NOT_GRID:
            raise ObliviateError(f"{where}: {k2} is set by the sweep itself, not by the grid")
        else:
            out["options"][k2] = v
    return out


def _check_point(where: str, s: dict) -> None:
    from ..methods.base import get_method, make_config

    if not s["method"]:
        raise ObliviateError(f"{where}: no method (give method: npo under fixed: or grid:)")
    cls = get_method(str(s["method"]))
    try:
        make_config(cls, dict(s["options"]))
    except ObliviateError as e:
        raise ObliviateError(f"{where}: {e}") from None
    from ..robust import RobustConfig
    from ..train import TrainConfig

    try:
        TrainConfig(**{"epochs": 1, **s["train"]}).validate()
        RobustConfig(**s["robust"]).validate()
    except (ObliviateError, TypeError) as e:
        raise ObliviateError(f"{where}: {e}") from None


def parse_grid(doc, source: str = "") -> Grid:
    """The parsed YAML mapping -> :class:`Grid` (every error names the grid file and the key)."""
    where = source or "grid"
    if not isinstance(doc, dict):
        raise ObliviateError(f"{where}: a grid file is a YAML mapping (model:, forget:, fixed:, grid:)")
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        raise ObliviateError(f"{where}: unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_KEYS)}")
    for k in ("model", "forget"):
        if not doc.get(k):
            raise ObliviateError(f"{where}: {k}: is required")
    if doc.get("retain_model") and doc.get("retain_eval"):
        raise ObliviateError(f"{where}: give retain_model (evaluated once here) or retain_eval (done already), not both")
    fixed = doc.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ObliviateError(f"{where}: fixed: must be a mapping")
    blocks = doc.get("grid") or {}
    blocks = [blocks] if isinstance(blocks, dict) else blocks
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ObliviateError(f"{where}: grid: must be a mapping of lists, or a list of such mappings")
    overlap = [k for b in blocks for k in b if k in fixed]
    if overlap:
        raise ObliviateError(f"{where}: {overlap[0]} is both in fixed: and in grid:; keep one")
    combos: list[dict] = []
    values_seen: dict[str, set] = {}
    for bi, block in enumerate(blocks or [{}]):
        keys = list(block)
        lists = []
        for k in keys:
            v = block[k]
            v = v if isinstance(v, list) else [v]
            if not v:
                raise ObliviateError(f"{where}: grid: {k} has no values")
            if k in EVAL_KEYS:
                raise ObliviateError(f"{where}: grid: {k} must be the same for every point (put it under fixed:): "
                                     "points are compared on one evaluation")
            lists.append(v)
        for vals in itertools.product(*lists):
            combo = {**fixed, **dict(zip(keys, vals))}
            combos.append(combo)
            for k, v in zip(keys, vals):
                values_seen.setdefault(k, set()).add(canonical_json(v))
    points, seen = [], {}
    top = {k: doc.get(k) for k in ("name", "model", "forget", "retain", "data_dir", "retain_model", "retain_eval")}
    eval_settings = None
    for i, combo in enumerate(combos):
        s = _split_settings(where, combo)
        ev = s.pop("eval")
        eval_settings = ev if eval_settings is None else eval_settings
        _check_point(f"{where}: point {i}", s)
        p = Point(i, s)
        if p.id in seen:
            raise ObliviateError(f"{where}: points {seen[p.id]} and {i} have the same settings ({p.label()}); "
                                 "a point is run once")
        seen[p.id] = i
        points.append(p)
    if not points:
        raise ObliviateError(f"{where}: the grid has no points")
    top["eval"] = eval_settings or {}
    gen = top["eval"].get("eval_generation", True)
    if gen not in (True, False, "last"):
        raise ObliviateError(f"{where}: eval_generation: {gen!r}; valid: true, false, last")
    lim = top["eval"].get("eval_limit")
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
        raise ObliviateError(f"{where}: eval_limit: {lim!r} must be an integer >= 1")
    return Grid(top, points, sorted(k for k, v in values_seen.items() if len(v) > 1), source=source)


def load_grid(path: str | Path) -> Grid:
    import yaml

    text = read_text_file(path, "grid ")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ObliviateError(f"grid {path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    return parse_grid(doc, source=str(path))
