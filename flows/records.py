"""Where a flow's stages keep their Prefect records (set once per flow), whether a stage's output came from them,
and what Prefect's run loggers put on the console."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from hwocr import hashing, storage
from hwocr.errors import HwocrError


class _MessageOnly(logging.Filter):
    """Prefect logs a failed run's exception with its stack; an HwocrError is worded for the user (bad input, a
    missing file, refused credentials), so its message alone goes to the console, the log and the UI."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HwocrError):
            record.exc_info = record.exc_text = None
        return True


# Prefect's words for a task ended by another's failure, and for a failure the run ends with: the CLI says the cause
# in one line (`hwocr: error: ...`, or the traceback of an unexpected error).
CONSEQUENCES = ("cancelled by the task runner", "did not reach a 'COMPLETED' state", "Finished in state Failed(",
                "Encountered exception during execution")


class _Consequence(logging.Filter):
    """Tasks the runner cancels because the flow already failed, those whose upstream failed, and each failure on its
    way up to the run's end are logged at INFO (the log file keeps them), not among the errors on the console,
    where the run's end says the one cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.ERROR and any(m in message for m in CONSEQUENCES):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):  # the loggers of Prefect's task and flow engines
    logging.getLogger(_name).addFilter(_MessageOnly())
    logging.getLogger(_name).addFilter(_Consequence())


@functools.lru_cache(maxsize=8)
def _results_block(url: str):
    from prefect.filesystems import RemoteFileSystem

    # Prefect takes only saved blocks for remote storage. The block holds the URL and nothing else: s3fs reads the
    # credentials from the environment of whichever machine runs the task.
    block = RemoteFileSystem(basepath=url)
    block.save("hwocr-results-" + hashing.digest(url)[:16], overwrite=True)
    return block


def result_storage(url: str):
    """Prefect result storage at url, where its cache records live: any machine that points its tasks at the same
    storage gets cache hits, whatever its own Prefect database holds."""
    if storage.is_local(url):
        return Path(storage.local_path(url))
    return _results_block(url)


def stages_at(url: str, *stages) -> tuple:
    """The stages with their records at url: a flow's stages keep theirs in one place, its output's."""
    where = result_storage(url)
    return tuple(s.with_options(result_storage=where) for s in stages)


def run_stage(stage_task, *args, **kwargs) -> tuple[Any, bool]:
    """Run a stage in the flow: (its result, whether it came from the cache)."""
    state = stage_task(*args, return_state=True, **kwargs)
    return state.result(), state.name == "Cached"


def was_cached(future) -> bool:
    """Whether a stage's output came from the cache rather than from this run."""
    return future.state.name == "Cached"
