"""An artefact downloaded from someone's MLflow cannot run code when it is loaded: torch.load
with weights_only=True refuses anything but tensors and plain containers."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from trainers.artefact import META, STATE, load_artefact


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_an_artefact_that_would_run_code_is_refused(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / STATE).write_bytes(pickle.dumps({"head.weight": _RunsCode()}))
    torch.save({"x": _RunsCode()}, tmp_path / STATE)
    (tmp_path / META).write_text(json.dumps({"backbone": tiny_bert, "head_size": 2, "method": "bitfit",
                                             "method_params": {}, "task": "rte"}))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_artefact(tmp_path)
    assert not (tmp_path / "PWNED").exists()
