"""A progress display on the driver: one line per trial event, readable in a terminal and in CI
logs alike, with a running count."""
from __future__ import annotations

import time
from pathlib import Path

from ray import tune
from rich.console import Console


class Progress(tune.Callback):
    def __init__(self, total: int, console: Console | None = None) -> None:
        self.total = total
        # trial id -> "finished" | "failed": a trial Tune runs again after a resume (it had ended
        # after Tune's last saved state) is counted once, by its latest outcome
        self.ended: dict[str, str] = {}
        self._console = console
        self.started: dict[str, float] = {}

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def __getstate__(self) -> dict:
        # Tune pickles callbacks into its experiment state; a console holds locks and streams.
        return self.__dict__ | {"_console": None}

    def _name(self, trial) -> str:
        return trial.custom_trial_name or str(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.monotonic()
        self.console.print(f"[dim]▶ start[/] {self._name(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.console.print(
            f"[dim]  eval [/]{self._name(trial)} step {result.get('step', '?')} "
            f"epoch {result.get('epoch', 0):.1f}  dev_score {result.get('dev_score', float('nan')):.4f}  "
            f"best {result.get('best_dev_score', float('nan')):.4f}  loss {result.get('train_loss', float('nan')):.4f}"
        )

    @property
    def done(self) -> int:
        return sum(v == "finished" for v in self.ended.values())

    @property
    def failed(self) -> int:
        return sum(v == "failed" for v in self.ended.values())

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = "finished"
        best = (trial.last_result or {}).get("best_dev_score", float("nan"))
        self.console.print(f"[green]✓ [{len(self.ended)}/{self.total}][/] {self._name(trial)} "
                           f"best dev_score {best:.4f} ({self._elapsed(trial)})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = "failed"
        self.console.print(f"[red]✗ [{len(self.ended)}/{self.total}][/] {self._name(trial)} failed: "
                           f"{_last_error_line(trial)} ({self._elapsed(trial)})")

    def _elapsed(self, trial) -> str:
        return f"{time.monotonic() - self.started.get(trial.trial_id, time.monotonic()):.0f}s"


def _last_error_line(trial) -> str:
    try:
        from search.uris import redact

        lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
        return redact(lines[-1][:300])
    except Exception:  # the error file is best-effort display only
        return "see the trial's error file"
