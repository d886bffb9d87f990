"""Evaluation protocols: everything around the metric formulas that decides whether a number can be put next
to a published table — the prompt a model sees, which tokens are scored, when generation stops, and a few
definition choices — as one documented, named bundle.

A :class:`Protocol` is a frozen dataclass; :data:`PRESETS` / ``obliviate ls protocols`` list the named ones and
:func:`get_protocol` resolves a name plus single-field overrides (``--system-prompt``, ``--date-string`` ...).
Every field cites where the reference code makes the choice (file:line at the commits below; read with git
from a ``fetch`` of each repository, none of their code is copied):

* open-unlearning  ``locuslab/open-unlearning`` d3d7cf9  (``OU``)
* TOFU             ``locuslab/tofu`` bdc209e              (``TOFU``)
* MUSE             ``swj0419/muse_bench`` fcd6651         (``MUSE``)
* PALU             ``nxZhai/PALU`` 8c3fea6                (``PALU``)

The same protocol formats the QA items a model is trained on (``finetune``, ``unlearn``: :func:`training_protocol`)
and the audit's prompts, so that a model is scored on the prompts it was trained on; :func:`default_protocol` is
``open-unlearning`` for TOFU-format data and ``muse`` for MUSE. :func:`protocol_mismatch` tells when a retain
model's evaluation was made under another protocol than the run that reads it.

Bugs of a reference that obliviate fixes stay fixed in every preset (UNDIAL's -100 wrap, unmasked KL, PDU's
shifted mask); the one exception is a switch, :attr:`Protocol.pad_mask`, that reproduces open-unlearning's
attention mask (``input_ids != pad_id`` with pad = EOS, OU src/data/collators.py:49) so that its released
numbers can be reproduced side by side with corrected ones. It is off in every preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields

from .errors import ObliviateError
from .registry import PROTOCOLS

#: the fixed date open-unlearning's Llama-3 configs pass to the chat template (OU configs/model/
#: Llama-3.2-1B-Instruct.yaml:15); without one a Llama-3 template writes ``Today Date: <today>``.
OU_DATE_STRING = "10 Apr 2025"
#: OU configs/model/Llama-3.2-1B-Instruct.yaml:9 (same for Qwen2.5-*, Phi-3.5, zephyr configs)
OU_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol (see the module docstring; docs/metrics.md has the table per preset)."""

    name: str
    description: str = ""

    # -- the prompt --------------------------------------------------------------------------------
    #: ``chat`` (the tokenizer's template), ``plain`` (``Question: q\\nAnswer:``), ``llama2`` (``[INST] q [/INST]``).
    #: OU: ``template_args.apply_chat_template`` per model config (phi-1_5.yaml:6 False, Llama-3.2-*:8 True);
    #: TOFU: config/model_config.yaml:1-16 (llama2 ``[INST] `` / `` [/INST]``, phi ``Question: ``/``\\n``/``Answer: ``).
    style: str = "chat"
    #: system turn of the chat template; None keeps the template's own default (OU: Llama-3.2-1B-Instruct.yaml:9).
    system_prompt: str | None = None
    #: ``date_string`` passed to ``apply_chat_template`` (OU src/data/utils.py:59-63; value
    #: Llama-3.2-1B-Instruct.yaml:15). Never today's date: a prompt must not change from day to day.
    date_string: str | None = OU_DATE_STRING
    #: tokenize prompt + answer as one text and cut the labels at len(tokenize(prompt)) — the reference rule
    #: (OU src/data/utils.py:99-111,116-124; TOFU data_module.py:13-30). False: prompt and answer tokenized
    #: separately and concatenated (obliviate's rule, which keeps every answer variant's prompt identical).
    joint_tokenization: bool = False
    #: legacy ``plain`` style: the prompt ends ``Answer: `` (OU phi-1_5.yaml:9, ``asst_start_tag``) instead of
    #: ``Answer:`` with the answer prefixed by a space.
    plain_prompt_trailing_space: bool = False
    #: legacy ``plain`` style: ``Answer: `` belongs to the scored answer, the prompt being ``Question: q\\n``
    #: (TOFU data_module.py:10-13: ``num_question_tokens`` counts only ``question_start + q + question_end``).
    score_answer_tag: bool = False
    #: tokens of one prompt + answer sequence; longer answers are cut (OU configs/data/datasets/
    #: TOFU_QA_forget.yaml ``max_length: 512``; TOFU evaluate_util.py:224 ``max_length = 500``).
    max_length: int = 512

    # -- generation --------------------------------------------------------------------------------
    #: new tokens of a greedy answer (OU configs/generation/default.yaml:4).
    max_new_tokens: int = 200
    #: TOFU caps prompt + answer at 200 tokens instead (TOFU config/eval_everything.yaml:25-26,
    #: evaluate_util.py:330 ``max_length=cfg.generation.max_length``); None: no such cap.
    generation_max_total_length: int | None = None
    #: stop a row at any id of the generation config's ``eos_token_id`` (an int or a list) and the
    #: tokenizer's EOS. OU lets ``model.generate`` read the generation config (src/evals/metrics/utils.py:
    #: 294-299, no ``eos_token_id`` passed); False stops at ``tokenizer.eos_token_id`` only.
    stop_at_all_eos: bool = True

    # -- scored tokens -------------------------------------------------------------------------------
    #: attention mask for teacher-forced scoring: ``correct`` (from sequence lengths) or ``eos``
    #: (``input_ids != pad_id`` with pad = EOS: open-unlearning's collator, OU src/data/collators.py:49 with
    #: ``pad_token_id=eos``). ``eos`` masks every EOS-valued token *inside* a sequence too (on SmolLM2 / Qwen the
    #: ``<|im_end|>`` closing the system and user turns): a bug-compatibility switch only.
    pad_mask: str = "correct"

    # -- definitions ---------------------------------------------------------------------------------
    #: Min-K% / Min-K%++ count of lowest tokens: ``floor`` = max(1, floor(kT)) (OU src/evals/metrics/mia/
    #: min_k.py:24, min_k_plus_plus.py:38; MUSE metrics/privleak.py:44 ``int(len*ratio)``), ``ceil`` = ceil(kT).
    min_k_count: str = "floor"
    #: GradNorm statistic: ``mean_tensor`` = mean over parameter tensors of each tensor's L2 norm, loss
    #: without EOS, model in train mode (OU src/evals/metrics/mia/gradnorm.py:21-32, utils.py:129-131 drops the
    #: EOS position); ``global`` = one L2 norm over all parameters, loss with EOS, eval mode.
    gradnorm: str = "mean_tensor"
    #: extraction strength when no suffix matches: OU's loop leaves k = T-1, so ES = 1/T
    #: (OU src/evals/metrics/memorization.py:237-253); False: 0, as the definition says.
    es_floor: bool = True

    # -- MUSE encoding (MUSE metrics/*.py) -----------------------------------------------------------------
    #: prompts and texts encoded with the tokenizer's special tokens (BOS on Llama-2): MUSE metrics/
    #: verbmem.py:15-19,22, knowmem.py:32-35, privleak.py:14 (``tokenizer.encode`` adds BOS).
    muse_special_tokens: bool = True
    #: (PrivLeak always scores the encoded text after its first id, MUSE privleak.py:22: with the BOS of
    #: ``muse_special_tokens`` every text token; without it the first text token is the unscored prompt.)
    #: PrivLeak texts cut at this many tokens; None: untruncated (MUSE privleak.py:14).
    muse_privleak_max_tokens: int | None = None
    #: KnowMem prompt ends ``Answer: `` with a trailing space (MUSE knowmem.py:29).
    muse_knowmem_trailing_space: bool = True

    def __post_init__(self):
        from .data.formatting import STYLES

        if self.style not in STYLES:  # the same words as the formatter's own check (the --style flag)
            raise ObliviateError(f"--style {self.style!r}: unknown prompt style; valid styles: {', '.join(STYLES)}")
        checks = [
            ("pad_mask", self.pad_mask, ("correct", "eos")),
            ("min_k_count", self.min_k_count, ("floor", "ceil")),
            ("gradnorm", self.gradnorm, ("mean_tensor", "global")),
        ]
        for field_name, value, valid in checks:
            if value not in valid:
                raise ObliviateError(f"protocol {self.name!r}: {field_name}={value!r} is not one of {', '.join(valid)}")
        for field_name in ("max_length", "max_new_tokens"):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ObliviateError(f"protocol {self.name!r}: {field_name} must be a positive integer, got {v!r}")

    def as_dict(self) -> dict:
        """The resolved protocol, as written to run.json."""
        return asdict(self)

    def formatter_kwargs(self) -> dict:
        """Keyword arguments of :class:`obliviate.data.formatting.Formatter` this protocol sets."""
        return dict(style=self.style, system_prompt=self.system_prompt, max_length=self.max_length,
                    date_string=self.date_string, joint=self.joint_tokenization,
                    plain_trailing_space=self.plain_prompt_trailing_space, score_answer_tag=self.score_answer_tag)


PRESETS: dict[str, Protocol] = {}


def _preset(p: Protocol) -> Protocol:
    PRESETS[p.name] = p
    PROTOCOLS.register(p.name, description=p.description)(p)
    return p


OPEN_UNLEARNING = _preset(Protocol(
    name="open-unlearning",
    description="open-unlearning d3d7cf9 (the default for TOFU): chat template with its system prompt and "
                "date, joint prompt+answer tokens, 200 new tokens, max(1, floor(kT)), per-tensor GradNorm, ES floor 1/T",
    style="chat", system_prompt=OU_SYSTEM_PROMPT, date_string=OU_DATE_STRING, joint_tokenization=True,
    plain_prompt_trailing_space=True, max_length=512, max_new_tokens=200, stop_at_all_eos=True,
    min_k_count="floor", gradnorm="mean_tensor", es_floor=True,
))

TOFU = _preset(Protocol(
    name="tofu",
    description="the original TOFU repository (phi-1.5 / Llama-2 prompts): plain or [INST] prompts, joint "
                "tokens with 'Answer: ' scored, generation capped at 200 tokens in total",
    style="plain", system_prompt=None, date_string=OU_DATE_STRING, joint_tokenization=True,
    plain_prompt_trailing_space=False, score_answer_tag=True, max_length=500, max_new_tokens=200,
    generation_max_total_length=200, stop_at_all_eos=False,
    # TOFU has no MIA / ES; for these it inherits open-unlearning's definitions
    min_k_count="floor", gradnorm="mean_tensor", es_floor=True,
))

MUSE = _preset(Protocol(
    name="muse",
    description="MUSE's own code (muse_bench fcd6651): BOS on every prompt and text, every PrivLeak text token "
                "scored untruncated, 'Answer: ' with its trailing space, Min-K floor(kT)",
    style="plain", date_string=OU_DATE_STRING, joint_tokenization=True, max_new_tokens=128,
    min_k_count="floor", gradnorm="mean_tensor", es_floor=True,
    muse_special_tokens=True, muse_privleak_max_tokens=None,
    muse_knowmem_trailing_space=True,
))

OBLIVIATE = _preset(Protocol(
    name="obliviate",
    description="obliviate's own, better-defined choices: separate prompt/answer tokens (one prompt for every "
                "answer variant), ceil(kT), one global GradNorm with EOS in eval mode, ES 0 when nothing matches",
    style="chat", system_prompt=None, date_string=OU_DATE_STRING, joint_tokenization=False, max_length=512,
    max_new_tokens=200, stop_at_all_eos=True, min_k_count="ceil", gradnorm="global", es_floor=False,
    muse_special_tokens=False, muse_privleak_max_tokens=512,
    muse_knowmem_trailing_space=False,
))

#: the protocol each benchmark uses when none is named
DEFAULT_PROTOCOL = {"tofu": "open-unlearning", "muse": "muse"}


def default_protocol(benchmark: str = "tofu") -> str:
    """The preset a benchmark's runs use when no ``--protocol`` is given: ``open-unlearning`` for TOFU-format QA
    data (eval, finetune, unlearn, audit), ``muse`` for MUSE."""
    return DEFAULT_PROTOCOL["muse" if benchmark.startswith("muse") else "tofu"]


def get_protocol(name: str | Protocol | dict | None = None, **overrides) -> Protocol:
    """The preset ``name`` (default: open-unlearning) with single fields replaced; ``None`` overrides are
    ignored so that unset CLI flags can be passed through as they are. ``name`` may also be a resolved
    :class:`Protocol` or the protocol dict a run.json records (``--config``)."""
    if isinstance(name, Protocol):
        base = name
    elif isinstance(name, dict):
        base = protocol_from_dict(name)
    else:
        name = name or "open-unlearning"
        if name not in PRESETS:
            raise ObliviateError(f"--protocol {name!r}: unknown protocol; valid protocols: {', '.join(sorted(PRESETS))}")
        base = PRESETS[name]
    known = {f.name for f in fields(Protocol)}
    bad = [k for k in overrides if k not in known]
    if bad:
        raise ObliviateError(f"protocol override {bad[0]!r} is not a protocol field; valid: {', '.join(sorted(known))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes.get("style", base.style) != "chat" and "system_prompt" not in changes:
        changes["system_prompt"] = None  # a legacy style has no system turn: the preset's prompt does not carry over
    return dataclasses.replace(base, **changes) if changes else base


def training_protocol(protocol=None, *, style: str | None = None, system_prompt: str | None = None,
                      max_length: int | None = None, date_string: str | None = None) -> Protocol:
    """The prompt format of a training run (``finetune``, ``unlearn``): ``protocol`` (default: TOFU's,
    ``open-unlearning``, so that a model is trained on the very prompts its default evaluation shows it) with
    the single-field overrides of ``--style``, ``--system-prompt``, ``--max-length`` and ``--date-string``."""
    from .errors import check_int

    if max_length is not None:
        check_int("--max-length", max_length, 2)  # the flag's own words, before the protocol's check
    return get_protocol(protocol or default_protocol("tofu"), style=style, system_prompt=system_prompt,
                        max_length=max_length, date_string=date_string)


def protocol_from_dict(d: dict) -> Protocol:
    """A protocol read back from run.json (unknown keys refused, missing ones take the dataclass defaults)."""
    known = {f.name for f in fields(Protocol)}
    bad = [k for k in d if k not in known]
    if bad:
        raise ObliviateError(f"protocol record has unknown field {bad[0]!r}")
    return Protocol(**d)


#: fields that only name or describe a protocol (two records that differ only here score alike)
_LABELS = ("name", "description")


def recorded_protocol(path) -> Protocol | None:
    """The protocol an ``obliviate eval`` folder (or its items.jsonl) was produced under, from its run.json; an
    eval recorded before protocols existed used ``obliviate``'s choices. None: no obliviate run.json there (the
    logs of another tool, whose protocol cannot be told)."""
    import json
    from pathlib import Path

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    # an eval folder's own run.json, or an unlearn run's per-epoch evaluation (RUN/eval/<tag>/): the run's
    run_json, command = folder / "run.json", "eval"
    if not run_json.is_file() and folder.parent.name == "eval":
        run_json, command = folder.parent.parent / "run.json", "unlearn"
    try:
        rec = json.loads(run_json.read_text(encoding="utf-8"))
        config = rec.get("config") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if rec.get("command") != command or config.get("from_logs"):
        return None
    d = config.get("protocol")
    try:
        return protocol_from_dict(d) if isinstance(d, dict) else PRESETS["obliviate"]
    except (ObliviateError, TypeError):
        return None


def protocol_mismatch(path, proto: Protocol, flag: str = "--retain-eval") -> str | None:
    """One line when the evaluation at ``path`` was produced under another protocol than ``proto`` (forget quality
    and PrivLeak would then compare scores of different prompts or definitions); None when they agree or the
    folder's protocol cannot be told."""
    other = recorded_protocol(path)
    if other is None:
        return None
    a, b = other.as_dict(), proto.as_dict()
    diff = [k for k in a if k not in _LABELS and a[k] != b.get(k)]
    if not diff:
        return None
    shown = ", ".join(f"{k} {a[k]!r} vs {b[k]!r}" for k in diff[:3]) + (", ..." if len(diff) > 3 else "")
    return (f"warning: {flag} {path} was evaluated under protocol {other.name!r}, this run under {proto.name!r} "
            f"({shown}); its scores are not comparable with this run's")


def warn_protocol_mismatch(path, proto: Protocol, flag: str = "--retain-eval") -> None:
    """Print :func:`protocol_mismatch`'s line (if any) on stderr."""
    import sys

    msg = protocol_mismatch(path, proto, flag) if path is not None else None
    if msg:
        print(msg, file=sys.stderr)


# -- `obliviate data inspect SPEC --model M --protocol P --show-prompt N` ----------------------------------------

def preview_prompts(tokenizer, items, protocol: str | Protocol | None = None, n: int = 3, window: int = 6) -> str:
    """The first ``n`` items exactly as a model sees them under ``protocol``: the prompt and answer texts, the
    token ids (and pieces) on each side of the prompt/answer boundary, the counts, and the generation prompt
    when it differs from the scored one. Question-less items (MUSE texts) show the encoded text."""
    from .data.formatting import Formatter

    proto = get_protocol(protocol)
    fmt = Formatter.from_protocol(tokenizer, proto)
    eos = tokenizer.eos_token_id

    def show(ids):
        return " ".join(f"{i}:{tokenizer.convert_ids_to_tokens(i)!r}" for i in ids)

    lines = [f"protocol {proto.name}: style={fmt.style} joint={proto.joint_tokenization} "
             f"system_prompt={proto.system_prompt!r} date_string={proto.date_string!r} max_length={proto.max_length}"]
    for k, it in enumerate(items[:n]):
        lines.append(f"--- item {k + 1}")
        if not it.question:  # a text item (MUSE raw / privleak)
            ids = tokenizer(it.answer, add_special_tokens=proto.muse_special_tokens).input_ids
            lines.append(f"text ({len(ids)} tokens, special tokens {'on' if proto.muse_special_tokens else 'off'}): "
                         f"{it.answer[:200]!r}")
            lines.append(f"first ids: {show(ids[:window])}")
            continue
        p, a = fmt.pair_ids(it.question, it.answer)
        text = tokenizer.decode(p + a, skip_special_tokens=False)
        lines.append(f"prompt + answer as decoded from the ids ({len(p)} + {len(a)} tokens):")
        lines.append(repr(text))
        lines.append(f"boundary: {show(p[-window:])}  ||  {show(a[:window])}")
        lines.append(f"answer ends: {show(a[-3:])}" + ("  (EOS scored)" if a and a[-1] == eos else "  (EOS cut by max_length)"))
        g = fmt.generation_prompt_ids(it.question)
        if g != p:
            lines.append(f"generation prompt differs from the scored prompt; it ends: {show(g[-window:])}")
    if fmt.boundary_mismatches:
        lines.append(f"{fmt.boundary_mismatches} item(s): the joint tokens of the prompt differ from the prompt alone")
    if fmt.truncated_answers:
        lines.append(f"{fmt.truncated_answers} answer(s) cut by max_length {proto.max_length}")
    return "\n".join(lines)


def show_prompts(spec: str, model: str, protocol: str | None = None, n: int = 3, data_dir: str | None = None,
                 **overrides) -> str:
    """:func:`preview_prompts` for a data spec and a model spec (the CLI's ``--show-prompt N``)."""
    from .data import load_items
    from .errors import check_int
    from .models import load_model

    check_int("--show-prompt", n)
    proto = get_protocol(protocol, **overrides)  # errors before the model is loaded
    items = load_items(spec, data_dir=data_dir)
    _, tok = load_model(model)
    return preview_prompts(tok, items, proto, n)
