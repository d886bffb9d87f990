"""Sweeps: a predeclared grid of unlearning runs, run once each (resumably), ranked blind."""

from .grid import Grid, Point, load_grid, parse_grid
from .index import Index, open_index
from .runner import run_sweep

__all__ = ["Grid", "Point", "load_grid", "parse_grid", "Index", "open_index", "run_sweep"]
