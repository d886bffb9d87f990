"""View 9: the leak judge on the base model (never fine-tuned on the data set) for every view with a leak rate."""

from __future__ import annotations

from ..registry import AUDITS
from .core import View

MISSING = ("no --base-model given: the leak rates are not checked against a model that never saw the data set "
           "(the published check: base models leak near 0)")


@AUDITS.register("base_control", headline="(one row per leak view)", leak=False, view=9)
class BaseControl(View):
    """The base model's leak rate in every leak view: what a model that never saw the data gets by chance."""

    name = "base_control"
    meta = True  # reads the other views' results instead of running a model

    def collect(self, results: dict, has_base: bool) -> dict:
        if not has_base:
            return {"description": self.__doc__.splitlines()[0], "missing": MISSING}
        rows = {}
        for view, res in results.items():
            if not res.get("leak") or "base" not in res.get("models", {}):
                continue
            h = res["headline"]
            m = res["models"]["base"]["metrics"][h]
            audited = res["models"].get("audited", {}).get("metrics", {}).get(h, {}).get("value")
            rows[view] = {"metric": h, "ref": {"view": view, "model": "base", "metric": h},
                          "base": m["value"], "ci": m["ci"], "n": m["n"], "audited": audited,
                          "audited_minus_base": audited - m["value"] if audited is not None and m["value"] is not None
                          else None}
        return {"description": self.__doc__.splitlines()[0], "rows": rows}
