"""Who owns what: a process's identity (host, boot id, pid namespace, pid, start time), so a reused pid is not
mistaken for the process that held it before, and a process of another machine or container that shares the
hostname is not judged by a pid that means something else there.

The boot id (``/proc/sys/kernel/random/boot_id``, random per boot, see random(4)) tells apart cloned machines and
reboots under one hostname; the pid namespace (``/proc/self/ns/pid``, its inode, see namespaces(7)) tells apart
containers that share a hostname (``--hostname``, ``--uts=host``) but not pids.

Start times come from ``/proc/<pid>/stat`` (field 22, ``starttime``, in clock ticks after boot) plus the
boot time (``btime`` in ``/proc/stat``), as described in proc(5); where ``/proc`` is missing they are
unknown (``None``) and only liveness (``kill(pid, 0)``) is checked.
"""

from __future__ import annotations

import functools
import os
import socket


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@functools.cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since the epoch (10 ms resolution); None if unknown."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); starttime is field 22
    return round(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), 2)


def hostname() -> str:
    return socket.gethostname()


@functools.cache
def boot_id() -> str:
    """This boot's random id (``/proc/sys/kernel/random/boot_id``); "" where there is none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """This process's pid namespace, e.g. ``pid:[4026531836]`` (the link ``/proc/self/ns/pid``); "" if unknown."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def me() -> dict[str, str]:
    """This process as owner tags' values: host, boot id, pid namespace, pid, start time."""
    start = process_start_time(os.getpid())
    return {
        "host": hostname(),
        "boot": boot_id(),
        "pidns": pid_namespace(),
        "pid": str(os.getpid()),
        "start": f"{start:.2f}" if start is not None else "",
    }


def owner_gone(host: str, pid: str, start: str, boot: str = "", pidns: str = "") -> bool:
    """True when the owner recorded as (host, pid, start[, boot id, pid namespace]) is certainly dead: same host,
    same boot and pid namespace where they were recorded, and its pid is free or now belongs to a process started
    at another time. A process of another host, boot (a cloned machine) or pid namespace (a container sharing the
    hostname) is never judged gone: its pid means nothing here."""
    if host != hostname():
        return False
    if (boot and boot != boot_id()) or (pidns and pidns != pid_namespace()):
        return False
    try:
        pid_i = int(pid)
    except ValueError:
        return False
    if not pid_alive(pid_i):
        return True
    try:
        recorded = float(start)
    except ValueError:  # no start time recorded (or garbled): a live pid is given the benefit of the doubt
        return False
    now = process_start_time(pid_i)
    return now is not None and abs(now - recorded) > 1.0
