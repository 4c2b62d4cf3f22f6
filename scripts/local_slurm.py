#!/usr/bin/env python3
"""A one-node SLURM cluster on localhost, for testing the SLURM profile (needs root and apt).

    python3 scripts/local_slurm.py up      # install slurm-wlm + munge if missing, start, wait for idle
    python3 scripts/local_slurm.py down    # stop exactly the daemons `up` started, restore slurm.conf
    python3 scripts/local_slurm.py status

Writes a minimal slurm.conf (select/cons_tres, proctrack/linuxproc, task/none, no accounting, a large
MinJobAge so finished jobs stay visible to `squeue`) and installs it at /etc/slurm/slurm.conf, the
path every SLURM command reads (the executor plugin's job step drops SLURM_CONF). munged, slurmctld
and slurmd run in the foreground as children of a supervisor-less `setsid` each, their PIDs recorded
in the state directory; `down` signals exactly those PIDs. Tests use `LocalSlurm` as a context
manager.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
STATE = Path(os.environ.get("DROPREG_SLURM_STATE", "/tmp/dropreg-slurm"))
PACKAGES = ("slurm-wlm", "munge")


class SlurmUnavailable(RuntimeError):
    """This machine cannot run a local SLURM (not root, no apt, ...)."""


def slurm_conf(host: str, cpus: int, memory_mb: int, state: Path) -> str:
    return f"""# written by dropreg scripts/local_slurm.py: a one-node test cluster
ClusterName=dropreg-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=86400
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def ensure_installed() -> None:
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("not root: cannot install slurm-wlm and munge")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("no apt-get: cannot install slurm-wlm and munge")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


class LocalSlurm:
    def __init__(self, state: Path = STATE, install: bool = True) -> None:
        self.state = state
        self.install = install
        self.pids_file = state / "pids.json"

    # ------------------------------------------------------------------ up
    def up(self, timeout_s: float = 60.0) -> None:
        if os.geteuid() != 0:
            raise SlurmUnavailable("not root: a local SLURM needs root (munged, slurmd)")
        if self.install:
            ensure_installed()
        elif not all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
            raise SlurmUnavailable("slurm-wlm and munge are not installed (apt-get install slurm-wlm munge; "
                                   ".ci/run does it)")
        if self.pids_file.exists():
            self.down()
        if CONF.exists() and not CONF.read_text().startswith("# written by dropreg"):
            if _run("pgrep", "-x", "slurmctld", check=False).returncode == 0:
                raise SlurmUnavailable(f"a SLURM is already configured and running here ({CONF}); not touching it")
        for sub in ("ctld", "slurmd"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
        if CONF.exists() and not (self.state / "slurm.conf.orig").exists():
            shutil.copy2(CONF, self.state / "slurm.conf.orig")
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(host, os.cpu_count() or 1, memory_mb, self.state))
        self._ensure_munge_key()
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        pids = {}
        pids["munged"] = self._start(["munged", "--foreground", "--force"], "munged")
        time.sleep(0.5)
        pids["slurmctld"] = self._start(["slurmctld", "-D", "-i"], "slurmctld")
        pids["slurmd"] = self._start(["slurmd", "-D"], "slurmd")
        self.pids_file.write_text(json.dumps(pids))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = _run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        logs = (self.state / "slurmctld.log").read_text()[-500:] if (self.state / "slurmctld.log").exists() else ""
        self.down()
        raise SlurmUnavailable(f"node not idle after {timeout_s:.0f} s (sinfo: {state!r}); slurmctld log: {logs}")

    def _ensure_munge_key(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(128))
            os.chmod(key, 0o400)

    def _start(self, cmd: list[str], name: str) -> int:
        log = open(self.state / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(0.3)
        if proc.poll() is not None:
            raise SlurmUnavailable(f"{name} exited at once with {proc.returncode}; see {self.state / (name + '.out')}")
        return proc.pid

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        """Stop the daemons this script started (by PID), then put the old slurm.conf back."""
        if self.pids_file.exists():
            pids = json.loads(self.pids_file.read_text())
            for name in ("slurmd", "slurmctld", "munged"):
                pid = pids.get(name)
                if pid and _alive(pid):
                    os.kill(pid, signal.SIGTERM)
            for name in ("slurmd", "slurmctld", "munged"):
                pid = pids.get(name)
                deadline = time.monotonic() + 10
                while pid and _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if pid and _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            self.pids_file.unlink()
        orig = self.state / "slurm.conf.orig"
        if orig.exists():
            shutil.move(orig, CONF)
        elif CONF.exists() and CONF.read_text().startswith("# written by dropreg"):
            CONF.unlink()

    def __enter__(self) -> "LocalSlurm":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args()
    cluster = LocalSlurm()
    try:
        if args.action == "up":
            cluster.up()
            print(_run("sinfo").stdout, end="")
        elif args.action == "down":
            cluster.down()
        else:
            print(_run("sinfo", check=False).stdout or "no cluster", end="")
    except SlurmUnavailable as exc:
        print(f"local_slurm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
