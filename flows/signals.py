"""Ctrl-C and SIGTERM for the CLI: one orderly stop, in seconds, that leaves no process behind.

Both signals raise Interrupted in the main thread (during a flow run Prefect turns SIGTERM into its own
TerminationSignal first, records the run as crashed, then re-sends it to our handler); during `serve` they stop
Prefect's runner from its own event loop instead (see serve). The stages end what they started on the way out (the
render pool, torchrun); `stopped` says what was kept, and the CLI then stops the temporary Prefect server
(flows/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys

from hwocr import interrupt
from hwocr.interrupt import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _handler(signum, frame) -> None:
    _received.append(signum)
    interrupt.stopping.set()
    raise Interrupted(signum)


def install() -> dict:
    """SIGINT and SIGTERM raise Interrupted; returns the handlers to restore ({} off the main thread)."""
    _received.clear()
    interrupt.stopping.clear()
    try:
        return {s: signal.signal(s, _handler) for s in SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        return {}


def serve(deployments: list, limit: int | None) -> None:
    """Prefect's runner for the deployments until a signal (what `prefect.serve` does), then its own orderly stop.

    The runner's event loop runs in a thread of its own, so the runner leaves the signals to us (started in the main
    thread, it puts in its own SIGTERM handler, which exits with status 0 while it is starting). A signal cancels
    the runner's task on its loop (as asyncio does on Ctrl-C), never raises at an arbitrary point of it, which can
    leave the runner waiting forever; `received()` then tells the CLI why `serve` returned."""
    import threading

    from prefect.runner import Runner

    runner = Runner(limit=limit, pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    ready, running, failed = threading.Event(), {}, []

    async def main() -> None:
        running["loop"], running["task"] = asyncio.get_running_loop(), asyncio.current_task()
        ready.set()
        if not _received:  # a signal before the loop ran: nothing to stop
            await runner.start()

    def run() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass  # the stop
        except BaseException as e:  # noqa: BLE001 - raised again in the main thread
            failed.append(e)

    def stop(signum, frame) -> None:
        _received.append(signum)
        interrupt.stopping.set()
        if ready.is_set():
            running["loop"].call_soon_threadsafe(running["task"].cancel)

    old = {s: signal.signal(s, stop) for s in SIGNALS}
    try:
        thread = threading.Thread(target=run, name="hwocr-serve")
        thread.start()
        while thread.is_alive():
            thread.join(0.5)  # a signal is handled between two waits
    finally:
        restore(old)
    if failed:
        raise failed[0]


@contextlib.contextmanager
def ignored():
    """SIGINT and SIGTERM ignored in the block (off the main thread: as they are)."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in SIGNALS}
    except ValueError:
        old = {}
    try:
        yield
    finally:
        restore(old)


def restore(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)


def received() -> int | None:
    """The signal that stopped the run, if one did (Prefect's `serve` returns normally after Ctrl-C)."""
    return _received[0] if _received else None


def signal_of(e: BaseException) -> int | None:
    """The signal behind an exception that means "interrupted", else None."""
    if isinstance(e, Interrupted):
        return e.signum
    if isinstance(e, KeyboardInterrupt):
        return signal.SIGINT
    prefect = sys.modules.get("prefect.exceptions")
    return e.signal if prefect and isinstance(e, prefect.TerminationSignal) else None


class _QuietWhenStopping(logging.Filter):
    """Prefect's console lines while a run is being stopped (each task failing with it, the crash) are the stop,
    not news: the log file keeps them, the console gets the one line `stopped` prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import TerminationSignal

        if interrupt.stopping.is_set():
            return False
        e = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        while e is not None:
            if isinstance(e, (KeyboardInterrupt, interrupt.Stopped, TerminationSignal)):
                return False
            e = e.__cause__ or e.__context__
        return True


def quiet_console() -> None:
    """Put the filter on Prefect's console handlers (after Prefect configured its logging)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, PrefectConsoleHandler) and not any(isinstance(f, _QuietWhenStopping) for f in h.filters):
                h.addFilter(_QuietWhenStopping())


def kept(command: str, config) -> str:
    """What an interrupted run leaves for its re-run to start from."""
    from hwocr import storage

    parts = []
    out = getattr(config, "out", None)
    if out and command in ("data", "run"):
        root = os.path.join(storage.local_path(out), "shards") if storage.is_local(out) else None
        if root is None:
            parts.append(f"finished shards under {out}")
        else:
            done = [name for split in (os.listdir(root) if os.path.isdir(root) else [])
                    for name in os.listdir(os.path.join(root, split))
                    if not name.startswith(".") and os.path.exists(os.path.join(root, split, name, "manifest.json"))]
            parts.append(f"{len(done)} finished shard{'s' * (len(done) != 1)} under {out}")
    train = sys.modules.get("tasks.train")
    if command in ("train", "run") and train and train.WORK_DIRS:
        last = os.path.join(train.WORK_DIRS[-1], "last.pth")
        if os.path.exists(last):
            import torch

            iteration = torch.load(last, map_location="cpu", weights_only=False, mmap=True)["iteration"]
            parts.append(f"{last} at iteration {iteration}")
        else:
            parts.append(f"no last.pth yet under {train.WORK_DIRS[-1]} (training saves it at each validation)")
    return f"kept {' and '.join(parts)}" if parts else "nothing was in progress"


def stopped(signum: int, command: str, config) -> int:
    """The interrupted run's way out: end what is left, print one line, return 130 (SIGINT) or 143 (SIGTERM)."""
    interrupt.stopping.set()
    # A signal during the rest of the stop must not cut it short: the next one is the user's to send.
    for s in SIGNALS:
        try:
            signal.signal(s, signal.SIG_IGN)
        except ValueError:
            break
    render = sys.modules.get("synth.pool")
    if render:
        render.POOL.stop()  # idempotent: the dataset flow stops it on its way out
    name = signal.Signals(signum).name
    if command == "serve":
        print(f"hwocr: interrupted ({name}): serving stopped", file=sys.stderr, flush=True)
    else:
        resume = "; run the same command again to resume" if command in ("data", "train", "run") else ""
        print(f"hwocr: interrupted ({name}): {kept(command, config)}{resume}", file=sys.stderr, flush=True)
    # The interpreter's last garbage collection walks every object Prefect, torch and MLflow made: seconds on a
    # busy machine, for memory the exit frees anyway. Frozen objects are left out of it.
    gc.freeze()
    return 128 + signum
