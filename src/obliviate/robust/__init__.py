"""Robustness wrappers around any unlearning method's step (Fan et al. 2025, arXiv 2502.05374).

* :class:`~obliviate.robust.sam.SAM` — sharpness-aware: the forget gradient at weights perturbed along it;
* :class:`~obliviate.robust.smoothing.RandomizedSmoothing` — the forget gradient averaged over Gaussian
  weight perturbations;
* :class:`~obliviate.robust.gradpenalty.GradPenalty` — adds lambda * ||grad of the forget loss|| (a
  differentiable norm: double backward);
* :class:`~obliviate.robust.averaging.WeightAveraging` — a running average of the weights (a step hook).

The first three change how the gradient is taken, so at most one of them is used; weight averaging
composes with any. Each needs the method to expose ``forget_loss`` and ``retain_loss`` separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ObliviateError, check_int
from .averaging import WeightAveraging
from .gradpenalty import GradPenalty
from .sam import SAM
from .smoothing import RandomizedSmoothing

__all__ = ["RobustConfig", "SAM", "RandomizedSmoothing", "GradPenalty", "WeightAveraging", "wrap_step"]


@dataclass
class RobustConfig:
    sam_rho: float | None = None  # SAM radius (paper: 0.01)
    smooth_n: int = 0  # randomized smoothing: number of Gaussian samples (paper: 3); 0 = off
    smooth_sigma: float = 1e-4  # randomized smoothing: noise std
    grad_penalty: float | None = None  # gradient-norm penalty weight
    weight_avg: bool = False  # running weight average
    avg_start: int = 100  # first optimiser step averaged
    avg_every: int = 5  # averaging interval (steps)

    def validate(self) -> None:
        for flag, v in (("--sam-rho", self.sam_rho), ("--smooth-sigma", self.smooth_sigma),
                        ("--grad-penalty", self.grad_penalty)):
            if v is not None and not math.isfinite(v):
                raise ObliviateError(f"{flag} {v}: must be a finite number")
        chosen = [n for n, on in (("--sam-rho", self.sam_rho is not None), ("--smooth-n", self.smooth_n > 0),
                                  ("--grad-penalty", self.grad_penalty is not None)) if on]
        if len(chosen) > 1:
            raise ObliviateError(f"choose one of --sam-rho, --smooth-n, --grad-penalty (got {', '.join(chosen)})")
        if self.sam_rho is not None and self.sam_rho <= 0:
            raise ObliviateError(f"--sam-rho {self.sam_rho}: must be > 0 (the paper uses 0.01)")
        if self.smooth_n < 0 or (self.smooth_n and self.smooth_sigma <= 0):
            raise ObliviateError("--smooth-n must be >= 0 and --smooth-sigma > 0")
        if self.grad_penalty is not None and self.grad_penalty < 0:
            raise ObliviateError(f"--grad-penalty {self.grad_penalty}: must be >= 0")
        if self.weight_avg:
            check_int("--avg-start", self.avg_start)
            check_int("--avg-every", self.avg_every)

    def active(self) -> list[str]:
        out = []
        if self.sam_rho is not None:
            out.append("sam")
        if self.smooth_n > 0:
            out.append("smoothing")
        if self.grad_penalty is not None:
            out.append("grad_penalty")
        if self.weight_avg:
            out.append("weight_avg")
        return out


def wrap_step(objective, rcfg: RobustConfig | None, seed: int = 0):
    """The step function for ``train``: one gradient wrapper around the method, or the method with its
    forget and retain terms back-propagated one after the other (:class:`SplitBackward`)."""
    from ..methods.base import SplitBackward

    plain = SplitBackward(objective) if SplitBackward.applies(objective) else objective
    if rcfg is None:
        return plain
    if rcfg.sam_rho is not None:
        return SAM(objective, rcfg.sam_rho)
    if rcfg.smooth_n > 0:
        return RandomizedSmoothing(objective, rcfg.smooth_n, rcfg.smooth_sigma, seed=seed)
    if rcfg.grad_penalty is not None:
        return GradPenalty(objective, rcfg.grad_penalty)
    return plain
