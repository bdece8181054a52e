"""The render pool: one process pool of trdg workers (synth/trdg_driver.py) that every shard's pieces feed.

Prefect tasks run on threads and feed this pool: the thread runner alone is held by the GIL, and process task
runners boot a Prefect server per worker in ephemeral mode.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading

from hwocr import interrupt
from synth import trdg_driver
from synth.render_settings import RenderSettings

PIECE_IMAGES = 256  # a shard goes to the pool in pieces of at least this many images


class _Pool:
    def __init__(self):
        self.lock = threading.Lock()
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.size = 0
        self.queue = None
        self.listener: threading.Thread | None = None
        self.on_total = lambda n: None
        self.on_advance = lambda n: None
        self.stopped = False  # stop() ended it: no new pool until the next flow warms one

    def get(self, workers: int) -> concurrent.futures.ProcessPoolExecutor:
        with self.lock:
            if self.stopped:
                raise interrupt.Stopped("the render pool was stopped: the run is being interrupted")
            ex = self.executor
            if ex is None or getattr(ex, "_broken", False) or self.size != workers:
                self._shutdown_locked()
                ctx = multiprocessing.get_context("spawn")
                self.queue = ctx.SimpleQueue()
                self.executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=ctx,
                    initializer=trdg_driver.init_worker, initargs=(self.queue,),
                )
                self.size = workers
                self.listener = threading.Thread(target=self._listen, args=(self.queue,), daemon=True)
                self.listener.start()
            return self.executor

    def submit(self, workers: int, fn, *args) -> concurrent.futures.Future:
        """Workers are spawned inside submit. From the main thread (warm(), the flow's) SIGINT is ignored while they
        are: a disposition survives exec and Python then never turns SIGINT into KeyboardInterrupt, so a terminal's
        Ctrl-C, sent to the whole group, cannot interrupt their start-up with a traceback (a Ctrl-C within those
        milliseconds is lost to the parent too: pressed again, it stops the run). Each worker also ignores SIGINT
        from its first step (trdg_driver.init_worker); the parent ends them itself (stop())."""
        if threading.current_thread() is not threading.main_thread():
            return self.get(workers).submit(fn, *args)
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return self.get(workers).submit(fn, *args)
        finally:
            signal.signal(signal.SIGINT, old)

    def warm(self, workers: int) -> None:
        """Start the worker processes now, so their imports overlap with planning."""
        with self.lock:
            self.stopped = False
        for _ in range(workers):
            self.submit(workers, os.getpid)

    def _listen(self, queue) -> None:
        while True:
            n = queue.get()
            if n is None:
                return
            self.on_advance(n)

    def _shutdown_locked(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        if self.queue is not None:
            self.queue.put(None)
            self.listener.join(timeout=5)
            self.queue = None

    def shutdown(self) -> None:
        with self.lock:
            self._shutdown_locked()

    def stop(self) -> None:
        """End the workers now, shards half rendered and all; the tasks waiting on them fail with Stopped (their
        staging folders are removed) and later ones find no pool.

        shutdown(wait=True) would wait for every running shard: minutes. ProcessPoolExecutor has no public way to
        end running work, so its worker processes are terminated from its private _processes table."""
        interrupt.stopping.set()
        with self.lock:
            self.stopped = True
            ex, self.executor = self.executor, None
            if ex is None:
                return
            procs = list((ex._processes or {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=2)
                if p.exitcode is None:
                    p.kill()
            # The progress queue is dropped, not closed: a worker ended mid-put may hold its lock. Its listener is
            # a daemon thread.
            self.queue = self.listener = None


POOL = _Pool()


# Flows call these rather than touch POOL: Dask ships a flow's function by value, with the globals it names, and
# POOL holds locks; module functions travel by reference.
def warm_pool(workers: int) -> None:
    POOL.warm(workers)


def shutdown_pool() -> None:
    POOL.shutdown()


def stop_pool() -> None:
    POOL.stop()


def resolve_workers(settings: RenderSettings) -> int:
    return settings.workers or os.cpu_count() or 1


def in_dask_worker() -> bool:
    """Whether this runs on a Dask worker, where the cluster is the process pool."""
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False
