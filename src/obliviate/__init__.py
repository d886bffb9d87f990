"""obliviate: make a causal language model forget chosen data, measure it, audit it.

``import obliviate`` is light: the Python API (``load_model``, ``load_data``, ``finetune``, ``unlearn``,
``evaluate``; see :mod:`obliviate.api`) and the settings objects load on first use."""

__version__ = "0.1.0"

_API = {"load_model", "load_data", "finetune", "unlearn", "evaluate"}
_CONFIGS = {name: "obliviate.config" for name in ("UnlearnConfig", "FinetuneConfig", "EvalConfig", "RelearnConfig",
                                               "AuditConfig", "ViewConfig", "FormatConfig", "TrainConfig", "RobustConfig", "EpochEvalConfig")}

__all__ = ["__version__", *sorted(_API), *sorted(_CONFIGS)]


def __getattr__(name):
    import importlib

    if name in ("finetune", "unlearn", "evaluate"):  # callable modules: calling one runs api.<name>
        return importlib.import_module(f"obliviate.{name}")
    if name in _API:
        return getattr(importlib.import_module("obliviate.api"), name)
    if name in _CONFIGS:
        return getattr(importlib.import_module(_CONFIGS[name]), name)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API | set(_CONFIGS))
