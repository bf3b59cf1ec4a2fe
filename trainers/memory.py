"""A trial's memory, measured in its own process.

- Resident memory: the kernel's high-water mark of the process (``VmHWM``), reset at the trial's
  start by writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0). Ray reuses a worker process
  for several trials, so without the reset a trial would inherit the peaks of those before it.
  Where the reset is refused, the process's lifetime peak (``ru_maxrss``) stands in, and
  ``reset_peak`` says so by returning False.
- Between trials, ``release_freed`` hands the allocator's freed pages back to the OS
  (glibc's ``malloc_trim``): torch's CPU tensors come from malloc, and a reused worker otherwise
  keeps the previous trial's fragmented heap resident.
- Within a trial, ``worker_env`` keeps glibc's heap from growing past what training holds.
  By default glibc serves a freed block's size from its heap from then on (its mmap threshold
  rises up to 32 MB), and a training step's heap fragments: for the demo's MiniLM finetune
  trial, 550-590 MB of free heap stayed resident at the peak (mallinfo2). With
  ``resources.malloc: lean`` each trial worker starts with the threshold fixed at 2 MB
  (MALLOC_MMAP_THRESHOLD_), so activation-sized blocks are mapped and handed back when freed,
  and with glibc.malloc.hugetlb=1, so those maps use transparent huge pages (fewer faults).
  Measured on the demo trial: peak 1.57-1.62 GB -> 1.23 GB in-process, 1.67 -> 1.32 GB under
  Ray, for 10-15% more time per finetune trial and up to 30% per prompt-tuning trial (each
  freed block is mapped afresh, and the kernel zeroes it). ``default`` (the default) leaves the
  allocator alone. glibc reads these at process start only, so they go into the environment
  Ray starts its workers with; other C libraries ignore them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import resource
import sys

_STATUS, _CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
LEAN_ENV = {"MALLOC_MMAP_THRESHOLD_": "2097152", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
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


def worker_env(malloc: str, environ=None) -> dict[str, str]:
    """The environment variables a trial worker starts with for ``resources.malloc``: for lean,
    MALLOC_MMAP_THRESHOLD_ and GLIBC_TUNABLES=glibc.malloc.hugetlb=1, each unless the user set
    that variable already; nothing for default, or off Linux.

    The threshold goes in glibc's older variable, not in GLIBC_TUNABLES, because a process
    passes only the first of several tunables on to the programs it runs (seen with Debian's
    glibc 2.36: `ld.so --list-tunables` applies both, /proc/self/environ keeps the first), and
    Ray starts a worker through bash."""
    environ = os.environ if environ is None else environ
    if malloc != "lean" or not sys.platform.startswith("linux"):
        return {}
    return {k: v for k, v in LEAN_ENV.items() if k not in environ}


def allocator_tag() -> str:
    """The allocator settings this process started with (its initial environment, which glibc
    read), for the trial's provenance tags: "default" where there were none."""
    try:
        with open("/proc/self/environ", "rb") as f:
            start = dict(e.decode(errors="replace").split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        start = os.environ
    given = [f"{k}={start[k]}" for k in sorted(start) if k == "GLIBC_TUNABLES" or k.startswith("MALLOC_")]
    return " ".join(given) or "default"
