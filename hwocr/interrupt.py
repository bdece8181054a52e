"""What an interrupted run shares between the CLI (flows/signals.py) and the stages: the exception a signal
becomes, the flag that says the run is stopping, and how a child process is ended."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading

from hwocr.errors import HwocrError

# Set once a run is being stopped (a signal came, or a stage saw one): what fails after it is the stop, not news.
stopping = threading.Event()


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread. A KeyboardInterrupt, so that nothing catching Exception
    swallows it and libraries treat it as the user's stop (Prefect records the run as crashed)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stopped(HwocrError):
    """Work given up because the run is stopping (its render pool was ended): never retried."""


def end_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL for proc and whatever it started if it is not gone within grace seconds.

    The processes below it are listed first: a killed parent leaves them to init, where nothing would find them.
    """
    import psutil

    if proc.poll() is not None:
        return
    try:
        below = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        below = []
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in below:  # what it started and left behind (a rank torchrun could not end in time)
        with contextlib.suppress(psutil.Error):
            child.kill()
