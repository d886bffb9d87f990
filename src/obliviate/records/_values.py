"""Reading logged values: numbers, fractions, one-line errors naming where they were."""

from __future__ import annotations

from ..errors import ObliviateError


_SET_ORDER = {"forget": 0, "retain": 1, "real_authors": 2, "world_facts": 3, "holdout": 4,
              # MUSE's eval (evaluate.run_muse_eval): its items.jsonl is read back for --retain-eval (PrivLeak)
              "verbmem": 5, "knowmem_forget": 6, "knowmem_retain": 7, "privleak_forget": 8, "privleak_holdout": 9}


def _short(x) -> str:
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _num(x, where: str) -> float:
    """A logged number as a float; anything else (a string, a list, a bool) is an error naming where it was."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ObliviateError(f"{where}: expected a number, got {_short(x)}")
    return float(x)


def _fraction(x, where: str) -> float:
    """A logged ROUGE or memorization score: a number in [0, 1]."""
    v = _num(x, where)
    if v < 0 or v > 1:
        raise ObliviateError(f"{where}: {v} is not a fraction in [0, 1]")
    return v


def _opt_num(x, where: str) -> float | None:
    return None if x is None else _num(x, where)
