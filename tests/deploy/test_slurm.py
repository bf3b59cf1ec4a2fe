"""deploy/slurm/peftsearch.sbatch under a real Slurm: Debian's slurm-wlm runs slurmctld and two
slurmd (nodes n1 and n2, on their own ports) on this host over loopback, with munged for
authentication (the recipe of ../shared/ENVIRONMENT.md). The test starts the four daemons on free
ports and stops them by PID. Searches train a tiny config-built BERT on real RTE rows.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "deploy" / "slurm" / "peftsearch.sbatch"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scancel", "sinfo")

SLURM_CONF = """ClusterName=local
SlurmctldHost=localhost
SlurmctldPort={ctld}
SlurmdPort={n1}
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={s}/munge/munge.socket.2
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool/%n
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd-%n.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=5
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n1} CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n2} CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
"""


def wait_for(check, what: str, timeout: float):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := check():
            return value
        time.sleep(1)
    raise TimeoutError(f"{what} did not happen in {timeout}s")


class Slurm:
    def __init__(self, free_ports) -> None:
        missing = [d for d in DAEMONS if not (shutil.which(d) or Path(f"/usr/sbin/{d}").exists())]
        if missing:
            pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing): "
                        f"apt-get install slurm-wlm munge (.ci/run does)")
        if os.geteuid() != 0:
            pytest.skip("the loopback Slurm runs its daemons as root and munged as `munge`: run the tests as root")
        self.dir = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))
        self.dir.chmod(0o755)
        for sub in ("state", "log", "run", "spool/n1", "spool/n2", "munge"):
            (self.dir / sub).mkdir(parents=True)
        shutil.chown(self.dir / "munge", "munge", "munge")
        ctld, n1, n2 = free_ports(3)
        self.conf = self.dir / "slurm.conf"
        self.conf.write_text(SLURM_CONF.format(s=self.dir, ctld=ctld, n1=n1, n2=n2))
        self.env = os.environ | {"SLURM_CONF": str(self.conf)}
        m = self.dir / "munge"
        self.procs = [self._start("munged", ["setpriv", "--reuid=munge", "--regid=munge", "--init-groups",
                                              _sbin("munged"), "-F", f"--socket={m}/munge.socket.2",
                                              f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                                              f"--seed-file={m}/munged.seed"])]
        wait_for(lambda: (m / "munge.socket.2").exists(), "munged's socket", 30)
        self.procs.append(self._start("ctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf)]))
        for node in ("n1", "n2"):
            self.procs.append(self._start(node, [_sbin("slurmd"), "-D", "-N", node, "-f", str(self.conf)]))
        wait_for(lambda: self.idle_nodes() >= 2, "two idle Slurm nodes", 120)

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        # output to a file: a daemon that inherits a pipe keeps its reader waiting
        with open(self.dir / "log" / f"{name}.out", "w") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, start_new_session=True)

    def idle_nodes(self) -> int:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, env=self.env).stdout
        return sum(1 for line in out.splitlines() if line.split()[-1] == "idle")

    def squeue(self, job: str) -> str:
        return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                              env=self.env).stdout.strip()

    def stop(self) -> None:
        for proc in reversed(self.procs):  # by PID: the slurmds, slurmctld, then munged
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not os.environ.get("PEFTSEARCH_KEEP_SLURM_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@pytest.fixture(scope="module")
def slurm(ports):
    s = Slurm(ports[0])
    try:
        yield s
    finally:
        s.stop()


def write_spec(tmp: Path, *, name: str, data_dir: Path, backbone: str, epochs: int) -> Path:
    spec = {
        "name": name, "backbone": backbone, "data": {"source": "local", "dir": str(data_dir)}, "tasks": ["rte"],
        "methods": {"finetune": {"lr": [1e-4, 1e-3]}}, "seeds": [0],
        "training": {"max_epochs": epochs, "patience": epochs + 1, "batch_size": 4, "max_length": 48,
                     "max_train_examples": 32, "max_eval_examples": 16, "eval_every": 2},
        "search": {"algorithm": "grid", "max_concurrent": 2, "max_failures": 1},
        "resources": {"cpu": 1}, "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sbatch(slurm: Slurm, tmp: Path, spec: Path, ports, *extra: str) -> str:
    base, _ = ports[1](200)  # 100 ports for each node's Ray
    env = slurm.env | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PEFTSEARCH_PORT_BASE": str(base),
                       "PEFTSEARCH_HOST_CMD": "echo 127.0.0.1", "PEFTSEARCH_TIMEOUT": "600",
                       "PEFTSEARCH_START_TRIES": "6",  # Ray gives a node 30 s to register: a loaded machine misses it
                       "PEFTSEARCH_RAY_TMP": str(slurm.dir)}  # job ids restart with each test's Slurm
    proc = subprocess.run(["sbatch", "--parsable", "-N", "2", f"--output={tmp / 'job.out'}", *extra, str(SBATCH),
                           str(spec), str(tmp / "out")], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"sbatch: exit {proc.returncode} {proc.stderr}; {(tmp / 'job.out').read_text()[-2000:]}"
    return proc.stdout.strip().split(";")[0]


def ray_processes(slurm: Slurm, job: str) -> list[psutil.Process]:
    """The job's Ray processes (their temp dirs are PEFTSEARCH_RAY_TMP/ray-JOB-NODE)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(f"{slurm.dir}/ray-{job}-" in a for a in p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def finished_runs(db: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as c:
            return c.execute(sa.text("""SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid
                AND t.key = 'mlflow.parentRunId' WHERE r.status = 'FINISHED'""")).scalar()
    finally:
        engine.dispose()


def test_sbatch_runs_a_search_on_two_nodes_and_stops_ray(slurm, ports, tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="slurm", data_dir=data_dir, backbone=tiny_bert, epochs=1)
    job = sbatch(slurm, tmp_path, spec, ports, "--wait")
    log = (tmp_path / "job.out").read_text()
    assert "Ray reports all 2 nodes" in log and "the search ended with exit status 0" in log, log[-3000:]
    assert finished_runs(tmp_path / "mlflow.db") == 2
    assert "stopped the Ray head and workers" in log
    wait_for(lambda: not ray_processes(slurm, job), "the job's Ray processes ending", 60)


def test_scancel_stops_the_search_and_every_ray_node(slurm, ports, tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="cancelled", data_dir=data_dir, backbone=tiny_bert, epochs=500)
    job = sbatch(slurm, tmp_path, spec, ports)
    out = tmp_path / "job.out"
    wait_for(lambda: out.exists() and "running the search" in out.read_text(), "the search starting", 400)
    assert len(ray_processes(slurm, job)) > 0
    subprocess.run(["scancel", job], check=True, env=slurm.env)
    wait_for(lambda: not slurm.squeue(job), "the job leaving the queue", 120)
    wait_for(lambda: not ray_processes(slurm, job), "every Ray process of the job ending", 60)
    # Slurm SIGKILLs what is left KillWait (5) s after its SIGTERM, cleanup or not: what counts is
    # that the trap ran and no Ray process of the job is left.
    log = out.read_text()
    assert "CANCELLED" in log and "peftsearch.sbatch: cancelled" in log, log[-3000:]
