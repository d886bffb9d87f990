"""Small dict registries with metadata that lives where the thing is defined.

Every registry is listed by ``obliviate ls KIND``. A new method, metric, model or dataset appears there
by decorating its definition with ``@REGISTRY.register(name, **metadata)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ObliviateError


@dataclass
class Entry:
    name: str
    obj: Any
    meta: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **meta) -> Callable:
        def deco(obj):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if "description" not in meta and getattr(obj, "__doc__", None):
                meta["description"] = obj.__doc__.strip().splitlines()[0]
            self._entries[name] = Entry(name, obj, meta)
            return obj

        return deco

    def get(self, name: str) -> Entry:
        _load_builtins()
        if name not in self._entries:
            raise ObliviateError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        _load_builtins()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        _load_builtins()
        return name in self._entries


MODELS = Registry("model")
DATASETS = Registry("dataset")
METHODS = Registry("method")
METRICS = Registry("metric")
BENCHMARKS = Registry("benchmark")
PROTOCOLS = Registry("protocol")

REGISTRIES = {
    "models": MODELS,
    "datasets": DATASETS,
    "methods": METHODS,
    "metrics": METRICS,
    "benchmarks": BENCHMARKS,
    "protocols": PROTOCOLS,
}

_LOADED = False


def _load_builtins() -> None:
    """Import the modules whose definitions register themselves (once, lazily)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for mod in (
        "obliviate.models",
        "obliviate.data",
        "obliviate.metrics",
        "obliviate.methods",
        "obliviate.evaluate",  # the benchmarks (tofu, muse) register where their runners live
        "obliviate.protocols",  # the named evaluation protocols (open-unlearning, tofu, muse, obliviate)
        "obliviate.audit",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a package not written yet must not break `ls`
            if e.name != mod:
                raise


AUDITS = Registry("audit")  # the views of `obliviate audit` (obliviate.audit)
REGISTRIES["audits"] = AUDITS
