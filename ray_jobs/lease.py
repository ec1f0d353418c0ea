"""One run at a time per study: a lease file in the output root, held while a run writes there.

Two pipelines on one output root raced in pre-training and the loser left failure rows for a study
that completed. So a run takes the study's lease before it starts Ray: ``.xling-lease.json`` in the
root names its owner (user, host, pid, command) and carries a heartbeat that a background thread
renews every few seconds. A second run exits with a message naming the first (exit status
`BUSY_EXIT`), or with ``--wait`` waits until the lease is free. A lease is stale, and taken over,
when its process is gone (same host) or its heartbeat is older than ``XLING_LEASE_TIMEOUT`` seconds
(60 by default: a driver on another host that was killed). On a local root, reading and writing the
lease happen under an OS file lock, so two runs never both take it; on an object store (``s3://``)
there is no such lock and two runs starting within the same second could both take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psutil

from analysis.store import Store

LEASE_NAME = ".xling-lease.json"
#: The exit status of a run that found the study held by another run (EX_TEMPFAIL: try again later).
BUSY_EXIT = 75


class StudyBusy(RuntimeError):
    """Another live run holds the study's lease."""

    def __init__(self, root: str, holder: dict, age: float, timeout: float):
        self.holder = holder
        super().__init__(
            f"study {root} is in use by another run: {holder['owner']} (started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['started']))}, command: {holder['command']}; "
            f"last heartbeat {age:.0f} s ago). Wait for it (--wait), or stop it; a lease whose process is gone "
            f"is taken over, and one without a heartbeat for {timeout:.0f} s (XLING_LEASE_TIMEOUT) too"
        )


def process_alive(pid: int) -> bool:
    """Whether a process of this host is running (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class StudyLease:
    """The lease of one study root, held as a context manager; `StudyBusy` when a live run holds it."""

    def __init__(self, store: Store, wait: bool = False, heartbeat: float = 10.0, timeout: float | None = None):
        self.store, self.wait, self.heartbeat = store, wait, heartbeat
        self.timeout = float(os.environ.get("XLING_LEASE_TIMEOUT", 60)) if timeout is None else timeout
        self.path = f"{store.base}/{LEASE_NAME}"
        host = socket.gethostname()
        self.mine = {
            "token": uuid.uuid4().hex,
            "owner": f"{getpass.getuser()}@{host} pid {os.getpid()}",
            "host": host,
            "pid": os.getpid(),
            "command": " ".join(sys.argv),
            "started": time.time(),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StudyLease:
        announced = False
        while True:
            busy = self._try_take()
            if busy is None:
                break
            if not self.wait:
                raise busy
            if not announced:
                print(f"[lease] waiting for the run that holds the study: {busy.holder['owner']}", flush=True)
                announced = True
            time.sleep(min(self.heartbeat, 2.0))
        self._thread = threading.Thread(target=self._renew, name="xling-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guard():
            if (self._read() or {}).get("token") == self.mine["token"]:
                self.store.fs.delete_file(self.path)

    def _try_take(self) -> StudyBusy | None:
        """Take the lease when it is free or stale; else the `StudyBusy` that says who holds it."""
        with self._guard():
            holder, now = self._read(), time.time()
            if holder is not None and holder.get("token") != self.mine["token"]:
                age = now - holder["heartbeat"]
                gone = holder["host"] == self.mine["host"] and not process_alive(holder["pid"])
                if not gone and age <= self.timeout:
                    return StudyBusy(self.store.root, holder, age, self.timeout)
                reason = "its process is gone" if gone else f"no heartbeat for {age:.0f} s"
                print(f"[lease] taking over the stale lease of {holder['owner']} ({reason})", flush=True)
            self._write(now)
        return None

    def _renew(self) -> None:
        """Renew the heartbeat until released; stop (and say so) if another run took the lease over."""
        while not self._stop.wait(self.heartbeat):
            with self._guard():
                holder = self._read()
                if (holder or {}).get("token") != self.mine["token"]:
                    print(f"[lease] WARNING: the study's lease was taken over by {holder and holder['owner']}")
                    return
                self._write(time.time())

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """An OS lock around reading and writing the lease (local roots; nothing on object stores)."""
        if not self.store.is_local:
            yield
            return
        with open(f"{self.store.base}/.xling-lease.guard", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict | None:
        if not self.store.is_file(self.path):
            return None
        with self.store.fs.open_input_stream(self.path) as handle:
            try:
                lease = json.loads(handle.read())
            except json.JSONDecodeError:
                lease = None
        if not isinstance(lease, dict) or not {"token", "heartbeat", *self.mine} <= set(lease):
            return None  # a lease cut short (a full disk) or not written by this code: nobody's
        return lease

    def _write(self, heartbeat: float) -> None:
        """Write the lease with this heartbeat: a temporary file renamed over it, so readers see all or nothing."""
        tmp = f"{self.path}.{self.mine['token']}.tmp"
        with self.store.fs.open_output_stream(tmp) as handle:
            handle.write(json.dumps({**self.mine, "heartbeat": heartbeat}).encode())
        self.store.fs.move(tmp, self.path)


def holding_study(store: Store, wait: bool, body: Callable[[], int]) -> int:
    """Run ``body`` while holding the study's lease; `BUSY_EXIT` with a message when another run holds it."""
    try:
        with StudyLease(store, wait):
            return body()
    except StudyBusy as busy:
        print(f"[lease] {busy}", file=sys.stderr, flush=True)
        return BUSY_EXIT
