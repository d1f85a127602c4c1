"""One run per results folder: a lock file holding the running study's pid, host and start time.

A second ``ocular-study run`` (or ``clean``) on the same profile's results stops with one line
naming the holder; a lock left by a run that died (its pid gone on this host) is taken over with a
note. The lock is created atomically (``O_EXCL``) and removed on every exit path of the holder.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from pathlib import Path

import psutil

LOCK = ".study.lock"


class FolderLocked(Exception):
    """Another live run holds the results folder."""


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # vanished, or a half-written lock of a run that died while writing it


def _alive(holder: dict) -> bool:
    """True if the holder may still run: a live pid on this host, or any lock written on another host."""
    if holder.get("host") != socket.gethostname():
        return True  # its pid means nothing here; only its owner (or a person) can say it is stale
    try:
        process = psutil.Process(int(holder["pid"]))
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False
    # a recycled pid: the process started after the lock was written
    return process.create_time() <= holder.get("process_started", float("inf")) + 1


def _create(path: Path) -> None:
    me = psutil.Process()
    text = json.dumps({"pid": me.pid, "host": socket.gethostname(), "process_started": me.create_time(),
                       "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(handle, "w") as stream:
        stream.write(text)


@contextlib.contextmanager
def holding(results: Path, command: str = "run"):
    """Hold ``results``' lock inside the block; raise :class:`FolderLocked` naming a live holder."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / LOCK
    for _ in range(2):
        try:
            _create(path)
            break
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and _alive(holder):
                raise FolderLocked(
                    f"{results} is in use by another run (pid {holder.get('pid')} on {holder.get('host')}, "
                    f"since {holder.get('since')}); wait for it to finish or stop it before `{command}` "
                    f"(if no such run exists, delete {path})") from None
            print(f"note: taking over the lock of a run that is gone ({holder or 'unreadable lock'})", flush=True)
            path.unlink(missing_ok=True)
    else:
        raise FolderLocked(f"could not take the lock {path}: another run took it at the same moment")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
