"""Give freed heap memory back to the operating system between the phases of a long job.

PyTorch's CPU tensors live on the C heap. glibc keeps freed blocks of the heap for reuse, so after a
phase that allocated many vocabulary-sized temporaries (scoring) the process stays at its high-water
mark, and the next phase (generation's KV buffers) adds to it. ``malloc_trim(0)`` returns the free
pages; it costs a few milliseconds. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_libc = None


def release_memory() -> None:
    global _libc
    gc.collect()
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
