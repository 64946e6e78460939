"""Private Slurm clusters for the tests (docs/hpc.md, "The local Slurm the tests start"): config in a
temp dir, munged + slurmctld + slurmd started here and stopped by PID at the end.

`LocalSlurm` is one node, ``localhost``. `TwoNodeSlurm` is two nodes on this machine: two network
namespaces joined by a veth pair with private addresses (10.201.0.1 and .2, inside the namespaces
only), a slurmd in each with its own host name and /dev/shm (as on separate machines), and the
slurmctld in the first; the clients run in the first namespace too."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "srun", "scancel")

# The test clusters shorten two waits of a real site: a requeued job may start again after the
# credential lifetime (default 120 s), and jobs share cores (the machine has few).
COMMON = """ClusterName=mpihybrid-tests
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
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
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
"""

ONE_NODE = """SlurmctldHost=localhost(127.0.0.1)
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
    """A one-node Slurm on localhost."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.nodes = ["localhost"]
        self.prefix: list[str] = []  # what every daemon and client command runs under
        self._pidfiles: list[Path] = []

    def config(self) -> str:
        return COMMON.format(d=self.dir) + ONE_NODE.format(cpus=os.cpu_count())

    def start(self) -> None:
        for sub in ("state", "log", *(f"spool-{node}" for node in self.nodes)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config())
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            self._start_munge()
        subprocess.run([*self.prefix, find("slurmctld"), "-f", str(self.conf), "-i"], check=True, env=self.env)
        self._pidfiles.append(self.dir / "slurmctld.pid")
        self.start_nodes()
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.client("sinfo", "-h", "-o", "%T")
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the local Slurm nodes never became idle:\n{self.logs()}")

    def start_nodes(self) -> None:
        subprocess.run([find("slurmd"), "-f", str(self.conf), "-N", "localhost"], check=True, env=self.env)
        self._pidfiles.append(self.dir / "slurmd-localhost.pid")

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
        """Cancel what still runs (its processes outlive slurmd), then stop the daemons."""
        if self.client("squeue", "-h").stdout.strip():
            self.client("scancel", "--full", "--signal=KILL", "--user=root")
            time.sleep(2)
        for pidfile in self._pidfiles:
            try:
                os.kill(int(pidfile.read_text().split()[0]), 15)
            except (OSError, ValueError):
                pass

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted((self.dir / "log").glob("*.log")))

    def client(self, name: str, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sbatch, squeue, scontrol, srun, ...) against this cluster."""
        env = {**self.env, **kw.pop("env", {})}
        return subprocess.run(
            [*self.prefix, find(name), *args], capture_output=True, text=True, env=env, timeout=timeout, **kw
        )

    def sbatch(
        self,
        script: Path,
        *args: str,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Submit ``script`` (sbatch ``options`` first, then the script's ``args``); the job id."""
        proc = self.client("sbatch", "--parsable", *options, str(script), *args, env=env or {}, cwd=cwd)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch failed: {proc.stderr}")
        return int(proc.stdout.strip().split(";")[0])

    def show(self, job: int) -> dict[str, str]:
        """The job's (every array task's) ``scontrol show job`` record, keyed by job id."""
        shown = self.client("scontrol", "show", "job", str(job), "-o").stdout
        return {line.split("JobId=")[1].split()[0]: line for line in shown.splitlines() if "JobId=" in line}

    def wait(self, job: int, timeout: float = 600) -> dict[str, str]:
        """Poll until the job (every array task) has left the queue; its scontrol records."""
        deadline = time.time() + timeout
        while self.client("squeue", "-h", "-j", str(job)).stdout.strip():
            if time.time() > deadline:
                raise TimeoutError(f"job {job} still queued after {timeout}s\n{self.logs()}")
            time.sleep(0.5)
        return self.show(job)


class TwoNodeSlurm(LocalSlurm):
    """Two Slurm nodes, node1 and node2, in two network namespaces joined by a veth pair."""

    NETNS = ("mpihybrid-node1", "mpihybrid-node2")
    ADDRESSES = ("10.201.0.1", "10.201.0.2")
    IFACE = "mh0"  # the veth end's name in both namespaces

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.nodes = ["node1", "node2"]
        self.prefix = self.enter(self.NETNS[0])
        # Both nodes share one kernel, so UCX (MPICH's netmod) would reach the other node through its
        # same-machine transports (cross-memory attach); real nodes have only the network: use it.
        self.env.update(UCX_TLS="tcp", UCX_NET_DEVICES=self.IFACE)

    @staticmethod
    def missing_reason() -> str | None:
        """Why two namespaced nodes cannot be made here, or None (tries for real, then undoes it)."""
        reason = missing_reason()
        if reason is None:
            missing = [n for n in ("ip", "unshare", "nsenter") if find(n) is None]
            if missing:
                return f"{', '.join(missing)} not found; apt-get install iproute2 util-linux"
            probe = subprocess.run(["ip", "netns", "add", "mpihybrid-probe"], capture_output=True, text=True)
            if probe.returncode != 0:
                return f"cannot create a network namespace here: {probe.stderr.strip()}"
            subprocess.run(["ip", "netns", "del", "mpihybrid-probe"], capture_output=True)
        return reason

    @staticmethod
    def enter(netns: str) -> list[str]:
        # Not `ip netns exec`: it mounts a fresh /sys without the cgroup tree that slurmd needs.
        return ["nsenter", f"--net=/run/netns/{netns}"]

    def config(self) -> str:
        nodes = "".join(
            f"NodeName=node{i + 1} NodeAddr={a} CPUs={os.cpu_count()} State=UNKNOWN\n"
            for i, a in enumerate(self.ADDRESSES)
        )
        return (
            COMMON.format(d=self.dir)
            + f"SlurmctldHost={socket.gethostname()}({self.ADDRESSES[0]})\n"
            + nodes
            + "PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=30 OverSubscribe=FORCE:2 State=UP\n"
        )

    def start(self) -> None:
        self._network("del", check=False)
        ns1, ns2 = self.NETNS
        for ns in self.NETNS:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", "mhveth1", "type", "veth", "peer", "name", "mhveth2"], check=True)
        for i, (ns, address) in enumerate(zip(self.NETNS, self.ADDRESSES)):
            ip = ["ip", "-n", ns]
            subprocess.run(["ip", "link", "set", f"mhveth{i + 1}", "netns", ns], check=True)
            subprocess.run([*ip, "link", "set", f"mhveth{i + 1}", "name", self.IFACE], check=True)
            subprocess.run([*ip, "addr", "add", f"{address}/24", "dev", self.IFACE], check=True)
            subprocess.run([*ip, "link", "set", self.IFACE, "up"], check=True)
            subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        super().start()

    def start_nodes(self) -> None:
        for node, ns in zip(self.nodes, self.NETNS):
            # Its own host name (what `mpihybrid info` prints), /dev/shm and /sys/class/net (where UCX
            # looks for network devices), as on another machine; slurmd still needs the cgroup tree.
            cgroups = self.dir / f"cgroup-{node}"
            inner = (
                f"mount -t tmpfs -o size=512m tmpfs /dev/shm && mkdir -p {cgroups} && "
                f"mount --rbind /sys/fs/cgroup {cgroups} && mount -t sysfs sysfs /sys && "
                f"mount --rbind {cgroups} /sys/fs/cgroup && hostname {node} && "
                f"exec {find('slurmd')} -f {self.conf} -N {node}"
            )
            subprocess.run(
                [*self.enter(ns), "unshare", "--uts", "--mount", "--propagation=private", "sh", "-c", inner],
                check=True,
                env=self.env,
            )
            self._pidfiles.append(self.dir / f"slurmd-{node}.pid")

    def crossed_bytes(self) -> int:
        """Bytes sent from node1 to node2 over the veth so far (Slurm's own messages included)."""
        shown = subprocess.run(["ip", "-n", self.NETNS[0], "-s", "-j", "link", "show", self.IFACE], capture_output=True)
        return int(json.loads(shown.stdout)[0]["stats64"]["tx"]["bytes"])

    def _network(self, verb: str, check: bool = True) -> None:
        for ns in self.NETNS:
            subprocess.run(["ip", "netns", verb, ns], capture_output=True, check=check)

    def stop(self) -> None:
        super().stop()
        time.sleep(1)  # the daemons exit before their namespaces go
        self._network("del", check=False)
