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
