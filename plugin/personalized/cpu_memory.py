"""Keep freed CPU memory for reuse instead of handing it back to the system at once.

An update on the CPU creates temporaries of a few MiB each (one per elementwise
operation in eager mode, fewer when compiled). With glibc's default settings the
memory of such temporaries goes back to the system when they are freed, and the
next step pays a page fault for every 4 KiB it touches again: on a 2-CPU machine
that made an eager FCompass step 2.5 times slower. Building an optimizer of this
package with parameters on the CPU therefore raises glibc's trim threshold, so that
up to :data:`KEEP_BYTES` of freed memory stays in the process for the next
temporaries, and fixes the mmap threshold at glibc's own upper limit (what glibc's
dynamic threshold reaches anyway once a few MiB-sized blocks were freed). This is
the trade PyTorch's CUDA caching allocator makes for GPU memory; here it costs at
most 128 MiB of resident memory.

It is process-wide and happens once: in the constructor of the first optimizer
given CPU parameters (:class:`personalized.base.PersonalizedOptimizer` calls
:func:`keep_freed_memory`), never on import and never in a step; an optimizer
whose parameters are all on a GPU leaves the process alone. Only on Linux with
glibc (elsewhere, and under jemalloc or tcmalloc, nothing changes).
``PERSONALIZED_KEEP_FREED_MEMORY=0`` in the environment turns it off; it is read
at that first construction.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: Freed memory glibc keeps at the top of the heap before returning it to the system.
KEEP_BYTES = 128 << 20
#: Blocks at least this large are mapped and unmapped on their own (glibc's largest default).
MMAP_THRESHOLD = 32 << 20
#: The environment variable that turns the setting off (``0``).
OPT_OUT = "PERSONALIZED_KEEP_FREED_MEMORY"

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the setting once per process (later calls change nothing); return whether it is in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
