"""The driver's running count (search/progress.py) counts each trial once. After a resume, Tune
may run again a trial that had ended after its last saved state; the count must not pass the
total (seen: "✓ [5/4]" after a SIGTERM and resume)."""
from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from search.progress import Progress


def trial(key: str):
    return SimpleNamespace(trial_id=key, custom_trial_name=f"rte-{key}", last_result={"best_dev_score": 0.5},
                           error_file="/nonexistent")


def test_a_trial_that_ends_again_after_a_resume_is_counted_once():
    out = io.StringIO()
    p = Progress(4, Console(file=out, width=200))
    p.ended = {"a": "finished", "b": "finished"}  # what the store says at resume (runner._continue_progress)
    for key in ("b", "c", "d"):  # b had finished after Tune's last snapshot: Tune runs it again
        p.on_trial_start(0, [], trial(key))
        p.on_trial_complete(0, [], trial(key))
    counts = [line.split("[", 1)[1].split("]", 1)[0] for line in out.getvalue().splitlines() if line.startswith("✓")]
    assert counts == ["2/4", "3/4", "4/4"] and (p.done, p.failed) == (4, 0)


def test_a_failed_trial_retried_to_success_counts_as_finished():
    p = Progress(2, Console(file=io.StringIO()))
    p.on_trial_error(0, [], trial("a"))
    assert (p.done, p.failed) == (0, 1)
    p.on_trial_complete(0, [], trial("a"))
    assert (p.done, p.failed) == (1, 0)
