"""Which process am I, and the few collectives a multi-process run needs.

A run started by ``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun --nproc_per_node N``)
is N copies of the same command; the launcher tells each copy its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Everything here also works in a plain single process (no launcher,
no ``torch.distributed``): rank 0 of 1, every collective returns its input. docs/distributed.md has the
command lines.

The rules the rest of obliviate follows:

* **Only the main process (rank 0) writes and prints.** :func:`on_main` runs a function there (emptying
  ``--out``) and hands its result, or its error, to every rank, so all ranks refuse together (a refusal on
  one rank only would leave the others waiting in the next collective until the launcher's timeout).
* **Work is split by** :func:`shard` (items for evaluation, strided) and :func:`split_rows` (the rows of one
  global training batch, contiguous) and put back together with :func:`all_gather`.
* **Means are global.** A loss that is a mean over rows or answer tokens is computed with :func:`mean`: each
  process divides its own sum by the count over *all* processes (times N, because the gradients are then
  averaged over the N processes), so N processes compute the gradient, and log the loss, of the global batch,
  whatever the split: ``sum_r (S_r N / C) / N = S / C``. One process: plain ``x.mean()``.

The process group is created on first use (gloo on CPU, NCCL on CUDA); accelerate's ``Accelerator`` then finds
it initialised and uses it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Sequence, TypeVar

import torch

from ..errors import ObliviateError

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """The number of processes of this run (1 without a launcher)."""
    if _initialised():
        return torch.distributed.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's place among all processes of the run, 0 .. world_size() - 1."""
    if _initialised():
        return torch.distributed.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's place among the processes on this machine (which GPU it uses)."""
    return _env_int("LOCAL_RANK", rank())


def is_main() -> bool:
    """Whether this is the process that writes files and prints (rank 0)."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: its own GPU (``cuda:LOCAL_RANK``) where there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def init() -> bool:
    """Join the launcher's process group if this is a multi-process run and nobody has yet (idempotent).
    Returns whether collectives are live."""
    if _initialised():
        return True
    if world_size() <= 1:
        return False
    if not torch.distributed.is_available():
        raise ObliviateError(f"WORLD_SIZE={world_size()} but this torch has no torch.distributed; "
                             "run one process or install a torch build with distributed support")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device())
    torch.distributed.init_process_group(backend)
    return True


def _live() -> bool:
    return world_size() > 1 and init()


def barrier() -> None:
    """Wait until every process gets here (nothing with one process)."""
    if _live():
        torch.distributed.barrier()


# ------------------------------------------------------------------------------------------- splitting work
def shard_indices(n: int, r: int | None = None, world: int | None = None) -> list[int]:
    """The indices of ``n`` items that process ``r`` handles: strided, item k goes to rank k mod N.
    Strided rather than contiguous because item lists are often ordered by set and by length: every rank
    gets a similar mix, so none waits long for the slowest. The shards are disjoint and cover 0..n-1."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    return list(range(r, n, world))


def shard(items: Sequence[T], r: int | None = None, world: int | None = None) -> list[T]:
    """This process's items of ``items`` (:func:`shard_indices`); all of them with one process."""
    return [items[i] for i in shard_indices(len(items), r, world)]


def split_rows(n: int, r: int | None = None, world: int | None = None) -> slice:
    """The rows of a global batch of ``n`` rows that process ``r`` trains on: a contiguous block,
    the first ``n mod N`` ranks one row more (``n`` divisible by N: ``n / N`` rows each)."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def check_global_batch(batch_size: int, world: int | None = None, flag: str = "--batch-size") -> int:
    """The rows per process of a global batch of ``batch_size``; refuses one that does not divide evenly."""
    world = world_size() if world is None else world
    if batch_size % world:
        lo = batch_size - batch_size % world
        options = " or ".join(str(b) for b in (lo, lo + world) if b > 0)
        raise ObliviateError(f"{flag} {batch_size} is the global batch of each optimiser step and must split "
                             f"evenly over the {world} processes: give {options}")
    return batch_size // world


# ------------------------------------------------------------------------------------------- collectives
def all_gather(obj: T) -> list[T]:
    """Every process's ``obj`` (picklable), in rank order, on every process: ``[obj]`` with one process."""
    if not _live():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """The main process's ``obj`` on every process."""
    if not _live():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``t`` over all processes (a new tensor; ``t`` itself with one process)."""
    if not _live():
        return t
    home = t.device
    # NCCL reduces CUDA tensors only
    t = t.detach().to(device() if torch.distributed.get_backend() == "nccl" else home, copy=True)
    torch.distributed.all_reduce(t)
    return t.to(home)


def on_main(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run by the main process only, its result returned on every process. An
    :class:`ObliviateError` it raises is raised on every process with the same message (so all stop, none
    waits for the others). Anything else is raised on the main process and reported on the others."""
    if not _live():
        return fn(*args, **kwargs)
    msg = None
    result = None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except ObliviateError as e:
            msg = ("user", str(e))
            broadcast(msg)
            raise
        except BaseException as e:
            broadcast(("crash", f"the main process failed: {type(e).__name__}: {e}"))
            raise
        broadcast(("ok", result))
        return result
    kind, value = broadcast(None)
    if kind != "ok":
        raise ObliviateError(value)
    return value


def mean(x: torch.Tensor, empty_zero: bool = False) -> torch.Tensor:
    """The mean of ``x`` over the *global* batch, in the form gradient averaging over processes expects:
    ``x.sum() * N / (number of elements on all N processes)``; ``x.mean()`` with one process. Every process must
    call it at the same point of its step (it holds a collective), also one whose ``x`` is empty (it then adds
    0 with a zero gradient). No element anywhere: NaN like ``x.mean()``, or 0 (with a graph) if ``empty_zero``."""
    if not _live():
        return x.sum() * 0.0 if empty_zero and x.numel() == 0 else x.mean()
    count = all_reduce_sum(torch.tensor([float(x.numel())], device=x.device))[0]
    if count == 0:
        return x.sum() * (0.0 if empty_zero else float("nan"))
    return x.sum() * world_size() / count


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over all processes in place (what DDP's reducer does, in one
    flat all-reduce per dtype after the step's backward passes). Works whatever the forward pass bypassed
    (the chunked LM head, a layer hook, SAM's extra passes): it needs only the ``.grad`` tensors. A parameter
    without a gradient on this process takes part with zeros."""
    if not _live():
        return
    n = world_size()
    by_dtype: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        torch.distributed.all_reduce(flat)
        flat /= n
        offset = 0
        for p in group:
            k = p.grad.numel()
            p.grad.copy_(flat[offset:offset + k].view_as(p.grad))
            offset += k


def broadcast_parameters(params: Sequence[torch.Tensor]) -> None:
    """Copy the main process's values of ``params`` to every process (DDP does this when it wraps a model):
    whatever set them (a random initialisation, a resumed checkpoint), all processes then start equal."""
    if not _live():
        return
    nccl = torch.distributed.get_backend() == "nccl"
    with torch.no_grad():
        for p in params:
            t = p.data.to(device()) if nccl and p.device.type != "cuda" else p.data
            torch.distributed.broadcast(t, src=0)
            if t is not p.data:
                p.data.copy_(t)


# ------------------------------------------------------------------------------------------- output
def print_main(*args, **kwargs) -> None:
    """``print`` on the main process only."""
    if is_main():
        print(*args, **kwargs)


@contextlib.contextmanager
def stdout_on_main():
    """Inside, what is printed to stdout (a command's results) comes from the main process only: the others'
    stdout goes to the null device. Their stderr stays, so an error on any process is seen."""
    if is_main():
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


def log_on_main(message: str) -> None:
    """One line on stderr, from the main process only (notes, progress lines)."""
    if is_main():
        print(message, file=sys.stderr, flush=True)


def describe() -> dict:
    """What run.json records about the processes: their number (and this process's rank)."""
    return {"world_size": world_size()}
