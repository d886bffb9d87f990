"""Randomized smoothing of the forget loss (one of the smoothness strategies of Fan et al. 2025).

Paper: Fan et al. 2025, "Towards LLM Unlearning Resilient to Relearning Attacks: A Sharpness-Aware
Minimization Perspective and Beyond", arXiv 2502.05374 (Sec. 5, "RS").

Step (plain text): the forget gradient is averaged over n Gaussian weight perturbations,
(1/n) sum_i grad L_f(theta + delta_i), delta_i ~ N(0, sigma^2 I) on the trainable parameters; the retain
gradient is taken at the clean weights. Paper setting: n 3, sigma 1e-4. The noise comes from a generator
seeded by the run's seed, so a run is reproducible; its state is part of the per-epoch checkpoint, so a
``--resume``d run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import torch

from ..methods.base import reusing_references
from .sam import restore, retain_at_clean_weights


class RandomizedSmoothing:
    does_backward = True

    def __init__(self, objective, n: int = 3, sigma: float = 1e-4, seed: int = 0):
        self.objective, self.n, self.sigma = objective, n, sigma
        self.gen = torch.Generator().manual_seed(seed + 7919)

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])

    @reusing_references  # one reference forward serves the n noise samples
    def __call__(self, model, batch, backward):
        params = [p for p in model.parameters() if p.requires_grad]
        total, out = 0.0, {}
        clean = [p.detach().clone() for p in params]  # restored by copy: p + z - z is not p in floating point
        for _ in range(self.n):
            with torch.no_grad():
                for p in params:
                    p.add_((torch.randn(p.shape, generator=self.gen) * self.sigma).to(device=p.device, dtype=p.dtype))
            try:
                f, logs = self.objective.forget_loss(model, batch)
                if not torch.isfinite(f):
                    return f.detach(), logs
                backward(f / self.n)
            finally:
                restore(params, clean)
            total = total + f.detach() / self.n
            for k, v in logs.items():  # the method's own terms (unweighted), averaged over the noise samples
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[k] = out.get(k, 0.0) + v / self.n
                else:
                    out.setdefault(k, v)
        return retain_at_clean_weights(self.objective, model, batch, backward, total, out), out
