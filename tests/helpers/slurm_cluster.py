"""A throwaway single-node Slurm (Debian slurm-wlm + MUNGE) for tests, as root.

    with local_slurm(tmp_dir) as env:     # env: os.environ + SLURM_CONF
        subprocess.run(["sbatch", ...], env=env)

Starts munged (unless one runs already), slurmctld and slurmd with a slurm.conf in
``tmp_dir`` (STACK_NOTES: no cgroups, no accounting, fast scheduling, short credential
expiry so a requeued job restarts at once), waits until the node is idle, and always tears
everything down: cancels jobs, then stops what it started by the PIDs in its pid files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")


def missing_reason() -> str | None:
    """Why a local Slurm cannot run here, or None."""
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "scontrol"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (reinstall munge)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"


def write_conf(d: Path, host: str, cpus: int = 8) -> Path:
    ctld_port, d_port = _free_ports(2)
    for sub in ("state", "spool"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = f"""\
ClusterName=blurfieldtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=cred_expire=5
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
SchedulerParameters=sched_interval=2,bf_interval=1
SlurmdParameters=config_overrides
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=64000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    path = d / "slurm.conf"
    path.write_text(conf)
    return path


def _munge_ok() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        back = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5)
        return cred.returncode == 0 and back.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop(pid_files: list[Path], timeout: float = 15.0) -> None:
    """SIGTERM the daemons named in ``pid_files`` together, SIGKILL after ``timeout`` s."""
    pids = [p for p in map(_pid, pid_files) if p is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while pids and time.monotonic() < end:
        time.sleep(0.1)
        pids = [p for p in pids if _alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped) counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def wait_for(predicate, timeout: float, what: str, step: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def local_slurm(d: Path, cpus: int = 8) -> Iterator[dict[str, str]]:
    """Start the cluster; yield the environment for Slurm commands; always tear it down."""
    host = socket.gethostname().split(".")[0]
    conf = write_conf(d, host, cpus)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["SLURM_CONF"] = str(conf)
    munge_pid = Path("/run/munge/munged.pid")  # munged runs as munge: not in d
    started_munge = False
    try:
        if not _munge_ok():
            subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "755",
                            "/run/munge"], check=True)
            subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged"),
                            f"--pid-file={munge_pid}", "--force"], check=True, timeout=10)
            started_munge = True
            wait_for(_munge_ok, 10, "munged")
        subprocess.run([_sbin("slurmctld"), "-f", str(conf)], env=env, check=True, timeout=20)
        subprocess.run([_sbin("slurmd"), "-f", str(conf)], env=env, check=True, timeout=20)

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True,
                               text=True, timeout=10)
            return r.stdout.strip() == "idle"

        wait_for(idle, 40, "the Slurm node to become idle (see slurmd.log)")
        yield env
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "--full", "--user", "root"], env=env, timeout=10,
                           capture_output=True)
            time.sleep(0.5)
        _stop([d / "slurmd.pid", d / "slurmctld.pid"] + ([munge_pid] if started_munge else []))


def job_state(env: dict[str, str], job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
    r = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env, capture_output=True,
                       text=True, timeout=10)
    out: dict[str, str] = {}
    for word in r.stdout.split():
        if "=" in word:
            k, v = word.split("=", 1)
            out.setdefault(k, v)
    return out
