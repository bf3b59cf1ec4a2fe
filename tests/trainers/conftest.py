import pytest


class Recorder:
    """A trainers.loop.Reporter that keeps what the loop reports."""

    def __init__(self):
        self.info, self.evals = None, []

    def on_start(self, info):
        self.info = info

    def on_eval(self, *, step, metrics):
        self.evals.append((step, metrics))


@pytest.fixture
def recorder():
    return Recorder
