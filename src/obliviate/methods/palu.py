"""PALU (``palu``): prefix-aware localised unlearning.

Paper: Zhai, Shao, Zheng, Yang, Shen, Bai, Yang 2026, "Maximizing Local Entropy Where It Matters:
Prefix-Aware Localized LLM Unlearning", arXiv 2601.03190.

Positions: the answer's *sensitive tokens* come from the item's ``target_words`` annotation ({word, start,
end} character offsets into the answer; the authors' GPT-annotated TOFU sets store it as a JSON string,
which loads too) or, when an item has none, from an automatic rule (contiguous runs of answer words that
are not in the question and not stop-words); a token is sensitive when its characters overlap a span
(the tokenizer's offset mapping over the answer tokens the protocol scores: with joint tokenization, the
open-unlearning / TOFU rule the authors' code inherits, src/data/qa.py, the offsets of the one tokenized prompt +
answer text; :func:`sensitive_codes`). As in the authors' code (nxZhai/PALU src/trainer/unlearn/palu.py:7-25,
92-128), adjacent sensitive tokens form one span whatever annotation entries they came from, and the first
``n`` tokens of each such span are the *prefix positions* P (``n = -1``: every span token, the authors'
default, configs/trainer/PALU.yaml ``first_n: -1``).

Formula (plain text): z_t = the current logits at answer position t, K_t = the indices of the reference
model's top-k logits at t, mean_v z_t,v over the full vocabulary (not detached);
    L_sens = (1/|P|) sum_{t in P} (1/k) sum_{j in K_t} (z_t,j - mean_v z_t,v)^2
    L_ns   = mean over the non-sensitive answer tokens (EOS included) of KL(p_theta,t || p_ref,t)
             (palu.py:156-169: tokens labelled -200; sensitive tokens outside P get neither term)
    L      = gamma * L_sens + alpha * (L_retainNLL + L_ns).

Defaults: gamma 1, alpha 1, k 1000, n 1, lr 1e-5, 10 epochs. The authors' trainer config
(configs/trainer/PALU.yaml) has ``top_k: 1, first_n: -1``; their README sweeps k in {1, 1000, 5000, 10000},
n in {1..5, 10}, alpha in {0.2..5}. obliviate keeps k 1000, n 1 (a middle point of those sweeps); pass
``k=1 n=-1`` for the authors' config.

Deviations: none known in the loss. The automatic rule for unannotated answers and its stop-word list are
ours (the authors annotate every item with GPT). Their chat rows are the generation prompt + answer tokenized
as one text, then EOS (src/data/qa.py:150-170, 236-237), not the whole conversation the template renders
(open-unlearning's rows: answer, turn end, EOS); obliviate trains every method on the protocol's rows, and the
mask follows them (the same overlap rule as qa.py:262-269, on the scored tokens only). Their Llama-3 offset tweak (src/data/qa.py:226-235, each
token's end moved to the next token's start) is not reproduced. The reference is one frozen copy, or with
LoRA the base model with adapters disabled. With the robustness wrappers L_ns counts as part of the retain
side (taken at the clean weights by SAM / smoothing).

Mask codes (one int per answer token, carried by the forget batch's ``sensitive`` tensor): 0 non-sensitive,
:data:`PREFIX` (1) a prefix position, :data:`SPAN` (2) a sensitive token past its span's prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import torch

from ..engine.forward import answer_logits
from ..errors import ObliviateError
from ..runtime import dist
from .base import Method, kl_divergence, nll_token_mean, option, register

# obliviate's own stop-word list (function words that never carry the fact of an answer).
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each else ever few for from further
    had has have having he her here hers herself him himself his how however i if in into is it its itself
    just like many may me might more most much must my myself no nor not now of off on once one only or
    other our ours ourselves out over own per quite rather s same several she should since so some such
    than that the their theirs them themselves then there these they this those though through thus to
    too toward towards under until up upon us very was we were what when where whether which while who
    whom whose why will with within without would yet you your yours yourself yourselves known name named
    called born author authors writer writers book books work works""".split()
)

_WORD = re.compile(r"\w+", re.UNICODE)


def auto_spans(question: str, answer: str) -> list[tuple[int, int]]:
    """Character spans of the contiguous runs of sensitive answer words (words neither in the question nor
    stop-words); words separated by whitespace alone are one span ("northern city"), any other character or
    a non-sensitive word in between ends it ("Estmoor, a northern city": "Estmoor" and "northern city")."""
    q_words = {w.lower() for w in _WORD.findall(question)}
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(answer):
        w = m.group(0).lower()
        if w in q_words or w in STOP_WORDS or (len(w) < 2 and not w.isdigit()):
            continue
        if spans and not answer[spans[-1][1]:m.start()].strip():
            spans[-1] = (spans[-1][0], m.end())  # the run goes on
        else:
            spans.append((m.start(), m.end()))
    return spans


NON_SENSITIVE, PREFIX, SPAN = 0, 1, 2


def token_prefix_mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]], n: int) -> list[int]:
    """Per token: :data:`PREFIX` for the first ``n`` tokens of each run of adjacent sensitive tokens (``n = -1``:
    all of them), :data:`SPAN` for the rest of the run, :data:`NON_SENSITIVE` elsewhere. A token is sensitive
    when its characters overlap any span; runs are formed over token positions, so two annotated entries side
    by side are one run (the authors' ``_group_sensitive_indices_into_intervals``)."""
    sens = [any(s < e2 and e > s2 for s2, e2 in spans) for s, e in offsets]
    out = [NON_SENSITIVE] * len(offsets)
    run = 0
    for i, flag in enumerate(sens):
        run = run + 1 if flag else 0
        if flag:
            out[i] = PREFIX if n < 0 or run <= n else SPAN
    return out


def parse_target_words(value, where: str = "target_words") -> list[dict] | None:
    """``target_words`` as a list of {word, start, end}: a list as is, or the authors' JSON string."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{where}: field 'target_words' is a string but not JSON ({e.msg})") from None
        if isinstance(parsed, dict):
            parsed = [parsed]
        return parsed
    raise ObliviateError(f"{where}: field 'target_words' must be a list of {{word, start, end}} or its JSON string")


def load_palu_annotations(path) -> list:
    """The authors' GPT-annotated TOFU sets (``data/palu/forget*_with_common_words_gpt``, a ``datasets``
    ``save_to_disk`` folder with question, answer, ``target_words`` as a JSON string, common_words) or a
    JSON/JSONL export of them, as :class:`QAItem` rows with their spans."""
    from pathlib import Path

    from ..data.schema import item_from_row

    p = Path(path)
    if p.is_dir():
        try:
            import datasets
        except ImportError:  # pragma: no cover
            raise ObliviateError(f"{p}: reading a save_to_disk folder needs the 'datasets' package") from None
        rows = [dict(r) for r in datasets.load_from_disk(str(p))]
    else:
        from ..data.files import read_rows

        rows = read_rows(p)
    return [item_from_row({k: v for k, v in row.items() if k in ("question", "answer", "target_words")}, str(p), i)
            for i, row in enumerate(rows)]


def answer_spans(answer: str, question: str, target_words) -> list[tuple[int, int]]:
    """Character spans of the sensitive words in ``answer``: its ``target_words`` annotation, else the automatic
    rule (:func:`auto_spans`)."""
    target_words = parse_target_words(target_words)
    if target_words:
        return [(int(t["start"]), int(t["end"])) for t in target_words]
    return auto_spans(question, answer)


def sensitive_codes(fmt, item, n: int) -> list[int]:
    """Mask codes (see :func:`token_prefix_mask`) over the scored answer tokens of ``item`` exactly as the
    formatter ``fmt`` makes them: under joint tokenization (open-unlearning, TOFU) these are the tail of the one
    tokenized prompt + answer text, so the mask follows that tokenization (a token is sensitive when any of its
    answer characters is, :meth:`Formatter.answer_offsets`), and it has one code per scored token (EOS and a
    chat turn's end tokens: non-sensitive)."""
    spans = answer_spans(item.answer, item.question, item.target_words)
    return token_prefix_mask(fmt.answer_offsets(item.question, item.answer), spans, n)


def sensitive_mask(tokenizer, answer_text: str, answer: str, question: str, target_words, n: int) -> list[int]:
    """Mask codes (see :func:`token_prefix_mask`) over the tokens of ``tokenizer(answer_text)`` (the answer as
    the formatter tokenizes it)."""
    target_words = parse_target_words(target_words)
    shift = len(answer_text) - len(answer) if answer_text.endswith(answer) else 0
    if target_words:
        spans = [(int(t["start"]) + shift, int(t["end"]) + shift) for t in target_words]
    else:
        spans = [(s + shift, e + shift) for s, e in auto_spans(question, answer)]
    enc = tokenizer(answer_text, add_special_tokens=False, return_offsets_mapping=True)
    return token_prefix_mask([tuple(o) for o in enc["offset_mapping"]], spans, n)


def palu_sensitive_loss(logits: torch.Tensor, ref_logits: torch.Tensor, k: int) -> torch.Tensor:
    """(1/|P|) sum_t (1/k) sum_{j in topk(ref_t)} (z_t,j - mean_v z_t,v)^2; logits, ref_logits [P, V]."""
    if logits.shape[0] == 0:
        return dist.mean(logits.sum(-1), empty_zero=True)  # 0 (with every process's collective)
    z = logits.float()
    k = min(k, z.shape[-1])
    top = ref_logits.topk(k, dim=-1).indices
    return dist.mean((z.gather(-1, top) - z.mean(dim=-1, keepdim=True)).pow(2).mean(-1))


@dataclass
class PALUConfig:
    k: int = option(1000, "top-k reference logits flattened at each prefix position")
    n: int = option(1, "prefix length: first n tokens of each sensitive span (-1: all span tokens)")
    gamma: float = option(1.0, "weight of the sensitive-prefix term")
    alpha: float = option(1.0, "weight of retain NLL + KL on the non-prefix answer tokens")


@register
class PALU(Method):
    """Flatten the reference's top-k logits at sensitive-span prefixes; KL elsewhere; retain NLL."""

    name = "palu"
    Config = PALUConfig
    paper = "Zhai et al. 2026, Maximizing Local Entropy Where It Matters: Prefix-Aware Localized LLM Unlearning"
    arxiv = "2601.03190"
    level = "token"
    reference = "token"
    uses_sensitive = True
    positive = ("k",)

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        if cfg.n == 0 or cfg.n < -1:
            raise ObliviateError(f"method palu: n={cfg.n} must be >= 1, or -1 for every span token")

    def prepare(self, model):
        vocab = model.get_output_embeddings().weight.shape[0]
        if self.cfg.k > vocab:
            raise ObliviateError(f"method palu: k={self.cfg.k} is larger than the vocabulary ({vocab} tokens); "
                                 f"give k={vocab} or less (k={vocab} flattens every logit)")

    def _forget_parts(self, model, batch, want_sens: bool, want_ns: bool):
        f = batch["forget"]
        logits, _, _, _ = answer_logits(model, f)
        ref = self.refs.token.answer_logits(model, f)
        sel = f["labels"][:, 1:] != -100
        code = f["sensitive"][:, 1:][sel].long()
        prefix = code == PREFIX
        out = {}
        if want_sens:
            out["sens"] = palu_sensitive_loss(logits[prefix], ref[prefix], self.cfg.k)
        if want_ns:  # non-sensitive tokens only: the rest of a span is left free (palu.py:156-169)
            ns = code == NON_SENSITIVE
            out["ns"] = kl_divergence(logits[ns], ref[ns])
        out["n_prefix"] = int(prefix.sum())
        return out

    def forget_loss(self, model, batch):
        p = self._forget_parts(model, batch, True, False)
        return self.cfg.gamma * p["sens"], {"forget": p["sens"].detach().item(), "prefix_tokens": p["n_prefix"]}

    def retain_loss(self, model, batch):
        if not self.needs_retain(self.cfg):
            return None, {}
        ns = self._forget_parts(model, batch, False, True)["ns"]
        r = nll_token_mean(model, batch["retain"])
        return self.cfg.alpha * (r + ns), {"retain": r.detach().item(), "kl_non_prefix": ns.detach().item()}

    def __call__(self, model, batch):
        # One forward pass on the forget batch serves both L_sens and L_ns.
        want_ns = self.needs_retain(self.cfg)
        p = self._forget_parts(model, batch, True, want_ns)
        loss = self.cfg.gamma * p["sens"]
        logs = {"forget": p["sens"].detach().item(), "prefix_tokens": p["n_prefix"]}
        if want_ns:
            r = nll_token_mean(model, batch["retain"])
            loss = loss + self.cfg.alpha * (r + p["ns"])
            logs.update(retain=r.detach().item(), kl_non_prefix=p["ns"].detach().item())
        return loss, logs
