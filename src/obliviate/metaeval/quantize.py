"""The 4-bit quantization attack: NF4 weight round trip of every linear layer except the output head.

``load_in_4bit`` in transformers (bitsandbytes, QLoRA's NF4, blocks of 64, no double quantization, lm_head
kept) stores each weight as a 4-bit code per element and one absmax per block, and dequantizes it for every
matmul. The weight the model then computes with is exactly ``dequantize(quantize(W))``: replacing each weight
by that round trip reproduces the attack on any device, in the model's own dtype, without a CUDA kernel.

``method``: ``bitsandbytes`` (``bitsandbytes.functional.quantize_4bit`` / ``dequantize_4bit``), ``simulated``
(the same NF4 code book and absmax blocks in plain torch: :func:`nf4_round_trip`), or ``auto`` (bitsandbytes
when it imports, else simulated). The method used is recorded in the meta-evaluation's index.
"""

from __future__ import annotations

import torch

from ..errors import ObliviateError

# The 16 NF4 values (Dettmers et al. 2023, QLoRA, Appendix E; bitsandbytes' code book): quantiles of N(0, 1)
# scaled to [-1, 1], with an exact zero.
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
METHODS = ("auto", "bitsandbytes", "simulated")
SKIP_MODULES = ("lm_head",)


def nf4_round_trip(w: torch.Tensor, block_size: int = 64) -> torch.Tensor:
    """``w`` with each block of ``block_size`` consecutive elements (row-major) scaled by its absmax,
    rounded to the nearest NF4 value, and scaled back; same shape and dtype."""
    flat = w.detach().float().reshape(-1)
    n = flat.numel()
    pad = (-n) % block_size
    blocks = torch.cat([flat, flat.new_zeros(pad)]).view(-1, block_size)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    scaled = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)
    code = torch.tensor(NF4_CODE, dtype=torch.float32)
    idx = (scaled.unsqueeze(-1) - code).abs().argmin(dim=-1)
    out = (code[idx] * absmax).reshape(-1)[:n]
    return out.view_as(w).to(w.dtype)


def _bnb_round_trip(w: torch.Tensor, block_size: int) -> torch.Tensor:
    import bitsandbytes.functional as F

    q, state = F.quantize_4bit(w.detach().float().contiguous(), blocksize=block_size, quant_type="nf4")
    return F.dequantize_4bit(q, state).view_as(w).to(w.dtype)


def resolve_method(method: str) -> str:
    if method not in METHODS:
        raise ObliviateError(f"quantize method {method!r}; valid: {', '.join(METHODS)}")
    if method == "simulated":
        return method
    try:
        import bitsandbytes.functional  # noqa: F401
    except Exception as e:  # not installed, or no backend for this machine
        if method == "bitsandbytes":
            raise ObliviateError(f"quantize method bitsandbytes: cannot import bitsandbytes ({e}); "
                                 "pip install bitsandbytes, or use method: simulated") from None
        return "simulated"
    return "bitsandbytes"


@torch.no_grad()
def quantize_4bit(model, method: str = "auto", block_size: int = 64) -> dict:
    """Replace, in place, the weight of every ``torch.nn.Linear`` not named in :data:`SKIP_MODULES` by its NF4
    round trip. Returns ``{"method", "block_size", "layers"}`` (what the run records)."""
    used = resolve_method(method)
    fn = _bnb_round_trip if used == "bitsandbytes" else nf4_round_trip
    n = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] not in SKIP_MODULES:
            mod.weight.copy_(fn(mod.weight, block_size))
            n += 1
    return {"method": used, "block_size": block_size, "layers": n}
