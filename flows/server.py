"""The temporary Prefect server of a run when PREFECT_API_URL is unset: `prefect server start` as a child process.

It runs in a process group of its own: a terminal's Ctrl-C reaches the CLI's group, and the server must outlive
the CLI's stop until Prefect has recorded it, or Prefect's clients retry a dead server for minutes. It holds the
read end of a pipe whose only write end is the CLI's and stops at its EOF, so a CLI killed outright (SIGKILL, no
chance to stop it) leaves no server behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from hwocr import interrupt
from hwocr.errors import HwocrError

START_TIMEOUT = 90  # seconds: a first start creates the database; 2 busy cores have been seen to need over 20

# `prefect server start`, stopped (SIGTERM, uvicorn's orderly stop) once the pipe named by argv[1] reads EOF.
_ON_LIFELINE = """
import os, signal, sys, threading
fd = int(sys.argv.pop(1))
def watch():
    while os.read(fd, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "prefect"
from prefect.cli import app
sys.exit(app())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def temporary(log_path: str | None, scheduler: bool = False) -> Iterator[str | None]:
    """A server for this process and its children while the block runs (yields its API URL), or nothing when the
    user's Prefect settings name one. scheduler: Prefect's scheduling services (`serve` needs them)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, get_current_settings

    if PREFECT_API_URL.value():
        yield None
        return
    home = get_current_settings().home
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": str(scheduler).lower(),
           "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": str(scheduler).lower()}
    read_end, write_end = os.pipe()  # both non-inheritable: no other child holds the write end
    proc = None
    try:
        # Two servers creating one Prefect database at once can fail one's migration: they start one at a time.
        with open(home / ".hwocr-server-start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # dropped when the file closes, or the process dies
            port = _free_port()
            url = f"http://127.0.0.1:{port}/api"
            with open(log_path, "a", encoding="utf-8") if log_path else contextlib.nullcontext() as output:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _ON_LIFELINE, str(read_end), "server", "start", "--host", "127.0.0.1",
                     "--port", str(port), "--log-level", "ERROR"],
                    env=env, stdin=subprocess.DEVNULL, stdout=output or subprocess.DEVNULL,
                    stderr=output or subprocess.DEVNULL, process_group=0, pass_fds=(read_end,))
            os.close(read_end)
            read_end = None
            deadline = time.monotonic() + START_TIMEOUT
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    where = f" (its output: {log_path})" if log_path else ""
                    raise HwocrError(f"the temporary Prefect server did not start within {START_TIMEOUT} s{where}; "
                                     "or set PREFECT_API_URL to a running server")
                time.sleep(0.2)
        os.environ["PREFECT_API_URL"] = url  # this process's Prefect, and every child's
        refresh_global_settings_context()
        yield url
    finally:
        if read_end is not None:
            os.close(read_end)
        if proc is not None:
            _flush()
            interrupt.end_process(proc, grace=2)
            os.environ.pop("PREFECT_API_URL", None)
            refresh_global_settings_context()
        os.close(write_end)


def _flush() -> None:
    """Send Prefect's last logs and events before the server goes (in about a second)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a stop must not fail on what it could not send
            worker.drain_all(timeout=1.0)
