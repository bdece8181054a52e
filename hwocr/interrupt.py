"""What an interrupted run shares between the CLI (flows/interrupt.py) and the stages: the exception a signal
becomes, the flag that says the run is stopping, and how a child process is ended."""

from __future__ import annotations

import os
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


def descendants(pid: int) -> list[int]:
    """Every live process below pid (Linux /proc; empty elsewhere), children first."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL for proc and whatever it started if it is not gone within grace seconds.

    The processes below it are listed first: a killed parent leaves them to init, where nothing would find them.
    """
    if proc.poll() is not None:
        return
    below = descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in below:  # what it started and left behind (a rank torchrun could not end in time)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
