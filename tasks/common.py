"""What every stage shares: content-addressed caching and retry on transient errors only."""

from __future__ import annotations

import concurrent.futures.process
import functools
import logging
from collections.abc import Callable
from pathlib import Path

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
    complete: Callable[[dict, dict], bool] | None = None,
    final_key: Callable[[dict, dict | None], str] | None = None,
) -> CacheKeyFnPolicy:
    """Cache on the task's precomputed content key, but only while its output is still in place.

    marker_of(parameters) gives (content key, URL of a JSON file the task writes last holding {"key": ...}).
    complete(parameters, marker) may refuse an output the marker vouches for (say, a file it names is gone);
    final_key(parameters, marker or None) may refine the key with what the marker holds.

    While the output is missing, the task runs under the key it will have once built, so that the next run is a
    Prefect cache hit on any machine sharing the result storage. A record whose output has since been deleted is
    dropped first: it must never answer for a missing output.
    """

    def key_fn(context, parameters: dict) -> str | None:
        key, marker_url = marker_of(parameters)
        marker = finished(marker_url, key)
        if marker is not None and complete is not None and not complete(parameters, marker):
            marker = None
        # Results hold URLs: the same content elsewhere is another record.
        cache_key = hashing.digest([final_key(parameters, marker) if final_key else key, marker_url])
        if marker is None:
            _forget(context.task, cache_key)
        return cache_key

    return CacheKeyFnPolicy(cache_key_fn=key_fn)


def _forget(task, cache_key: str) -> None:
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem
    from prefect.results import get_default_result_storage, resolve_result_storage

    store = task.result_storage
    store = resolve_result_storage(store, _sync=True) if store is not None else get_default_result_storage(_sync=True)
    if isinstance(store, LocalFileSystem):
        Path(store.basepath or ".").expanduser().joinpath(cache_key).unlink(missing_ok=True)
    elif isinstance(store, RemoteFileSystem):
        storage.remove(storage.join(store.basepath, cache_key))


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
