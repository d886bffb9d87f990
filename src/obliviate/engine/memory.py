"""The C heap under PyTorch's CPU tensors: which allocator serves it, and giving freed memory back.

PyTorch's CPU tensors live on the C heap (``posix_memalign``). Two things follow.

* **Training under glibc fragments.** A training step allocates and frees thousands of 1-4 MB activation
  blocks at 64-byte alignment. glibc 2.36's ``memalign`` asks for size + alignment + a header, so a freed
  block rarely fits the next request of the same size; new blocks come from fresh heap and the freed ones
  pile up. On SmolLM2-135M (NPO, LoRA, gradient checkpointing, batch 8) the heap held 0.2 GB of tensors
  and 0.8 GB of free but unusable blocks: 2.0 GB peak RSS instead of 1.2 GB. tcmalloc has no such
  problem and is as fast or faster (PyTorch's own CPU tuning guide recommends it), so ``obliviate
  finetune`` and ``obliviate unlearn`` run themselves under tcmalloc when the library is installed
  (:func:`use_tcmalloc`; Debian: ``libtcmalloc-minimal4``, which ``make setup`` installs when it can).
  Evaluation keeps glibc: it does not fragment that way (phases release memory in between) and its peak
  was ~0.1 GB lower on glibc (1.43 vs 1.53 GB, same time). ``OBLIVIATE_MALLOC=system`` keeps the system
  allocator; ``OBLIVIATE_MALLOC=tcmalloc`` makes a missing library an error.
* **Freed memory is kept for reuse.** After a phase that allocated many vocabulary-sized temporaries
  (scoring), the process stays at its high-water mark and the next phase (generation's KV buffers) adds
  to it. :func:`release_memory` returns the free pages (``malloc_trim(0)`` under glibc,
  ``MallocExtension_ReleaseFreeMemory`` under tcmalloc); it costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import sys
import sysconfig

ENV = "OBLIVIATE_MALLOC"  # auto (default) | tcmalloc | system
_REEXEC_MARK = "_OBLIVIATE_MALLOC_REEXEC"
_ARGV0 = "_OBLIVIATE_ARGV0"  # the command's own argv[0], restored after the re-execution
_TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")



def _lib_dirs() -> list[str]:
    """Library folders of this machine's architecture (a library of another one would only make ld.so warn)."""
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{arch}", f"/lib/{arch}"] if arch else []
    return dirs + ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"]


@functools.cache
def _cdll(name: str | None):
    """A loaded library, or None. ``None`` as the name: the whole process (the executable, libc and any
    preloaded library; Windows has no such handle); ``"c"``: the system C library itself."""
    if name is not None:
        name = ctypes.util.find_library(name)
        if not name:
            return None
    try:
        return ctypes.CDLL(name)
    except (OSError, TypeError):
        return None


def allocator() -> str:
    """The allocator serving ``malloc`` in this process: ``tcmalloc``, ``jemalloc``, ``glibc`` or ``other``
    (another preloaded allocator, or another C library)."""
    lib = _cdll(None)
    if not lib:
        return "other"
    if hasattr(lib, "MallocExtension_ReleaseFreeMemory"):
        return "tcmalloc"
    if hasattr(lib, "mallctl"):
        return "jemalloc"
    libc = _cdll("c")
    if not (libc and hasattr(lib, "malloc") and hasattr(libc, "malloc")):
        return "other"
    if ctypes.cast(lib.malloc, ctypes.c_void_p).value != ctypes.cast(libc.malloc, ctypes.c_void_p).value:
        return "other"  # something preloaded serves malloc (mimalloc, Hoard...)
    return "glibc" if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "malloc_trim") else "other"


def find_tcmalloc() -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    for d in _lib_dirs():
        for name in _TCMALLOC_NAMES:
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    return None


class AllocatorError(RuntimeError):
    pass


def use_tcmalloc(argv: list[str], module: str = "obliviate.cli") -> None:
    """Re-execute ``python -m module argv...`` with tcmalloc preloaded, unless ``OBLIVIATE_MALLOC=system``,
    the process already runs on a non-glibc allocator, this is not Linux, or no tcmalloc is installed
    (then nothing happens, except under ``OBLIVIATE_MALLOC=tcmalloc``: :class:`AllocatorError`). Call it
    before anything heavy is imported; it returns only when no re-execution happens. The new process runs
    with ``-P`` (the working folder does not shadow modules, as with the console script), keeps ``-W`` and
    ``-X`` options, and gets the command's own ``argv[0]`` back (it goes to ``run.json``)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "tcmalloc", "system"):
        raise AllocatorError(f"{ENV}={os.environ[ENV]!r}: expected auto, tcmalloc or system")
    again = os.environ.pop(_REEXEC_MARK, None)  # not passed on: a child process decides for itself
    argv0 = os.environ.pop(_ARGV0, None)
    if again and argv0:
        sys.argv[0] = argv0
    if choice == "system":
        return
    if not sys.platform.startswith("linux"):
        if choice == "tcmalloc":
            raise AllocatorError(f"{ENV}=tcmalloc: preloading tcmalloc is supported on Linux only")
        return
    if again or allocator() != "glibc":  # done already, or the user preloaded one
        if choice == "tcmalloc" and allocator() != "tcmalloc":
            raise AllocatorError(f"{ENV}=tcmalloc: tcmalloc did not load (LD_PRELOAD={os.environ.get('LD_PRELOAD')!r})")
        return
    lib = find_tcmalloc()
    if lib is None:
        if choice == "tcmalloc":
            raise AllocatorError(f"{ENV}=tcmalloc: no tcmalloc library found (Debian/Ubuntu: apt-get install "
                                 f"libtcmalloc-minimal4)")
        return
    env = preload_env(lib)
    env[_REEXEC_MARK] = "1"
    env[_ARGV0] = sys.argv[0]
    flags = [f"-W{w}" for w in sys.warnoptions]
    flags += [f"-X{k}" if v is True else f"-X{k}={v}" for k, v in getattr(sys, "_xoptions", {}).items()]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-P", *flags, "-m", module, *argv], env)


def preload_env(lib: str, env: dict | None = None) -> dict:
    """A copy of ``env`` (default: this process's) with ``lib`` first in ``LD_PRELOAD``."""
    env = dict(os.environ if env is None else env)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    return env


def release_memory() -> None:
    """Collect garbage, then give the allocator's free pages back to the operating system."""
    gc.collect()
    kind = allocator()
    if kind == "tcmalloc":
        _cdll(None).MallocExtension_ReleaseFreeMemory()
    elif kind == "glibc":
        _cdll("c").malloc_trim(0)
