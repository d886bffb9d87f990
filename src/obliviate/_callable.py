"""``obliviate.unlearn(...)`` and the module ``obliviate.unlearn`` are one object: the orchestration modules
``finetune``, ``unlearn`` and ``evaluate`` are callable, and calling one runs its function of the Python API
(:mod:`obliviate.api`). A plain function under the same name would be replaced by the module as soon as
anything imported it (``import obliviate.unlearn`` sets the package attribute)."""

from __future__ import annotations

import sys
import types


class _APIModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    sys.modules[module_name].__class__ = _APIModule
