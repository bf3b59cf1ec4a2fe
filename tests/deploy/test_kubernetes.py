"""The KubeRay manifests in deploy/kubernetes, checked offline: rendered with kustomize (kubectl's,
as `kubectl apply -k` would), each RayCluster and RayJob validated against the KubeRay operator's
own CRD schema from ../shared/kuberay (jsonschema on openAPIV3Schema), everything else against
Kubernetes' core schemas (kubernetes-validate). A broken manifest is refused by the same checks.
No Kubernetes cluster can run here: the MLflow server's entrypoint runs on loopback as a process,
the same script with the same variables, and the RayJob's spec is validated by `peftsearch`.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZATION = REPO / "deploy" / "kubernetes"
CRDS = REPO.parent / "shared" / "kuberay"


def drop_x_kubernetes(node):
    """jsonschema does not know Kubernetes' x-kubernetes-* extensions."""
    if isinstance(node, dict):
        return {k: drop_x_kubernetes(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [drop_x_kubernetes(v) for v in node]
    return node


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the operator's openAPIV3Schema."""
    if not CRDS.is_dir():
        pytest.fail(f"the KubeRay CRDs are not at {CRDS} (../shared/kuberay)")
    schemas = {}
    for path in sorted(CRDS.glob("ray.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = drop_x_kubernetes(version["schema"]["openAPIV3Schema"])
    return schemas


def render() -> list[dict]:
    """`kubectl kustomize`, as `kubectl apply -k` renders; without kubectl, the resource files
    themselves (every manifest but the two generated ConfigMaps)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, check=True)
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    resources = yaml.safe_load((KUSTOMIZATION / "kustomization.yaml").read_text())["resources"]
    return [d for r in resources for d in yaml.safe_load_all((KUSTOMIZATION / r).read_text()) if d]


def check(doc: dict, crd_schemas) -> None:
    """Raise if the manifest breaks its schema: the CRD's for KubeRay kinds, Kubernetes' otherwise."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crd_schemas:
        jsonschema.validate(doc, crd_schemas[key], cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render()


def test_every_manifest_validates(manifests, crd_schemas):
    kinds = {d["kind"] for d in manifests}
    assert {"RayCluster", "RayJob", "StatefulSet", "Deployment", "Service", "NetworkPolicy",
            "PersistentVolumeClaim"} <= kinds
    for doc in manifests:
        check(doc, crd_schemas)


def by_kind(manifests, kind: str, name: str | None = None) -> dict:
    return next(d for d in manifests if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def test_broken_manifests_are_refused(manifests, crd_schemas):
    cluster = copy.deepcopy(by_kind(manifests, "RayCluster"))
    cluster["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        check(cluster, crd_schemas)
    cluster = copy.deepcopy(by_kind(manifests, "RayCluster"))
    cluster["spec"]["authOptions"]["mode"] = "password"
    with pytest.raises(jsonschema.ValidationError, match="is not one of"):
        check(cluster, crd_schemas)
    job = copy.deepcopy(by_kind(manifests, "RayJob"))
    job["spec"]["activeDeadlineSeconds"] = "2 days"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        check(job, crd_schemas)
    deployment = copy.deepcopy(by_kind(manifests, "Deployment", "mlflow"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5000"
    with pytest.raises(kubernetes_validate.ValidationError):
        check(deployment, crd_schemas)


def test_the_cluster_asks_for_gpus_tokens_and_secrets(manifests):
    cluster = by_kind(manifests, "RayCluster")["spec"]
    assert cluster["authOptions"]["mode"] == "token"
    gpu = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    pg = by_kind(manifests, "StatefulSet", "postgres")["spec"]
    env = {e["name"]: e.get("value") for e in pg["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256" and "POSTGRES_PASSWORD" not in env
    assert pg["volumeClaimTemplates"]
    job = by_kind(manifests, "RayJob")["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "peftsearch"} and job["entrypoint"].startswith("peftsearch run ")


def test_the_rayjob_spec_from_its_configmap_validates(manifests, tmp_path, data_dir):
    """The RayJob's spec, as the head reads it from the ConfigMap, with local data and tracking
    standing in for the hub and the in-cluster MLflow server, which cannot be reached here."""
    config_map = by_kind(manifests, "ConfigMap", "peftsearch-spec")
    spec = tmp_path / "search.yaml"
    spec.write_text(config_map["data"]["search.yaml"])
    proc = subprocess.run([sys.executable, "-m", "search.cli", "validate", str(spec), "--data-dir", str(data_dir),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def container_env(deployment: dict, values: dict[str, str]) -> dict[str, str]:
    """The container's variables as the pod sees them, secretKeyRefs filled from `values`."""
    env = {}
    for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        env[e["name"]] = e["value"] if "value" in e else values[e["valueFrom"]["secretKeyRef"]["key"]]
    return env


@pytest.mark.integration
def test_the_mlflow_entrypoint_serves_with_authentication(manifests, postgres_server, tmp_path, free_port):
    """deploy/kubernetes/entrypoints/mlflow-server.sh with the Deployment's variables: only the
    hosts, ports and paths are loopback ones."""
    postgres_server("mlflow_k8s")
    auth_db = postgres_server("mlflow_k8s_auth").rsplit("/", 1)
    host_port = auth_db[0].rsplit("@", 1)[1]
    secrets = tmp_path / "secrets"  # laid out as the Secret volume: one file per key, mode 0400
    secrets.mkdir()
    for key, value in {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret-password-long",
                       "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32}.items():
        (secrets / key).write_text(value)
        (secrets / key).chmod(0o400)
    deployment = by_kind(manifests, "Deployment", "mlflow")
    env = container_env(deployment, {"password": "unused-under-trust"}) | {
        "PGHOST": host_port.split(":")[0], "PGPORT": host_port.split(":")[1], "PGUSER": "postgres",
        "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(free_port), "MLFLOW_WORKERS": "1",
        "MLFLOW_SERVER_ALLOWED_HOSTS": "127.0.0.1:*",
        "MLFLOW_SECRETS_DIR": str(secrets), "MLFLOW_ARTIFACTS": str(tmp_path / "artifacts"),
        "MLFLOW_DB": "mlflow_k8s", "MLFLOW_AUTH_DB": "mlflow_k8s_auth"}
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    script = KUSTOMIZATION / "entrypoints" / Path(command[-1]).name
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen([command[0], str(script)], env=os.environ | env | {"PATH": f"{bin_dir}:{os.environ['PATH']}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{free_port}"
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            raise TimeoutError("the MLflow entrypoint did not serve /health in 300 s")
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=10).status_code == 401
        assert requests.get(search, auth=("admin", "s3cret-password-long"), timeout=10).status_code == 200
        # a Host header outside MLFLOW_SERVER_ALLOWED_HOSTS (DNS rebinding) is refused even with credentials
        assert requests.get(search, auth=("admin", "s3cret-password-long"), headers={"Host": "evil.example:80"},
                            timeout=10).status_code == 403
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


def test_the_mlflow_entrypoint_refuses_a_readable_secret(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        (secrets / key).write_text("x")
        (secrets / key).chmod(0o400)
    (secrets / "MLFLOW_TRACKING_PASSWORD").chmod(0o644)
    proc = subprocess.run(["bash", str(KUSTOMIZATION / "entrypoints" / "mlflow-server.sh")], capture_output=True,
                          text=True, env=os.environ | {"MLFLOW_SECRETS_DIR": str(secrets), "PGHOST": "x", "PGUSER": "x"})
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("has mode 644; others must not read it") and len(proc.stderr.splitlines()) == 1
