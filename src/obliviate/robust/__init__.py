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

from ..config import RobustConfig  # defined with its flags and checks in config.py (the single source)
from .averaging import WeightAveraging
from .gradpenalty import GradPenalty
from .sam import SAM
from .smoothing import RandomizedSmoothing

__all__ = ["RobustConfig", "SAM", "RandomizedSmoothing", "GradPenalty", "WeightAveraging", "wrap_step"]


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
