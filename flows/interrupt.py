"""Ctrl-C and SIGTERM for the CLI: one orderly stop, in seconds, that leaves no process behind.

Both signals raise Interrupted in the main thread (during a flow run Prefect turns SIGTERM into its own
TerminationSignal first, records the run as crashed, then re-sends it to our handler); during `serve` they stop
Prefect's runner from its own loop instead (see _serving). The stages end what they
started on the way out (the render pool, torchrun); `stopped` then stops the temporary Prefect server and says what
was kept. The server runs in a process group of its own: a terminal's Ctrl-C reaches the CLI's whole group, and
the server must outlive it until Prefect has recorded the crash, or Prefect's clients retry a dead server for
minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys

from hwocr import interrupt
from hwocr.interrupt import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
# While `serve` runs, a signal only asks it to stop: an exception raised at an arbitrary point of Prefect's runner (its
# event loop, or the main thread waiting on its loop threads) can leave it waiting forever.
_serving = False
_stop_runner = None  # cancels the runner's task from the signal handler, once its loop runs


def _handler(signum, frame) -> None:
    _received.append(signum)
    interrupt.stopping.set()
    if not _serving:
        raise Interrupted(signum)
    if _stop_runner is not None:
        _stop_runner()


def install() -> dict:
    """SIGINT and SIGTERM raise Interrupted; returns the handlers to restore ({} off the main thread)."""
    _received.clear()
    interrupt.stopping.clear()
    try:
        return {s: signal.signal(s, _handler) for s in SIGNALS}
    except ValueError:  # not the main thread: signals stay as they are
        return {}


def prepare(command: str, log_path: str | None) -> None:
    """Once Prefect is imported and its logging configured, before a flow starts."""
    own_server(log_path)
    quiet_console()
    if command == "serve":
        _runner_stops_on_signal()


@contextlib.contextmanager
def serving():
    """Around Prefect's `serve`: a signal stops the runner instead of raising (see _serving); `serve` returns and
    `received()` tells the CLI why."""
    global _serving
    _serving = True
    try:
        yield
    finally:
        _serving = False


def _runner_stops_on_signal() -> None:
    """Prefect's Runner puts its own SIGTERM handler in place of ours (it exits with status 0 and leaves a coroutine
    never awaited): ours instead. A signal before the runner's loop starts (while `serve` registers the deployments)
    makes it return at once; one after cancels its task, as asyncio does on Ctrl-C."""
    from prefect.runner import Runner

    start = Runner.start

    async def stoppable_start(self, *args, **kwargs) -> None:
        global _stop_runner
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        _stop_runner = lambda: loop.call_soon_threadsafe(task.cancel)  # noqa: E731
        try:
            if not _received:
                await start(self, *args, **kwargs)
        except asyncio.CancelledError:
            if not _received:
                raise
        finally:
            _stop_runner = None

    if not getattr(Runner.start, "hwocr", False):
        stoppable_start.hwocr = True
        Runner.start = stoppable_start
    Runner.handle_sigterm = lambda self, signum=signal.SIGTERM, frame=None: _handler(signum, frame)


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
        if interrupt.stopping.is_set():
            return False
        e = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        while e is not None:
            if isinstance(e, (KeyboardInterrupt, interrupt.Stopped)) or type(e).__name__ == "TerminationSignal":
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


# uvicorn, stopped (SIGTERM, its orderly stop) once the pipe named by argv[1] reads EOF: its parent has exited.
_ON_LIFELINE = """
import os, signal, sys, threading
fd = int(sys.argv.pop(1))
def watch():
    while os.read(fd, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "uvicorn"
from uvicorn.main import main
main()
"""


def own_server(log_path: str | None) -> None:
    """Make the temporary Prefect server one that a terminal's Ctrl-C does not reach (see the module's doc), its
    output in the run's log file (when it is stopped mid-write it prints tracebacks).

    Prefect keeps one SubprocessASGIServer per port and asks for SubprocessASGIServer() (port None) when it needs
    its temporary server; registering ours under None first (as prefect.testing's harness does) makes it that one.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return  # a server of the user's: nothing to start
    from prefect.server.api.server import SubprocessASGIServer

    class Server(SubprocessASGIServer):
        def start(self, timeout: int | None = None) -> None:
            # Two runs creating one Prefect database at once can fail one server's migration (Prefect then
            # restarts it, a traceback and a minute later): servers on one PREFECT_HOME start one at a time.
            import fcntl

            from prefect.settings import get_current_settings

            home = get_current_settings().home
            home.mkdir(parents=True, exist_ok=True)
            with open(home / ".hwocr-server-start.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # dropped when the file closes, or the process dies
                super().start(timeout)

        _lifeline: int | None = None

        def _cut_lifeline(self) -> None:
            if self._lifeline is not None:
                os.close(self._lifeline)
                self._lifeline = None

        def stop(self) -> None:
            super().stop()
            self._cut_lifeline()

        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect 3.8.8's command (pinned in pyproject.toml), in a process group of its own, on a lifeline: the
            # server holds the read end of a pipe whose only write end is this process's, and stops at its EOF, so
            # a CLI killed outright (SIGKILL, no chance to stop it) leaves no server behind.
            import prefect
            from prefect.settings import get_current_settings

            self._cut_lifeline()  # a server Prefect restarts: the one before goes
            read_end, self._lifeline = os.pipe()  # both non-inheritable: no other child holds the write end
            # The child writes to its own copy of the file descriptor.
            try:
                with open(log_path, "a", encoding="utf-8") if log_path else contextlib.nullcontext() as output:
                    return subprocess.Popen(
                        args=[sys.executable, "-c", _ON_LIFELINE, str(read_end), "--app-dir",
                              str(prefect.__module_path__.parent), "--factory",
                              "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
                              str(self.port), "--log-level", "error", "--lifespan", "on"],
                        env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                             "PREFECT__SERVER_FINAL": "1",
                             **get_current_settings().to_environment_variables(exclude_unset=True)},
                        stdout=output, stderr=output, process_group=0, pass_fds=(read_end,))
            finally:
                os.close(read_end)

    if None not in SubprocessASGIServer._instances:
        Server()


def stop_server() -> None:
    """Send Prefect's last events and logs, then stop the temporary server, in about a second (Prefect's own stop
    at exit waits up to 5 s, after joining every thread)."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    if server is None or server.server_process is None:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=1.0)
        except Exception:  # noqa: BLE001 - a stop must not fail on what it could not send
            pass
    interrupt.end_process(server.server_process, grace=2)
    server.stop()  # forgets the process (already ended) and the instance


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
    render = sys.modules.get("tasks.render")
    if render:
        render.POOL.stop()  # idempotent: the dataset flow stops it on its way out
    if "prefect" in sys.modules:
        stop_server()
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
