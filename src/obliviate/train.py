"""The one training loop (fine-tuning and unlearning), built on accelerate. Read it top to bottom.

A *step function* ``loss_fn(model, batch) -> (loss, logs)`` says what is optimised; the loop owns
everything else: AdamW, linear warm-up/decay, gradient accumulation (groups of ``grad_accum`` micro-batches
that restart every epoch, so an epoch is always ``ceil(batches / grad_accum)`` optimiser steps and a resumed
run steps like an uninterrupted one), progress bar, per-epoch checkpoints with ``resume``, and a guard
against non-finite losses.

Several processes (``accelerate launch --multi_gpu --num_processes N``, docs/distributed.md): ``cfg.batch_size``
stays the *global* batch of an optimiser step; each process trains on its contiguous block of batch/N rows of
every batch (``batches.epoch(e, rank=, world=)``), its losses are means over the global batch
(:func:`obliviate.runtime.dist.mean`), and the gradients are averaged over the processes before clipping and
the step (one flat all-reduce, :func:`~obliviate.runtime.dist.average_gradients`: the model is not wrapped,
so the chunked LM head and RMU's layer hook, which call the decoder body directly, need nothing special).
So N processes take the steps one process takes, to float rounding. Only the main process writes checkpoints
and prints.

A step function whose attribute ``does_backward`` is true runs its own backward passes (sharpness-aware
unlearning takes the forget gradient at perturbed weights and the retain gradient at the clean ones):
it is called as ``loss_fn(model, batch, backward=...)`` (accelerate's backward of ``loss / group size``) and
returns a detached loss
for the log. ``on_step_end(step, model)`` runs after every optimiser step (weight averaging).

Precision: give it float32 trainable weights (``TRAIN_DTYPE``; a warning otherwise); on CUDA each loss call
runs under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import torch

from .data.formatting import Encoded, collate
from .engine.forward import answer_token_logprobs
from .config import TrainConfig  # noqa: F401  (defined with its flags in config.py; imported from here too)
from .errors import ObliviateError
from .io import atomic_write_json, read_json
from .runtime import dist
from .runtime.progress import progress_bar

# Training keeps float32 master weights on every device (on CUDA the loss runs in bf16 under autocast):
# pure-bf16 weights would round away AdamW updates at the usual lr of 1e-5 and SAM / smoothing perturbations.
TRAIN_DTYPE = torch.float32


def train_autocast(device):
    """The precision every training-time forward runs in (the step, and the reference cache built before it):
    bf16 autocast on CUDA where supported, plain float32 elsewhere."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random, mega: int = 50) -> list[list[int]]:
    """Shuffle, then sort by length inside mega-batches of ``mega * batch_size`` items, then shuffle the
    batches: little padding, still random (the HF ``group_by_length`` idea)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    size = mega * batch_size
    batches = []
    for s in range(0, len(idx), size):
        chunk = sorted(idx[s : s + size], key=lambda i: -lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def nll_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """Mean NLL over the answer tokens of the batch (labels != -100): the fine-tuning objective."""
    lp, _, _ = answer_token_logprobs(model, batch)
    loss = -dist.mean(lp)  # over the global batch's answer tokens (lp.mean() with one process)
    return loss, {"nll": loss.detach().item()}


class EncodedBatches:
    """Epoch iterator of length-grouped, right-padded batches of encoded items."""

    def __init__(self, encoded: list[Encoded], batch_size: int, pad_id: int, seed: int):
        self.encoded, self.batch_size, self.pad_id, self.seed = encoded, batch_size, pad_id, seed
        self.lengths = [len(e) for e in encoded]

    def __len__(self) -> int:
        return math.ceil(len(self.encoded) / self.batch_size)

    def plan(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.lengths, self.batch_size, random.Random(self.seed * 1000003 + epoch))

    def epoch(self, epoch: int, rank: int = 0, world: int = 1) -> Iterable[dict]:
        """The batches of ``epoch``; with ``world`` processes, process ``rank``'s rows of each."""
        for b in self.plan(epoch):
            b = b[dist.split_rows(len(b), rank, world)]
            yield collate([self.encoded[i] for i in b], self.pad_id)


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch


def apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if isinstance(hidden, int) and cfg.lora_r > hidden:
        raise ObliviateError(f"--lora-r {cfg.lora_r} is larger than the model's hidden size {hidden}: a rank "
                             f"above a layer's smaller side adds parameters and nothing else; give at most {hidden}")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear",
                      lora_dropout=0.0, task_type="CAUSAL_LM")
    # The adapters' A matrices start random: drawn from --seed, not from the process's unseeded generator (which
    # differs between runs and between the processes of one run), and without moving the caller's generator.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        torch.manual_seed(cfg.seed)
        return get_peft_model(model, lcfg)


def fused_adamw_supported(params) -> bool:
    """The fused AdamW kernel (one pass over each tensor) where torch has it: floating parameters on CPU or
    CUDA. torch's default multi-tensor path allocates parameter-sized temporaries at every step (+540 MB for
    SmolLM2-135M in fp32) and is slower: 0.77 s vs 0.07 s for a bare step over 135M fp32 parameters on the
    2-core CPU; ~0.11 s per training step less in ``benchmarks/bench_train.py``."""
    return all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)


def _transformers_model(model):
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def enable_grad_checkpointing(model) -> None:
    """Keep only each decoder layer's input during the forward pass and recompute the layer in backward
    (non-reentrant ``torch.utils.checkpoint``): activation memory drops from every layer's intermediates to
    one tensor per layer, for one more forward pass per step. Gradients are unchanged."""
    base = _transformers_model(model)
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ObliviateError(f"--grad-checkpointing: {type(base).__name__} does not support gradient checkpointing")
    kw = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def disable_grad_checkpointing(model) -> None:
    base = _transformers_model(model)
    (getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable)()


def _save_checkpoint(ckpt_root: Path, epoch: int, model, optimizer, scheduler, state: dict,
                     extra: dict | None = None) -> None:
    final = ckpt_root / f"epoch-{epoch}"
    tmp = ckpt_root / f".epoch-{epoch}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}
    torch.save(
        {"params": trainable, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "torch_rng": torch.get_rng_state(), "extra": extra},
        tmp / "state.pt",
    )
    atomic_write_json(tmp / "trainer_state.json", {**state, "epoch": epoch})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    # keep only the newest: AdamW state is 2x the trainable weights (plus --select's best / the weight average)
    for old in ckpt_root.glob("epoch-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def check_resume_epochs(out_dir, cfg: TrainConfig) -> Path:
    """For ``--resume``: the newest checkpoint, which must be from an epoch within this run's ``--epochs``."""
    ck = latest_checkpoint(Path(out_dir))
    if ck is None:
        raise ObliviateError(f"--resume: no checkpoint in {out_dir}/checkpoints")
    done = int(ck.name.split("-")[1]) + 1
    if done > cfg.epochs:
        raise ObliviateError(f"--resume: the checkpoint in {out_dir} holds {done} epochs, more than --epochs "
                             f"{cfg.epochs}; give --epochs {done} to write the model it holds, more to train "
                             f"further, or start again in a new --out")
    return ck


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted((out_dir / "checkpoints").glob("epoch-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def train(
    model,
    batches,
    loss_fn: Callable = nll_loss,
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable | None = None,
    desc: str = "train",
    on_step_end: Callable | None = None,
    extra_state=None,
    on_history: Callable | None = None,
) -> dict:
    """Optimise ``loss_fn`` over ``batches.epoch(e)`` for ``cfg.epochs`` epochs. Returns a history dict.

    ``batches`` needs ``__len__`` (batches per epoch) and ``epoch(e)`` (an iterable of batch dicts).
    ``on_epoch_end(epoch, model)`` may return a dict that is stored in the history (e.g. evaluation).
    ``on_step_end(step, model)`` is called after each optimiser step (``step`` counts from 1).
    ``extra_state``: an object with ``state_dict()`` / ``load_state_dict(d)`` whose state (whatever else
    changes during training: a dual variable, a noise generator, a running average) goes into every
    per-epoch checkpoint and is restored on ``resume``.
    ``on_history(history)`` is called after each epoch (and its checkpoint) with the history so far, so a
    caller can keep its run record current: a run stopped later still tells which epochs it finished.
    """
    from accelerate import Accelerator

    cfg = cfg or TrainConfig()
    cfg.validate()
    world = dist.world_size()
    if world > 1:
        dist.init()
        check_distributed(batches, loss_fn, cfg, world)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ObliviateError("no trainable parameters")
    half = sorted({str(p.dtype).replace("torch.", "") for p in params if p.dtype in (torch.bfloat16, torch.float16)})
    if half:
        warnings.warn(f"training {'/'.join(half)} parameters directly: an update smaller than half the spacing of "
                      "that format at a weight's value (bf16: ~0.4 % of the weight; lr 1e-5 on a 0.02 weight) is "
                      "rounded away, and so are SAM's and smoothing's perturbations. Load the model in float32 "
                      "(obliviate's finetune / unlearn do; on CUDA they compute in bf16 under autocast)",
                      stacklevel=2)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # accumulation is done here, per epoch
    check_accelerate_mode(accelerator.distributed_type.value)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
        fused=fused_adamw_supported(params),
    )
    steps_per_epoch = math.ceil(len(batches) / cfg.grad_accum)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    warmup = int(cfg.warmup_ratio * total_steps)

    def lr_lambda(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    if cfg.grad_checkpointing:
        enable_grad_checkpointing(model)
    try:
        if world > 1:
            # No DDP wrapper (dist.average_gradients instead), and no accelerate scheduler wrapper, which
            # would step N times per optimiser step (it assumes per-process batches).
            model.to(accelerator.device)
            dist.broadcast_parameters(params)  # every process starts from the main one's weights, as DDP does
        else:
            model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        model.train()

        history = {"epochs": [], "config": asdict(cfg), "steps_per_epoch": steps_per_epoch}
        start_epoch = 0
        out_dir = Path(out_dir) if out_dir else None
        if resume:
            if out_dir is None:
                raise ObliviateError("--resume needs the run's output folder")
            ck = check_resume_epochs(out_dir, cfg)
            state = torch.load(ck / "state.pt", weights_only=False)
            named = dict(accelerator.unwrap_model(model).named_parameters())
            with torch.no_grad():
                for k, v in state["params"].items():
                    named[k].copy_(v)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            # The saved states carry the old peak lr; --lr may change on resume (lowered after a non-finite
            # loss), and --epochs changes the schedule's length: re-derive the lr from this run's settings.
            inner = getattr(scheduler, "scheduler", scheduler)
            inner.base_lrs = [cfg.lr for _ in inner.base_lrs]
            for g in optimizer.param_groups:
                g["initial_lr"] = cfg.lr
                g["lr"] = cfg.lr * lr_lambda(inner.last_epoch)
            inner._last_lr = [g["lr"] for g in optimizer.param_groups]
            torch.set_rng_state(state["torch_rng"])
            if extra_state is not None and state.get("extra") is not None:
                extra_state.load_state_dict(state["extra"])
            elif extra_state is not None:
                print(f"note: {ck} was written before checkpoints kept the run's extra state; a method's own "
                      "state (PDU's lambda), the smoothing noise, the weight average and the best epoch so far "
                      "restart", file=sys.stderr)
            saved = read_json(ck / "trainer_state.json")
            history = {**saved.get("history", history), "config": asdict(cfg)}  # this run's settings (--epochs, --lr)
            start_epoch = saved["epoch"] + 1

        if on_epoch_end is not None and start_epoch == 0:
            model.eval()
            r = on_epoch_end(-1, accelerator.unwrap_model(model))
            model.train()
            if r is not None:
                history["initial"] = r

        t_start = time.time()
        last_logs: dict = {}
        own_backward = bool(getattr(loss_fn, "does_backward", False))
        opt_step = start_epoch * steps_per_epoch
        shard = {"rank": dist.rank(), "world": world} if world > 1 else {}
        for epoch in range(start_epoch, cfg.epochs):
            t_ep = time.time()
            total, count, tokens = 0.0, 0, 0
            bar = progress_bar(batches.epoch(epoch, **shard), total=len(batches),
                               desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress, line=False)
            n_batches = len(batches)
            for step, batch in enumerate(bar):
                batch = _to(batch, accelerator.device)
                # Accumulation groups of grad_accum micro-batches, restarted every epoch; the last group of an
                # epoch may be shorter. Each micro-batch's loss is divided by its group's size (the group's mean).
                first = step - step % cfg.grad_accum
                group = min(cfg.grad_accum, n_batches - first)
                sync = step == first + group - 1 or step == n_batches - 1

                def backward(t, _g=group):
                    accelerator.backward(t / _g)

                with contextlib.nullcontext() if sync or world > 1 else accelerator.no_sync(model), \
                        train_autocast(accelerator.device):
                    if own_backward:
                        loss, logs = loss_fn(model, batch, backward=backward)
                    else:
                        loss, logs = loss_fn(model, batch)
                    if not _finite_everywhere(loss, world):  # every process stops, not only the one that saw it
                        raise NonFiniteLoss(epoch, step, logs)
                    if not own_backward:
                        backward(loss)
                if sync:
                    dist.average_gradients(params)  # nothing with one process
                    if cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    opt_step += 1
                    if on_step_end is not None:
                        on_step_end(opt_step, accelerator.unwrap_model(model))
                total += loss.item()
                count += 1
                tokens += int(_count_tokens(batch))
                last_logs = logs
                bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.close()
            if world > 1:  # each process's loss is its share of the global mean, times N (dist.mean)
                summed = dist.all_reduce_sum(torch.tensor([total, float(tokens)], dtype=torch.float64,
                                                          device=accelerator.device)).tolist()
                total, tokens = summed[0] / world, int(summed[1])
            ep = {"epoch": epoch, "mean_loss": total / max(count, 1), "seconds": round(time.time() - t_ep, 3),
                  "tokens": tokens, "last_logs": last_logs}
            if on_epoch_end is not None:
                model.eval()
                r = on_epoch_end(epoch, accelerator.unwrap_model(model))
                model.train()
                if r is not None:
                    ep["eval"] = r
            history["epochs"].append(ep)
            if cfg.progress:
                dist.log_on_main(epoch_line(desc, epoch, cfg.epochs, ep, n_batches, time.time() - t_start,
                                            start_epoch))
            if out_dir is not None and cfg.checkpoint_every_epoch and dist.is_main():
                _save_checkpoint(out_dir / "checkpoints", epoch, accelerator.unwrap_model(model), optimizer,
                                 scheduler, {"history": history},
                                 extra_state.state_dict() if extra_state is not None else None)
            if on_history is not None:
                on_history(history)
    finally:  # also when a non-finite loss (or anything else) stops training
        if cfg.grad_checkpointing:
            disable_grad_checkpointing(accelerator.unwrap_model(model))
    history["train_seconds"] = round(time.time() - t_start, 3)
    history["final_loss"] = history["epochs"][-1]["mean_loss"] if history["epochs"] else None
    model.eval()
    return history


def epoch_line(desc: str, epoch: int, epochs: int, ep: dict, n_batches: int, elapsed: float,
               start_epoch: int = 0) -> str:
    """The one line an epoch leaves in the log: its mean loss, time, rate (batches and tokens per second) and
    the ETA of the remaining epochs (at the mean pace of this run's epochs so far)."""
    secs = max(ep["seconds"], 1e-9)
    done = epoch + 1 - start_epoch
    eta = elapsed / max(done, 1) * (epochs - epoch - 1)
    return (f"{desc} epoch {epoch + 1}/{epochs}: mean loss {ep['mean_loss']:.4f} ({ep['seconds']:.1f}s, "
            f"{n_batches / secs:.2f} batches/s, {ep['tokens'] / secs:.0f} tokens/s, ETA {format_duration(eta)})")


def format_duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 07m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    finite = bool(torch.isfinite(loss))
    if world == 1:
        return finite
    return dist.all_reduce_sum(torch.tensor([0.0 if finite else 1.0], device=loss.device)).item() == 0


SHARDED_MODES = ("FSDP", "DEEPSPEED", "MEGATRON_LM")


def check_accelerate_mode(mode: str) -> None:
    """Refuse accelerate's sharded modes (``mode``: its ``distributed_type``, from ``accelerate launch
    --config_file``): the losses call the decoder body and the LM head directly (the chunked head, RMU's layer
    hook), and a sharded model (FSDP, DeepSpeed ZeRO) holds whole weights only inside its own forward."""
    if mode in SHARDED_MODES:
        raise ObliviateError(f"accelerate's {mode} mode is not supported by obliviate's training loop: its losses "
                             "call the decoder body and the LM head directly, and a sharded model holds whole "
                             "weights only inside its own forward; launch with DDP (accelerate launch --multi_gpu, "
                             "docs/distributed.md)")


def check_distributed(batches, loss_fn, cfg: TrainConfig, world: int) -> None:
    """Refuse, before anything is trained, what a run over ``world`` processes cannot do exactly."""
    dist.check_global_batch(cfg.batch_size, world)
    reason = getattr(loss_fn, "single_process_only", None)
    if reason:
        raise ObliviateError(f"{reason}; it runs in one process only (started here with {world}: "
                             "launch without accelerate / torchrun, or drop the option)")
    try:
        params = inspect.signature(batches.epoch).parameters
    except (TypeError, ValueError):
        params = {}
    if not {"rank", "world"} <= set(params):
        raise ObliviateError(f"{type(batches).__name__} cannot split its batches over {world} processes "
                             "(its epoch() takes no rank / world); run one process")
    if hasattr(batches, "plan"):
        smallest = min((len(b) for b in batches.plan(0)), default=world)
        if smallest < world:
            raise ObliviateError(f"the last batch of each epoch has {smallest} rows (the data size modulo "
                                 f"--batch-size {cfg.batch_size}), fewer than the {world} processes, so one would "
                                 "have nothing to train on; choose a --batch-size that leaves at least "
                                 f"{world} rows, or run fewer processes")


def _count_tokens(batch) -> int:
    if "attention_mask" in batch:
        return batch["attention_mask"].sum().item()
    return sum(_count_tokens(v) for v in batch.values() if isinstance(v, dict))


class NonFiniteLoss(ObliviateError):
    def __init__(self, epoch: int, step: int, logs: dict):
        terms = ", ".join(f"{k}={v}" for k, v in logs.items()) or "no per-term logs"
        super().__init__(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({terms}); "
            "the last good checkpoint is kept — lower --lr or check the method's options"
        )
        self.epoch, self.step, self.logs = epoch, step, logs
