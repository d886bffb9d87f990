"""Representation misdirection for unlearning (``rmu``).

Paper: Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning",
arXiv 2403.03218 (Sec. 5, RMU).

Formula (plain text): h_l(x) = the output of decoder layer l (0-based) at each position; u = a random unit
vector fixed for the run (uniform entries in [0, 1), normalised, as in the reference code), c the
steering coefficient, d the hidden size;
    L_f = mean over forget answer tokens t of ||h_l(x_f)_t - c u||^2 / d
    L_r = mean over retain answer tokens t of ||h_l(x_r)_t - h_l^ref(x_r)_t||^2 / d
    L = gamma * L_f + alpha * L_r.
Only the parameters of ``update_layers`` whose names match ``param_pattern`` are trained (default: the MLP
down-projections of layers 5, 6, 7); the forward pass stops at layer l (nothing above it is needed).

Defaults (the paper's zephyr-7b setting; the paper has no TOFU setting): layer 7, update layers 5,6,7,
c 6.5, alpha 1200, gamma 1, lr 5e-5. open-unlearning's TOFU experiments use layer 7 with c 2
(``steering_coeff=2``); its trainer default is c 300 with alpha 1000. c and alpha depend on the model's
activation norms and should be tuned per model. On SmolLM2-135M the paper setting does nothing:
a few outlier channels (on every token) hold most of ||h_7||^2 and layers 5-7's down-projections cannot
cancel them; see docs/results.md.

Deviations: activations are masked to answer tokens (the paper's code uses every token of plain text);
the reference activations come from one frozen copy of the model (RMU trains chosen layers directly, so
``--lora`` is refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import ObliviateError
from ..runtime import dist
from .base import Method, decoder_layers, layer_output, option, register


def rmu_loss(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked positions of ||h_t - target_t||^2 / d (h, target [B, T, d]; mask [B, T])."""
    sq = (h.float() - target.float()).pow(2).mean(-1)  # ||.||^2 / d per position
    # over the global batch's answer tokens (runtime/dist.py); no answer token anywhere: 0
    return dist.mean(sq[mask.bool()], empty_zero=True)


def steering_vector(d: int, coeff: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(d, generator=g)
    return coeff * u / u.norm()


@dataclass
class RMUConfig:
    layer: int = option(7, "decoder layer (0-based) whose output is steered")
    update_layers: str = option("5,6,7", "comma-separated layers whose matching parameters are trained")
    param_pattern: str = option(r"mlp\.down_proj\.weight", "regex for the trained parameters inside a layer")
    steering_coeff: float = option(6.5, "c: norm of the random control vector")
    gamma: float = option(1.0, "weight of the forget term")
    alpha: float = option(1200.0, "weight of the retain (activation-preservation) term")


@register
class RMU(Method):
    """Steer forget activations at one layer to a random vector; keep retain activations."""

    name = "rmu"
    Config = RMUConfig
    paper = "Li et al. 2024, The WMDP Benchmark (RMU)"
    arxiv = "2403.03218"
    level = "representation"
    non_negative = ("layer",)
    train_defaults = {"epochs": 10, "lr": 5e-5}
    positive = ("steering_coeff",)
    supports_lora = False

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        try:
            layers = [int(x) for x in str(cfg.update_layers).split(",") if x.strip()]
        except ValueError:
            raise ObliviateError(f"method rmu: update_layers={cfg.update_layers!r} must be like 5,6,7") from None
        if not layers:
            raise ObliviateError("method rmu: update_layers is empty")
        if any(i > cfg.layer for i in layers):
            raise ObliviateError(f"method rmu: update_layers {layers} must not be above layer {cfg.layer} "
                                 "(layers above it get no gradient)")
        try:
            re.compile(cfg.param_pattern)
        except re.error as e:
            raise ObliviateError(f"method rmu: param_pattern {cfg.param_pattern!r} is not a regex ({e})") from None

    @classmethod
    def reference_kinds(cls, cfg):
        return {"token"} if cls.needs_retain(cfg) else set()

    def __init__(self, cfg, refs=None, seed: int = 0):
        super().__init__(cfg, refs, seed)
        self._target = None

    def trainable_names(self, model) -> list[str]:
        layers = [int(x) for x in self.cfg.update_layers.split(",") if x.strip()]
        rx = re.compile(rf"(?:^|\.)layers\.({'|'.join(map(str, layers))})\.(?:{self.cfg.param_pattern})$")
        return [n for n, _ in model.named_parameters() if rx.search(n)]

    def prepare(self, model):
        n_layers = len(decoder_layers(model))
        if not 0 <= self.cfg.layer < n_layers:
            raise ObliviateError(f"method rmu: layer={self.cfg.layer} but the model has {n_layers} decoder layers "
                                 f"(valid: 0..{n_layers - 1}); pass layer=N update_layers=...")
        names = set(self.trainable_names(model))
        if not names:
            some = [n for n, _ in model.named_parameters()][:6]
            raise ObliviateError(
                f"method rmu: no parameter matches layers {self.cfg.update_layers} and pattern "
                f"{self.cfg.param_pattern!r}; parameter names look like: {', '.join(some)}"
            )
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)

    def _steer(self, h):
        if self._target is None or self._target.shape[-1] != h.shape[-1]:
            self._target = steering_vector(h.shape[-1], self.cfg.steering_coeff, self.seed)
        return self._target.to(device=h.device, dtype=h.dtype).expand_as(h)

    def forget_loss(self, model, batch):
        f = batch["forget"]
        h = layer_output(model, f, self.cfg.layer)
        loss = rmu_loss(h, self._steer(h), f["labels"] != -100)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}

    def retain_loss(self, model, batch):
        if not self.needs_retain(self.cfg):
            return None, {}
        r = batch["retain"]
        h = layer_output(model, r, self.cfg.layer)
        h_ref = self.refs.token.layer_output(model, r, self.cfg.layer)
        loss = rmu_loss(h, h_ref, r["labels"] != -100)
        return self.cfg.alpha * loss, {"retain": loss.detach().item()}
