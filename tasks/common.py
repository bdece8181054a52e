"""What every stage shares: content-addressed caching and retry on transient errors only."""

from __future__ import annotations

import concurrent.futures.process
import logging
from collections.abc import Callable

from prefect.cache_policies import CacheKeyFnPolicy

from hwocr import hashing, storage
from hwocr.errors import HwocrError, TransientError

log = logging.getLogger("hwocr")

_TRANSIENT = (
    TransientError,
    ConnectionError,
    TimeoutError,
    concurrent.futures.process.BrokenProcessPool,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, HwocrError):
        return False
    # botocore/aiohttp network errors surface as OSError subclasses with these names.
    return type(exc).__name__ in {"ClientConnectorError", "ServerDisconnectedError", "EndpointConnectionError",
                                  "ReadTimeoutError", "ConnectTimeoutError"}


def retry_transient(task, task_run, state) -> bool:
    """retry_condition_fn: retry network hiccups and crashed workers, never bad input."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return is_transient(exc)
    return False


def finished(marker_url: str, key: str) -> dict | None:
    """The marker of a complete output built from `key`, or None (missing, unreadable or another key's)."""
    marker = storage.read_json(marker_url)
    return marker if marker and marker.get("key") == key else None


def output_cache(
    marker_of: Callable[[dict], tuple[str, str]],
    refine: Callable[[dict, dict], str | None] | None = None,
) -> CacheKeyFnPolicy:
    """Cache on the task's precomputed content key, but only while its output is still in place.

    marker_of(parameters) gives (content key, URL of a JSON file the task writes last holding {"key": ...}).
    A deleted or overwritten output yields no key, so the task runs again instead of returning a stale
    path. refine(parameters, marker) may turn the marker into the final key, or None to run again.
    """

    def key_fn(context, parameters: dict) -> str | None:
        key, marker_url = marker_of(parameters)
        marker = finished(marker_url, key)
        if marker is None:
            return None
        final = refine(parameters, marker) if refine else key
        # Results hold URLs: the same content elsewhere is another record.
        return None if final is None else hashing.digest([final, marker_url])

    return CacheKeyFnPolicy(cache_key_fn=key_fn)
