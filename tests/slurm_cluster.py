"""A private single-node Slurm on localhost for the tests (docs/hpc.md, "The local Slurm the tests start"): config in a
temp dir, munged + slurmctld + slurmd started here and stopped by PID at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "srun")

CONFIG = """ClusterName=mpihybrid-tests
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=pmi2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=600
AuthInfo=cred_expire=10
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=30 OverSubscribe=FORCE:2 State=UP
"""


def find(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )


def missing_reason() -> str | None:
    """Why a private Slurm cannot run here, or None."""
    missing = [n for n in (*DAEMONS, *CLIENTS) if find(n) is None]
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} not found); "
            f"apt-get install slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the private Slurm runs its daemons as root (SlurmUser=root); run the tests as root"
    return None


class LocalSlurm:
    def __init__(self, directory: Path):
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._pidfiles: list[Path] = []

    def start(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG.format(d=self.dir, cpus=os.cpu_count()))
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            self._start_munge()
        subprocess.run([find("slurmctld"), "-f", str(self.conf), "-i"], check=True, env=self.env)
        subprocess.run([find("slurmd"), "-f", str(self.conf), "-N", "localhost"], check=True, env=self.env)
        self._pidfiles += [self.dir / "slurmctld.pid", self.dir / "slurmd.pid"]
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run([find("sinfo"), "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the local Slurm node never became idle:\n{self.logs()}")

    def _start_munge(self) -> None:
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown(key, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", find("munged")], check=True)
        self._pidfiles.append(run / "munged.pid")
        deadline = time.time() + 20
        while subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("munged did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        for pidfile in self._pidfiles:
            try:
                os.kill(int(pidfile.read_text().split()[0]), 15)
            except (OSError, ValueError):
                pass

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted((self.dir / "log").glob("*.log")))

    def sbatch(
        self,
        script: Path,
        *args: str,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Submit ``script`` (sbatch ``options`` first, then the script's ``args``); the job id."""
        proc = subprocess.run(
            [find("sbatch"), "--parsable", *options, str(script), *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=cwd,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch failed: {proc.stderr}")
        return int(proc.stdout.strip().split(";")[0])

    def wait(self, job: int, timeout: float = 600) -> dict[str, str]:
        """Poll until the job (every array task) has left the queue; its scontrol records."""
        deadline = time.time() + timeout
        while subprocess.run(
            [find("squeue"), "-h", "-j", str(job)], capture_output=True, text=True, env=self.env
        ).stdout.strip():
            if time.time() > deadline:
                raise TimeoutError(f"job {job} still queued after {timeout}s\n{self.logs()}")
            time.sleep(0.5)
        shown = subprocess.run(
            [find("scontrol"), "show", "job", str(job), "-o"], capture_output=True, text=True, env=self.env
        ).stdout
        return {line.split("JobId=")[1].split()[0]: line for line in shown.splitlines() if "JobId=" in line}
