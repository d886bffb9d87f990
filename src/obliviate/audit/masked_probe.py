"""View 5: is the key fact still linearly readable from the hidden states? Per-layer probes and the logit lens."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .format_shift_leak import key_span


def probe_inputs(fmt, items) -> list[tuple[list[int], int] | None]:
    """``(input ids up to the key span, its first token)`` per item: the prompt, then the answer tokens before the
    token holding the key span's first character, as the protocol tokenizes prompt + answer (None: no key span,
    or it lies past the tokens ``max_length`` keeps)."""
    out = []
    for it in items:
        span = key_span(it)
        if span is None:
            out.append(None)
            continue
        p, a = fmt.pair_ids(it.question, it.answer)
        offs = fmt.answer_offsets(it.question, it.answer)
        t = next((k for k, (s, e) in enumerate(offs) if e > span[0]), None)
        out.append(None if t is None else (p + a[:t], a[t]))
    return out


@torch.no_grad()
def layer_states(model, inputs) -> tuple[list[np.ndarray], list[list[int]]]:
    """Per item: the hidden state of every layer at the last input position ([layers, d]) and the logit lens's
    top token per layer (the model's final norm and LM head applied to that layer's state)."""
    states, lens = [], []
    dev = next(model.parameters()).device
    norm = getattr(model.get_decoder(), "norm", None)
    head = model.get_output_embeddings()
    for ids, _ in inputs:
        o = model(input_ids=torch.tensor([ids], device=dev), output_hidden_states=True)
        hs = [h[0, -1] for h in o.hidden_states[1:]]  # after each decoder layer
        last = o.logits[0, -1].argmax().item()
        tops = [head(norm(h) if norm is not None else h).argmax().item() for h in hs[:-1]] + [last]
        states.append(torch.stack(hs).float().cpu().numpy())
        lens.append(tops)
    return states, lens


@AUDITS.register("masked_probe", headline="probe_top1_last", leak=False, view=5)
class MaskedProbe(View):
    """Linear probes (trained on retain items) and the logit lens predicting the key span's first token, per layer."""

    name = "masked_probe"
    headline = "probe_top1_last"

    def __init__(self):
        self.metrics = {"probe_top1_last": {"kind": "mean", "field": "probe_last", "format": "percent"},
                        "lens_top1_last": {"kind": "mean", "field": "lens_last", "format": "percent"}}

    def skip_reason(self, ctx: AuditContext) -> str | None:
        return None if ctx.retain else "needs retain items to train the probes (--retain)"

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model, _, fmt = ctx.slots[role].get()
        tr = [x for x in probe_inputs(fmt, ctx.retain) if x is not None]
        te = probe_inputs(fmt, ctx.forget)
        te_ok = [x for x in te if x is not None]
        tr_states, _ = layer_states(model, tr)
        te_states, te_lens = layer_states(model, te_ok)
        n_layers = te_states[0].shape[0] if te_states else 0
        y = np.array([lab for _, lab in tr])
        preds = []  # per layer: predicted token of each forget item
        for l in range(n_layers):
            X = np.stack([s[l] for s in tr_states])
            Xt = np.stack([s[l] for s in te_states])
            if len(set(y.tolist())) < 2:  # one class: the probe can only say it
                preds.append([int(y[0])] * len(te_ok))
                continue
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=ctx.settings.probe_c, max_iter=500))
            with warnings.catch_warnings():  # tokens seen once in the retain set: sklearn warns, the probe still fits
                warnings.simplefilter("ignore")
                clf.fit(X, y)
            preds.append(clf.predict(Xt).tolist())
        for l in range(n_layers):
            self.metrics.setdefault(f"probe_top1_L{l + 1}", {"kind": "mean", "field": f"probe_L{l + 1}", "format": "percent"})
            self.metrics.setdefault(f"lens_top1_L{l + 1}", {"kind": "mean", "field": f"lens_L{l + 1}", "format": "percent"})
        recs, k = [], 0
        for i, (it, x) in enumerate(zip(ctx.forget, te)):
            rec = item_base(i, it)
            if x is None:
                rec.update(probe_last=None, lens_last=None, note="no key span")
            else:
                lab = x[1]
                rec["target_token"] = lab
                for l in range(n_layers):
                    rec[f"probe_L{l + 1}"] = int(preds[l][k] == lab)
                    rec[f"lens_L{l + 1}"] = int(te_lens[k][l] == lab)
                rec["probe_last"], rec["lens_last"] = rec[f"probe_L{n_layers}"], rec[f"lens_L{n_layers}"]
                k += 1
            recs.append(rec)
        return recs
