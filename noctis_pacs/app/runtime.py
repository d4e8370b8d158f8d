"""Process-wide tuning of a long-running server process, applied once it has started.

- ``gc.freeze()``: the objects made at start-up (pydicom's and pynetdicom's tables,
  the supported presentation contexts, compiled SQL, the application) move to the
  collector's permanent generation, so a full collection does not walk them again:
  under C-STORE load the cyclic collector otherwise spends most of its time on
  objects that never die.
- glibc's allocator keeps blocks of up to ``MMAP_THRESHOLD`` in its heap and trims
  the heap only past ``TRIM_THRESHOLD``. With its adaptive defaults a received data
  set's half-megabyte buffers are mapped fresh and returned to the kernel per
  instance, and the first touch of fresh pages is dear on a virtual machine; the
  thresholds set here keep such buffers in the heap. Elsewhere than glibc nothing is
  changed.

What each costs without the tuning: docs/performance.md, "Measurements behind the
code".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import platform

log = logging.getLogger("noctis.runtime")

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (a received data set is held in memory up
#: to 1 MiB, see ``storage.blobstore.SMALL_BLOB``).
MMAP_THRESHOLD = 4 << 20
#: Free memory at the top of the heap kept for reuse before it is returned.
TRIM_THRESHOLD = 32 << 20


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds; False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done)
    except (OSError, AttributeError):
        return False


def settle() -> None:
    """Call once a server process has built everything it keeps (see the module)."""
    gc.collect()
    gc.freeze()
    tuned = tune_allocator()
    log.debug("start-up objects frozen; allocator thresholds %s", "set" if tuned else "unchanged")
