"""Keeping a streaming process's memory flat: glibc's malloc raises its mmap threshold each time a large block is
freed, so after a few chunks every chunk-sized array (megabytes) comes from the heap instead of mmap, and the heap
fragments and grows with the number of chunks. Fixing the threshold at 128 KiB keeps large arrays on mmap, returned
to the system when freed. Measured on a 1,000,000-row streamed scoring pass: peak RSS 998 MB -> 644 MB."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_large_blocks_off_the_heap() -> bool:
    """Fix glibc's mmap threshold for this process; False (nothing changed) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
