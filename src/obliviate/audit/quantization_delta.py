"""View 8: does quantization bring forgotten answers back? Views 1 and 6 re-run at 8 and 4 bit."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings

import torch

from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .forget_loglik import answer_logprobs
from .judge import judge


@contextlib.contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def quantize(model, bits: int) -> tuple[object, str]:
    """A copy of ``model`` whose decoder Linear layers are bitsandbytes 8-bit (LLM.int8, threshold 6) or 4-bit
    (NF4) layers, the way quantization attacks load models (the LM head and embeddings stay, as transformers'
    bitsandbytes loading keeps them); without bitsandbytes, torch's dynamic int8 quantization for 8 bit."""
    q = copy.deepcopy(model).float()
    linears = [(n, m) for n, m in q.get_decoder().named_modules() if isinstance(m, torch.nn.Linear)]
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        if bits != 8:
            raise RuntimeError(f"{bits}-bit needs bitsandbytes ({e})") from None
        return torch.ao.quantization.quantize_dynamic(q, {torch.nn.Linear}, dtype=torch.qint8), \
            "torch dynamic int8 (bitsandbytes not installed)"
    body = q.get_decoder()
    for name, lin in linears:
        bias = lin.bias is not None
        if bits == 8:
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias, has_fp16_weights=False, threshold=6.0)
            new.weight = bnb.nn.Int8Params(lin.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
        elif bits == 4:
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=bias, compute_dtype=torch.float32,
                                    quant_type="nf4")
            new.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4")
        else:
            raise RuntimeError(f"{bits}-bit: bitsandbytes offers 8 and 4 bit")
        if bias:
            new.bias = torch.nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(body.get_submodule(parent) if parent else body, child, new.to(lin.weight.device))
    return q, f"bitsandbytes {bnb.__version__} {'LLM.int8' if bits == 8 else 'NF4'} on {next(model.parameters()).device.type}"


@AUDITS.register("quantization_delta", headline="leak_delta_8bit", leak=False, view=8)
class QuantizationDelta(View):
    """Change in greedy leak (view 1) and answer log-likelihood (view 6) when the model is quantized to 8 / 4 bit."""

    name = "quantization_delta"
    headline = "leak_delta_8bit"

    def __init__(self):
        self.metrics = {}

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        model, tok, fmt = ctx.slots[role].get()
        prompts = [fmt.prompt_text(it.question) for it in ctx.forget]
        fp_gen = ctx.greedy(role, prompts, [it.question for it in ctx.forget])
        fp_lp = answer_logprobs(ctx, role)
        recs = [{**item_base(i, it), "leak_fp": judge(it.answer, g, p).leak, "logprob_fp": lp}
                for i, (it, p, g, lp) in enumerate(zip(ctx.forget, prompts, fp_gen, fp_lp))]
        slot = ctx.slots[role]
        for bits in ctx.settings.quant_bits:
            self.metrics.setdefault(f"leak_delta_{bits}bit", {"kind": "mean", "field": f"leak_delta_{bits}bit",
                                                              "format": "percent"})
            self.metrics.setdefault(f"logprob_delta_{bits}bit", {"kind": "mean", "field": f"logprob_delta_{bits}bit",
                                                                 "format": "number"})
            try:
                qm, how = quantize(model, bits)
            except Exception as e:  # a backend that does not run here: say why, keep the other width
                note = f"quantization_delta: {bits}-bit not run on {role}: {type(e).__name__}: {e}"
                ctx.notes.append(note)
                continue
            if f"quantization_delta: {bits}-bit: {how}" not in ctx.notes:
                ctx.notes.append(f"quantization_delta: {bits}-bit: {how}")
            from ..engine.generation import generate

            saved = slot._model
            slot._model = qm
            try:
                with warnings.catch_warnings(), _quiet("bitsandbytes"):  # "inputs will be cast to float16", per call
                    warnings.simplefilter("ignore", UserWarning)
                    gens = generate(qm, tok, prompts, max_new_tokens=ctx.settings.max_new_tokens,
                                    batch_size=ctx.settings.batch_size)
                    lps = answer_logprobs(ctx, role)
            finally:
                slot._model = saved
            for rec, it, p, g, lp in zip(recs, ctx.forget, prompts, gens, lps):
                lq = judge(it.answer, g, p).leak
                rec.update({f"generation_{bits}bit": g, f"leak_{bits}bit": lq, f"logprob_{bits}bit": lp,
                            f"leak_delta_{bits}bit": None if lq is None else lq - rec["leak_fp"],
                            f"logprob_delta_{bits}bit": lp - rec["logprob_fp"]})
            del qm
        return recs
