"""Provenance in MLflow, so a result can be traced and rerun:

- each trial's datasets through MLflow's inputs (the UI's Dataset column): name, split as the
  input's context, and a digest of the file read (a hub dataset: its hub id, digest of the name);
- tags with the backbone's file hash (or hub revision), the package versions, the device;
- the git commit of the spec's directory, on the search's parent run;
- saved artefacts as MLflow 3 logged models linked to their run (model outputs);
- the experiment kind that opens MLflow 3's training-runs view.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from functools import lru_cache
from pathlib import Path

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The kind MLflow's own experiment-kind selector writes for a training experiment ("Machine
# learning"; the selector offers it and genai_development). MLflow 3.17's web app does not choose
# its view from it: useExperimentKind (main.*.js, module 31080) returns the kind of the workflow
# switch whenever its feature flag is on, and 3.17 hard-codes that flag to true. The switch is the
# URL's ?workflowType=genai|machine_learning, else the browser's saved choice (localStorage
# mlflow.workflowType_v1, written by the sidebar's "Model training" toggle), else genai. So a bare
# #/experiments/ID opens the GenAI overview in a fresh browser whatever this tag says
# (tests/tracking/test_experiment_view.py), and peftsearch prints training_runs_path's link.
EXPERIMENT_KIND = "custom_model_development"
TRAINING_VIEW = "workflowType=machine_learning"


def training_runs_path(experiment_id: str) -> str:
    """The path, after an MLflow server's URL, of an experiment's training runs table: the
    workflowType parameter opens MLflow 3's "Model training" view in any browser."""
    return f"#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"
PACKAGES = ("torch", "transformers", "peft", "ray", "mlflow", "peftsearch")
WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt")


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)  # cached per process, per version of the file


def backbone_hash(resolved: str) -> str:
    """sha256 over the backbone directory's config, weights and tokenizer files; a hub id is its
    own best reference (its revision is resolved by the hub at load time)."""
    root = Path(resolved)
    if not root.is_dir():
        return f"hub:{resolved}"
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        if (root / name).is_file():
            h.update(f"{name}:{file_digest(root / name)}".encode())
    return "sha256:" + h.hexdigest()[:16]


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def trial_tags(cfg) -> dict[str, str]:
    from trainers.backbone import resolve_backbone

    from trainers.memory import allocator_tag

    return ({"peftsearch.backbone_hash": backbone_hash(resolve_backbone(cfg.backbone)), "peftsearch.device": device_name(),
             "peftsearch.malloc": allocator_tag()}
            | {f"peftsearch.version.{p}": v for p, v in versions().items()})


def dataset_inputs(cfg) -> list:
    """One MLflow dataset input per split the trial reads (train, dev and the task's extras)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from trainers.tasks import TASKS

    task = TASKS[cfg.task]
    out = []
    for split in ("train", "dev", *task.extra_eval_splits):
        if cfg.data.source == "local":
            path = task.local_file(cfg.data.dir, split)
            digest, source_type, source = file_digest(path)[:16], "local", path.as_uri()
        else:
            source = f"{task.hub_path}/{task.hub_name}:{task.hub_splits[split]}"
            digest, source_type = hashlib.sha256(source.encode()).hexdigest()[:16], "hugging_face"
        ds = Dataset(name=f"{task.benchmark}/{cfg.task}", digest=digest, source_type=source_type, source=source)
        out.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", split)]))
    return out


def log_trial_provenance(client, run_id: str, cfg) -> None:
    from mlflow.entities import RunTag

    from tracking.runs import retrying

    # trials of one task starting together race to insert the same dataset rows: the loser retries
    retrying(client.log_inputs, run_id, datasets=dataset_inputs(cfg), what="log_inputs", conflicts=5)
    retrying(client.log_batch, run_id, tags=[RunTag(k, v) for k, v in trial_tags(cfg).items()], what="log_batch")


def log_logged_model(client, run_id: str, experiment_id: str, local_dir: str, cfg, step: int = 0) -> str:
    """An MLflow 3 logged model from a saved artefact directory, linked to its run as an output."""
    from mlflow.entities import LoggedModelOutput

    model = client.create_logged_model(experiment_id, name=f"{cfg.task}-{cfg.method}", source_run_id=run_id,
                                       model_type="peftsearch-artefact",
                                       tags={"peftsearch.method": cfg.method, "peftsearch.task": cfg.task})
    client.log_model_artifacts(model.model_id, local_dir)
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id


def spec_commit(spec_path: str | Path) -> str | None:
    """The git commit of the spec file's directory, with '-dirty' when it has local changes."""
    d = Path(spec_path).expanduser().resolve().parent
    if not d.is_dir():
        return None
    try:
        head = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(d), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def set_experiment_kind(client, experiment_id: str) -> None:
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
