"""What every unlearning method shares: configs and options, references, the retain terms, registration.

A method is one class in one file (``methods/<name>.py``) holding

* a ``Config`` dataclass whose defaults are the paper's TOFU settings where the paper has them (RMU: the WMDP
  paper's; PALU: a middle point of the authors' sweeps; each module says which), one ``help`` per field;
* pure loss functions on tensors (tested against hand-computed values; the terms on a real model are tested
  against an independent full-logits computation);
* ``forget_loss(model, batch)`` and ``retain_loss(model, batch)``, each returning ``(weighted term, logs)``:
  the step is ``gamma * L_forget + alpha * L_retain``. They are separate so that the robustness wrappers
  (``obliviate.robust``) can take the forget gradient somewhere else than the retain gradient.

No method inherits from another: the common wiring lives in :class:`Method`, and each method file reads
top to bottom.

References ("the model before unlearning", pi_ref)
--------------------------------------------------
* **sequence-level** (NPO, IdkDPO): only log pi_ref(y|x) of fixed (question, answer) pairs is needed, so
  :func:`compute_sequence_cache` scores every forget item once, before training, with the model itself
  (no copy): :class:`SequenceCache` looks the values up by ``batch["index"]``. :class:`LiveSequenceReference`
  computes the same values with a frozen model at every step (for tests and the benchmark only).
* **token-level** (UNDIAL, PALU, KL retain terms, RMU's retain activations): logits (or hidden states) of the
  reference at every answer position. :class:`TokenReference` holds one frozen copy, or, with LoRA, none:
  the trained model with its adapters disabled *is* the base model.

Batches are ``{"forget": collated, "retain": collated, "idk": collated, ...}``; every collated batch carries
``index`` (item indices into its data set), PALU's forget batches also ``sensitive`` (a labels-shaped mask).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data.formatting import Encoded, collate
from ..engine.forward import answer_logits, answer_token_logprobs, sequence_logprobs
from ..engine.hidden import decoder_layers, layer_output, unwrap  # noqa: F401  (re-exported for methods)
from ..errors import ObliviateError
from ..registry import METHODS
from ..runtime import dist
from ..train import train_autocast

RETAIN_LOSSES = ("nll", "kl")


def option(default, help: str):
    """A config field with its help string (shown by ``obliviate ls methods`` and in option errors)."""
    return field(default=default, metadata={"help": help})


# ------------------------------------------------------------------------------------------- options
def _field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(method: str, key: str, value: Any, typ: type):
    out = _coerce_type(method, key, value, typ)
    if isinstance(out, float) and not math.isfinite(out):
        raise ObliviateError(f"method {method}: option {key}={value!r} must be a finite number")
    return out


def _coerce_type(method: str, key: str, value: Any, typ: type):
    if not isinstance(value, str):
        if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, typ):
            return value
        value = str(value)
    try:
        if typ is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return typ(value)
    except ValueError:
        raise ObliviateError(
            f"method {method}: option {key}={value!r} is not a valid {typ.__name__}"
        ) from None


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["beta=0.2", "retain_loss=kl"]`` -> ``{"beta": "0.2", "retain_loss": "kl"}``."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ObliviateError(f"method option {p!r} is not KEY=VALUE (e.g. beta=0.1)")
        k, v = p.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise ObliviateError(f"method option {p!r} has an empty key")
        if k in out:
            raise ObliviateError(f"method option {k} given twice ({k}={out[k]} and {p.strip()}); keep one")
        out[k] = v.strip()
    return out


def describe_options(cls) -> str:
    parts = []
    for f in dataclasses.fields(cls.Config):
        parts.append(f"{f.name} (default {f.default!r}: {f.metadata.get('help', '')})")
    return "; ".join(parts) if parts else "(none)"


def make_config(cls, options: dict | None = None):
    """The method's config with its paper defaults, overridden by ``options`` (typed from the dataclass).

    An option the method does not take is an error that lists the options it does take.
    """
    options = dict(options or {})
    types = _field_types(cls.Config)
    unknown = [k for k in options if k not in types]
    if unknown:
        raise ObliviateError(
            f"method {cls.name} takes no option {unknown[0]!r}; its options are: {describe_options(cls)}"
        )
    kw = {k: _coerce(cls.name, k, v, types[k]) for k, v in options.items()}
    cfg = cls.Config(**kw)
    cls.validate(cfg)
    return cfg


# ------------------------------------------------------------------------------------------- references
class SequenceCache:
    """log pi_ref(y|x) (summed over answer tokens) of fixed sequences, computed once before training.

    ``values[key]`` is a float tensor over the items of one data set (``"forget"``: the forget answers;
    ``"idk"``: the refusal paired with each forget question). Memory: one float per sequence.
    """

    kind = "cached"

    def __init__(self, values: dict[str, torch.Tensor]):
        self.values = values

    def sequence_logprobs(self, key: str, batch: dict) -> torch.Tensor:
        v = self.values[key]
        return v.to(batch["index"].device)[batch["index"]]


@torch.no_grad()
def compute_sequence_cache(model, sequences: dict[str, list[Encoded]], pad_id: int, batch_size: int = 16,
                           device=None) -> SequenceCache:
    """Score each list of encoded sequences with ``model`` (teacher forcing, no gradient) into a cache.

    Batches are formed in length order (little padding); each value goes back to its item's position.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device or next(model.parameters()).device)
    values = {}
    try:
        with train_autocast(device):  # the training step's precision, so log pi_theta - log pi_ref starts at 0
            for key, encs in sequences.items():
                out = torch.zeros(len(encs), dtype=torch.float64)
                order = sorted(range(len(encs)), key=lambda i: len(encs[i]))
                for s in range(0, len(order), batch_size):
                    idx = order[s : s + batch_size]
                    b = collate([encs[i] for i in idx], pad_id)
                    b = {k: v.to(device) for k, v in b.items()}
                    sums, _ = sequence_logprobs(model, b)
                    out[torch.tensor(idx)] = sums.double().cpu()
                values[key] = out.float()
    finally:
        model.train(was_training)
    return SequenceCache(values)


def sequence_cache_key(sequences: dict[str, list[Encoded]]) -> str:
    """sha256 of the token ids and labels of each list: what the cached log-likelihoods depend on besides the
    model (the forget set, the prompt format, the refusals drawn for IdkDPO)."""
    import hashlib
    import json

    h = hashlib.sha256()
    for key in sorted(sequences):
        h.update(json.dumps([key, [[e.input_ids, e.labels, e.prompt_len] for e in sequences[key]]]).encode())
    return h.hexdigest()


def load_or_compute_sequence_cache(model, sequences: dict[str, list[Encoded]], pad_id: int, cache_dir,
                                   batch_size: int = 16) -> tuple[SequenceCache, bool]:
    """:func:`compute_sequence_cache`, stored in ``cache_dir`` (one folder per reference model: the caller's
    choice, e.g. a sweep's ``shared/reference-cache/<model>``) under the sequences' key and reused by every run
    that scores the same sequences with that model. A file lock lets concurrent workers compute it once.
    Returns (cache, whether it was read from the file)."""
    import fcntl
    from pathlib import Path

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = sequence_cache_key(sequences)
    path = cache_dir / f"{key[:24]}.pt"
    with open(cache_dir / f"{key[:24]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            if saved.get("key") == key:
                return SequenceCache(saved["values"]), True
        cache = compute_sequence_cache(model, sequences, pad_id, batch_size=batch_size)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"key": key, "values": cache.values}, tmp)
        tmp.replace(path)  # atomic: a killed writer leaves no half file
    return cache, False


class LiveSequenceReference:
    """The same values as :class:`SequenceCache`, from a frozen model at every step (tests, benchmark)."""

    kind = "live"

    def __init__(self, frozen_model):
        self.model = frozen_model

    @torch.no_grad()
    def sequence_logprobs(self, key: str, batch: dict) -> torch.Tensor:
        sums, _ = sequence_logprobs(self.model, batch)
        return sums


def frozen_copy(model):
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


_unwrap = unwrap  # the name methods used before engine/hidden.py

class TokenReference:
    """Reference logits / hidden states at every answer position.

    ``frozen``: a frozen copy of the model before unlearning; ``None`` with LoRA: the trained model with its
    adapters disabled is the base model (no second copy in memory).
    """

    def __init__(self, frozen=None):
        self.frozen = frozen
        self._memo: dict | None = None  # inside reuse(): {(what, id(input_ids)): (input_ids, output)}

    @property
    def kind(self) -> str:
        return "frozen-copy" if self.frozen is not None else "lora-base"

    @contextlib.contextmanager
    def reuse(self):
        """Within the block, each batch's reference outputs are computed once and reused.

        For the robustness wrappers, which take the forget loss more than once in a step (SAM at the clean
        and the perturbed weights, smoothing at each noise sample, PALU's KL again on the retain side): the
        reference does not move within a step (a frozen copy, or the LoRA base, which SAM's and smoothing's
        perturbations of the trainable weights never touch), so one no-grad forward per batch serves every
        pass. A batch is recognised by its ``input_ids`` tensor object; the outputs are held until the block
        ends (answer tokens x vocabulary floats for logits)."""
        outer = self._memo is not None
        if not outer:
            self._memo = {}
        try:
            yield
        finally:
            if not outer:
                self._memo = None

    def _reused(self, what, batch: dict, compute):
        if self._memo is None:
            return compute()
        ids = batch["input_ids"]
        key = (what, id(ids))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is ids:
            return hit[1]
        out = compute()
        self._memo[key] = (ids, out)
        return out

    @contextlib.contextmanager
    def _model(self, model):
        if self.frozen is not None:
            yield self.frozen
            return
        m = _unwrap(model)
        if not hasattr(m, "disable_adapter"):
            raise ObliviateError("a token-level reference without a frozen copy needs a LoRA (peft) model")
        was_training = m.training
        m.eval()  # the reference is the model before unlearning: no dropout, like a frozen copy
        try:
            with m.disable_adapter():
                yield m
        finally:
            m.train(was_training)

    @torch.no_grad()
    def answer_logits(self, model, batch: dict) -> torch.Tensor:
        def compute():
            with self._model(model) as ref:
                return answer_logits(ref, batch)[0]
        return self._reused("logits", batch, compute)

    @torch.no_grad()
    def layer_output(self, model, batch: dict, layer: int) -> torch.Tensor:
        def compute():
            with self._model(model) as ref:
                return layer_output(ref, batch, layer)
        return self._reused(("layer", layer), batch, compute)


def reusing_references(call):
    """Decorator for a robustness wrapper's ``__call__(self, model, batch, ...)``: the step runs inside
    :meth:`TokenReference.reuse` of ``self.objective`` (when the method has a token-level reference)."""
    @functools.wraps(call)
    def step(self, model, batch, *args, **kwargs):
        token = getattr(getattr(self.objective, "refs", None), "token", None)
        with token.reuse() if token is not None else contextlib.nullcontext():
            return call(self, model, batch, *args, **kwargs)
    return step


# ------------------------------------------------------------------------------------------- forward helpers
def token_logprobs(model, batch: dict):
    """(log p of each answer token [N], rows [N]): answer positions only, chunked over the vocabulary
    (:func:`..engine.forward.answer_token_logprobs`)."""
    lp, _, rows = answer_token_logprobs(model, batch)
    return lp, rows


# ------------------------------------------------------------------------------------------- shared losses
def nll_token_mean(model, batch: dict) -> torch.Tensor:
    """Mean NLL over all answer tokens of the batch (the fine-tuning objective)."""
    lp, _, _ = answer_token_logprobs(model, batch)
    return -dist.mean(lp)  # over the global batch (runtime/dist.py)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p || q) = sum_v p_v (log p_v - log q_v), both given as logits [N, V]."""
    lp = F.log_softmax(p_logits.float(), dim=-1)
    lq = F.log_softmax(q_logits.float(), dim=-1)
    return dist.mean((lp.exp() * (lp - lq)).sum(-1), empty_zero=True)  # no rows: 0


def retain_term(model, batch: dict, kind: str, reference: TokenReference | None):
    """The retain loss: ``nll`` (mean NLL over retain answer tokens) or ``kl`` (mean over retain answer
    tokens of KL(pi_ref || pi_theta)), answer tokens only."""
    if kind == "nll":
        return nll_token_mean(model, batch)
    logits, _, _, _ = answer_logits(model, batch)
    ref_logits = reference.answer_logits(model, batch)
    return kl_divergence(ref_logits, logits)


# ------------------------------------------------------------------------------------------- the method base
@dataclass
class References:
    """What a method may use: a sequence-level source and/or a token-level reference."""

    sequence: Any = None  # SequenceCache | LiveSequenceReference
    token: TokenReference | None = None


class Method:
    """Wiring shared by every method (no method inherits from another one).

    Class attributes (the registry metadata): ``name``, ``Config``, ``paper``, ``arxiv``, ``level``
    (``sequence`` | ``token`` | ``representation``), ``reference`` (``sequence`` | ``token`` | None: what
    the forget term needs), ``retain_term`` (whether ``alpha`` weighs a retain term), ``sequences``
    (the sequence keys to cache), ``uses_idk`` (needs refusal answers), ``uses_sensitive`` (needs PALU's
    sensitive-token mask), ``train_defaults`` (the paper's epochs / lr).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    paper: ClassVar[str] = ""
    arxiv: ClassVar[str | None] = None
    level: ClassVar[str] = "token"
    reference: ClassVar[str | None] = None
    retain_term: ClassVar[bool] = True
    sequences: ClassVar[tuple[str, ...]] = ()
    uses_idk: ClassVar[bool] = False
    uses_sensitive: ClassVar[bool] = False
    train_defaults: ClassVar[dict] = {"epochs": 10, "lr": 1e-5}
    positive: ClassVar[tuple[str, ...]] = ()  # options that must be > 0
    non_negative: ClassVar[tuple[str, ...]] = ()  # options that must be >= 0 (alpha and gamma always)
    supports_lora: ClassVar[bool] = True

    def __init__(self, cfg, refs: References | None = None, seed: int = 0):
        self.cfg = cfg
        self.refs = refs or References()
        self.seed = seed

    # -- what the method needs (may depend on the config) -----------------------------------------
    @classmethod
    def validate(cls, cfg) -> None:
        rl = getattr(cfg, "retain_loss", None)
        if rl is not None and rl not in RETAIN_LOSSES:
            raise ObliviateError(f"method {cls.name}: retain_loss={rl!r}; valid: {', '.join(RETAIN_LOSSES)}")
        for name in ("alpha", "gamma", *cls.non_negative):  # alpha / gamma where the method has them
            v = getattr(cfg, name, None)
            if v is not None and v < 0:
                raise ObliviateError(f"method {cls.name}: {name}={v} must be >= 0")
        for name in cls.positive:
            if getattr(cfg, name) <= 0:
                raise ObliviateError(f"method {cls.name}: {name}={getattr(cfg, name)} must be > 0")

    @classmethod
    def needs_retain(cls, cfg) -> bool:
        return cls.retain_term and getattr(cfg, "alpha", 0.0) != 0

    @classmethod
    def reference_kinds(cls, cfg) -> set[str]:
        kinds = {cls.reference} if cls.reference else set()
        if cls.needs_retain(cfg) and getattr(cfg, "retain_loss", "nll") == "kl":
            kinds.add("token")
        return kinds

    @classmethod
    def metadata(cls) -> dict:
        cfg = cls.Config()
        kinds = cls.reference_kinds(cfg)
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "description": doc[0] if doc else cls.name,
            "needs_reference": bool(kinds),
            "reference": sorted(kinds)[0] if len(kinds) == 1 else (sorted(kinds) or None),
            "needs_retain": cls.needs_retain(cfg),
            # needs_reference / reference / needs_retain describe the default options; retain_loss=kl adds a
            # token-level reference (a frozen copy, or the LoRA base with adapters disabled)
            "reference_with_retain_loss_kl": (sorted(kinds | {"token"}) if any(
                f.name == "retain_loss" for f in dataclasses.fields(cls.Config)) else None),
            "level": cls.level,
            "paper": cls.paper,
            "arxiv": cls.arxiv,
            "options": {f.name: f.default for f in dataclasses.fields(cls.Config)},
            "train_defaults": dict(cls.train_defaults),
        }

    # -- hooks -------------------------------------------------------------------------------------
    def prepare(self, model) -> None:
        """Called once before training (RMU chooses its trainable parameters here)."""

    def check_forget(self, forget: list) -> None:
        """Called once with the encoded forget set (``Encoded`` rows) before training: a method whose options
        can leave it nothing to train on says so (CE-U's ``ignore_first``)."""

    def on_step_end(self, step: int) -> None:
        """Called after each optimiser step (``step`` counts from 1): PDU's dual update."""

    def extra_state(self) -> dict:
        """Values worth logging in run.json at the end (PDU's dual variable)."""
        return {}

    def state_dict(self) -> dict:
        """What the method changes while it trains (PDU's dual variable); saved in the per-epoch checkpoint
        so that ``--resume`` continues exactly where the run stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (from a checkpoint)."""

    # -- the loss ----------------------------------------------------------------------------------
    def forget_loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def retain_loss(self, model, batch: dict) -> tuple[torch.Tensor | None, dict]:
        """``alpha * L_retain`` on ``batch["retain"]`` (NLL or KL to the reference), or None."""
        if not self.needs_retain(self.cfg):
            return None, {}
        r = retain_term(model, batch["retain"], self.cfg.retain_loss, self.refs.token)
        return self.cfg.alpha * r, {"retain": r.detach().item()}

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        f, logs = self.forget_loss(model, batch)
        r, rlogs = self.retain_loss(model, batch)
        logs = {**logs, **rlogs}
        loss = f if r is None else f + r
        return loss, logs


class SplitBackward:
    """A method's step that back-propagates the forget term before the retain term is computed.

    ``(forget + retain).backward()`` keeps the computation graphs of both batches (every saved activation
    of the forget pass and of the retain pass) alive at once; two backward passes accumulate the same
    gradient with one graph alive at a time, which lowers the activation peak of methods with a retain
    term. Only for methods that use :class:`Method`'s own ``__call__`` (the sum of the two terms)."""

    does_backward = True  # train() passes backward=accelerator.backward

    def __init__(self, method: Method):
        self.method = method

    @staticmethod
    def applies(method) -> bool:
        return isinstance(method, Method) and type(method).__call__ is Method.__call__ and \
            method.needs_retain(method.cfg)

    def __call__(self, model, batch: dict, backward):
        f, logs = self.method.forget_loss(model, batch)
        if not torch.isfinite(f):
            return f.detach(), logs  # train() stops before the optimiser step and names the term
        backward(f)
        r, rlogs = self.method.retain_loss(model, batch)
        logs = {**logs, **rlogs}
        if r is None:
            return f.detach(), logs
        if torch.isfinite(r):
            backward(r)
        return f.detach() + r.detach(), logs


def register(cls):
    """Register a method class in :data:`obliviate.registry.METHODS` with its metadata."""
    METHODS.register(cls.name, **cls.metadata())(cls)
    return cls


def get_method(name: str) -> type[Method]:
    return METHODS.get(name).obj
