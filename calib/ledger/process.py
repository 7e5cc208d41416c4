"""The driving process's identity and liveness: which machine and process drives a trial
(``driver_id``, the ``calib_driver`` attribute), and whether it is still alive (``driver_alive``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil


def _proc_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks after boot (the 22nd field of
    ``/proc/<pid>/stat``, as calib has always written it), from psutil's start time; None
    if there is no such process."""
    try:
        started = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return str(round((started - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def _machine() -> str:
    """This machine and process namespace: host name, boot id and PID-namespace inode (two
    containers with one host name, or a rebooted host, are other machines). Read from
    ``/proc`` by hand: psutil gives neither the boot id nor the PID namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "?"
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = "?"
    return f"{socket.gethostname()}/{boot}/{ns}"


def driver_id() -> str:
    """machine:pid:start-ticks of this process (``_machine``; start ticks guard against pid
    reuse)."""
    pid = os.getpid()
    return f"{_machine()}:{pid}:{_proc_start_ticks(pid)}"


def driver_alive(ident: str) -> bool | None:
    """True/False if the driver ``ident`` is alive on this machine; None if on another
    machine, or if this system cannot tell (no ``/proc``)."""
    try:
        host, pid, ticks = ident.rsplit(":", 2)
    except ValueError:
        return False
    if host == socket.gethostname():  # written by calib before machine ids: the host name alone
        host = _machine()
    if host != _machine() or "?" in host or ticks == "None":
        return None
    return _proc_start_ticks(int(pid)) == ticks
