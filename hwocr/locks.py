"""Locks on stage records, for Prefect's SERIALIZABLE isolation (its LockManager protocol, which is runtime-checkable:
met by the methods, without importing Prefect): two runs of one config on one output render each
shard once, and the second run takes the first one's result as a cache hit.

A lock is an `fcntl.flock` on a file named by the record key in a local folder (~/.cache/hwocr/locks, or
$HWOCR_LOCK_DIR). The OS drops it when its process ends, however it ends (SIGKILL included): a dead run never blocks
the next one, and no expiry is needed, so a long training is never joined by a second one that took its lock for
stale. The locks serialize the runs of one machine, whether the output is local or on an object store; runs on
different machines that share an object-store output are not serialized by them (Prefect's Redis lock manager,
prefect-redis, would be the way).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator

from hwocr import storage

LOCK_DIR = os.path.join(storage.CACHE_DIR, "locks")
_SAFE = re.compile(r"[0-9A-Za-z_.-]{1,128}")
_POLL = 0.05  # seconds between tries when a wait has a timeout (an untimed wait blocks in the kernel)


def lock_dir() -> str:
    return os.environ.get("HWOCR_LOCK_DIR") or LOCK_DIR


class FileLocks:
    """Prefect's LockManager protocol on flock. One process may hold a key for one holder at a time; another holder
    in the same process (another thread) waits like another process does. hold_timeout is ignored: a lock lasts as
    long as its holder, and no longer than its process."""

    # Held locks are the process's, whichever instance took them: Prefect deep-copies its cache policies, and Dask
    # ships them by value.
    _held: dict[str, tuple[str, int]] = {}  # path -> (holder, fd)
    _mutex = threading.Lock()

    def __init__(self, folder: str | None = None):
        self.folder = folder

    def path(self, key: str) -> str:
        name = key if _SAFE.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.folder or lock_dir(), name + ".lock")

    def _lock(self, path: str, mode: int, timeout: float | None) -> int | None:
        """An fd on path's current file holding a flock of mode, or None when timeout ran out."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                if deadline is None:
                    fcntl.flock(fd, mode)
                else:
                    while True:
                        try:
                            fcntl.flock(fd, mode | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                os.close(fd)
                                return None
                            time.sleep(_POLL)
                # A holder removes the file as it lets go: a lock on a removed file is no lock, try the new one.
                mine, now = os.fstat(fd), os.stat(path)
                if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                    return fd
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        path = self.path(key)
        with self._mutex:
            held = self._held.get(path)
            if held is not None and held[0] == holder:
                return True
        fd = self._lock(path, fcntl.LOCK_EX, acquire_timeout)
        if fd is None:
            return False
        with self._mutex:
            self._held[path] = (holder, fd)
        return True

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        path = self.path(key)
        with self._mutex:
            held = self._held.get(path)
            if held is None or held[0] != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del self._held[path]
        try:
            os.unlink(path)  # while still held: a waiter on this file sees it removed and locks the next one
        except FileNotFoundError:
            pass
        finally:
            os.close(held[1])

    def is_locked(self, key: str) -> bool:
        path = self.path(key)
        with self._mutex:
            if path in self._held:
                return True
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._mutex:
            held = self._held.get(self.path(key))
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        path = self.path(key)
        if not os.path.exists(path):
            return True
        fd = self._lock(path, fcntl.LOCK_SH, timeout)
        if fd is None:
            return False
        os.close(fd)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.wait_for_lock, key, timeout)


LOCKS = FileLocks()


@contextlib.contextmanager
def held(key: str) -> Iterator[None]:
    """Hold the lock of key (any name) for the block: a write that two runs of one machine must not make at once."""
    holder = f"hwocr-{uuid.uuid4()}"
    LOCKS.acquire_lock(key, holder)
    try:
        yield
    finally:
        LOCKS.release_lock(key, holder)
