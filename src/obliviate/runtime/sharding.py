"""Splitting an evaluation's items over the processes of a run, and putting the records back together.

Each process scores the items :func:`shard_sets` gives it (strided over all sets' items in order, so every
process gets a similar mix of sets and lengths) and :func:`gather_records` hands every process all records,
in the order one process writes them (set by set, item by item), with each record's ``index`` its place in
its whole set. Scores do not depend on which other items share a batch (padding is masked), so the records
are those of a one-process evaluation, to float rounding.
"""

from __future__ import annotations

from . import dist


def shard_sets(sets: dict[str, list]) -> tuple[dict[str, list], dict[str, list[int]]]:
    """``(local sets, where)``: this process's items of each set, and ``where[set][k]`` the index in the whole
    set of its k-th local item."""
    keys = [(name, i) for name, items in sets.items() for i in range(len(items))]
    mine = dist.shard(keys)
    where = {name: [i for n, i in mine if n == name] for name in sets}
    return {name: [sets[name][i] for i in where[name]] for name in sets}, where


def gather_records(records: list[dict], where: dict[str, list[int]], set_order: list[str]) -> tuple[list[dict], dict]:
    """All processes' records (each with its whole-set ``index``), ordered by set then index, on every process;
    and what run.json records about the split: ``{"world_size", "shard": "strided", "items_per_rank"}``."""
    for r in records:
        r["index"] = where[r["set"]][r["index"]]
    parts = dist.all_gather(records)
    order = {name: k for k, name in enumerate(set_order)}
    merged = sorted((r for part in parts for r in part), key=lambda r: (order[r["set"]], r["index"]))
    return merged, {"world_size": len(parts), "shard": "strided over the items of all sets in order",
                    "items_per_rank": [len(part) for part in parts]}
