"""A trial's memory, measured in its own process.

- Resident memory: the kernel's high-water mark of the process (``VmHWM``), reset at the trial's
  start by writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0). Ray reuses a worker process
  for several trials, so without the reset a trial would inherit the peaks of those before it.
  Where the reset is refused, the process's lifetime peak (``ru_maxrss``) stands in, and
  ``reset_peak`` says so by returning False.
- Between trials, ``release_freed`` hands the allocator's freed pages back to the OS
  (glibc's ``malloc_trim``): torch's CPU tensors come from malloc, and a reused worker otherwise
  keeps the previous trial's fragmented heap resident.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import resource
import sys

_STATUS, _CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
_reset_ok = False


def _status_kb(key: str) -> float:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def reset_peak() -> bool:
    """Start a new resident high-water mark for this process; False where the kernel refuses."""
    global _reset_ok
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        _reset_ok = True
    except OSError:
        _reset_ok = False
    return _reset_ok


def resident_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_resident_mb() -> float:
    """The process's peak resident memory since ``reset_peak`` (its lifetime peak where that failed)."""
    hwm = _status_kb("VmHWM")
    if _reset_ok and not math.isnan(hwm):
        return hwm / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def release_freed() -> None:
    """Return freed heap pages to the OS (glibc only; elsewhere nothing to do)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # musl has no malloc_trim
        pass
