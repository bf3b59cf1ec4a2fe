"""A trial's memory figures (trainers/memory.py) in a real process: the resident peak restarts
at each trial, so a reused Ray worker does not pass one trial's peak on to the next."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from tests.trainers.test_loop import trial
from trainers.loop import train

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


def test_the_peak_restarts_after_a_big_allocation_is_freed():
    code = textwrap.dedent("""
        import numpy as np
        from trainers import memory
        a = np.ones(400 * 2**20 // 8); del a           # 400 MB touched, then freed
        before = memory.peak_resident_mb()
        assert memory.reset_peak()
        memory.release_freed()
        after = memory.peak_resident_mb()
        b = np.ones(100 * 2**20 // 8)
        print(before, after, memory.peak_resident_mb())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, later = map(float, out)
    assert before > 400 and after < before - 300  # the freed 400 MB no longer counts
    assert later >= after + 90  # a new allocation raises the new peak


def test_a_trial_reports_its_peak_memory_and_inference_time(tiny_bert, data_dir):
    r = train(trial(tiny_bert, data_dir, max_epochs=1, max_train_examples=16, max_eval_examples=16))
    assert 50 < r.peak_rss_mb < 4000  # torch alone is a few hundred MB resident
    assert math.isnan(r.peak_gpu_mb)  # CPU only here
    assert 0 < r.inference_ms_per_example < 1000


# ---- resources.malloc: lean (trainers/memory.py: worker_env) ----------------------------------------
_FRAGMENT = textwrap.dedent("""
    import ctypes
    from trainers import memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(3 << 20))  # a freed 3 MB map: glibc's default raises its threshold to 3 MB
    blocks, pins = [], []
    for _ in range(100):  # 300 MB of 3 MB blocks, each pinned below the next by a small live block
        b = libc.malloc(3 << 20)
        ctypes.memset(b, 1, 3 << 20)
        blocks.append(b)
        pins.append(libc.malloc(64))
    before = memory.resident_mb()
    for b in blocks:
        libc.free(b)
    print(before - memory.resident_mb(), memory.allocator_tag())
""")


def _fragment(env: dict[str, str]) -> tuple[float, str]:
    import os

    clean = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _FRAGMENT], capture_output=True, text=True, check=True,
                         env=clean | env).stdout.split(maxsplit=1)
    return float(out[0]), out[1].strip()


def test_lean_malloc_hands_freed_blocks_back_where_the_default_keeps_them_resident():
    from trainers.memory import worker_env

    kept_default, tag_default = _fragment({})
    released_lean, tag_lean = _fragment(worker_env("lean", environ={}))
    assert kept_default < 50, kept_default  # glibc's heap holds the freed blocks (the fragmentation)
    assert released_lean > 250, released_lean  # mapped blocks go back to the OS when freed
    assert tag_default == "default"
    assert "MALLOC_MMAP_THRESHOLD_=2097152" in tag_lean and "glibc.malloc.hugetlb=1" in tag_lean


def test_worker_env_keeps_what_the_user_set():
    from trainers.memory import LEAN_ENV, worker_env

    assert worker_env("default", environ={}) == {}
    assert worker_env("lean", environ={}) == LEAN_ENV
    mine = {"MALLOC_MMAP_THRESHOLD_": "131072", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_env("lean", environ=mine) == {}  # the user's settings stand; none is added to them
    only_tunables = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_env("lean", environ=only_tunables) == {"MALLOC_MMAP_THRESHOLD_": "2097152"}
