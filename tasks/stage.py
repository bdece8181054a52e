"""The one stage contract: typed inputs in, a typed result out, and that result, written last beside the output, is
the marker that says the output is complete.

A stage declares what enters its key (the settings it reads, content digests of its inputs, upstream results'
keys) and where its marker lives; `stage` makes the Prefect task. Prefect is the only cache: a valid marker (there,
of this stage's result type, of this key, its outputs in place, covering what is asked) is a Prefect cache hit, adopted
into the result storage when no record holds it yet (another machine made it, the records were deleted); anything
else runs, and a record that outlived its output is expired first, so it never answers for a missing output.

Two runs of one config on one output at once share the work: each record is locked (hwocr/locks.py) under Prefect's
SERIALIZABLE isolation, so one run writes a stage's output while the other waits for it and takes it as a cache hit.
The cache key function adopts or expires records under the same lock, so it never writes a record that another run
is about to commit.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, ValidationError

from hwocr import hashing, storage
from hwocr.hashing import stage_key
from hwocr.locks import LOCKS
from hwocr.remote import is_transient

log = logging.getLogger("hwocr")


class StageResult(BaseModel):
    """A stage's typed result; `key` is the stage's content key, filled in by `stage`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = ""

    def complete(self) -> bool:
        """Whether the outputs it names are still in place: a marker can outlive a deleted file."""
        return True


R = TypeVar("R", bound=StageResult)


def record_key(key: str, marker_url: str) -> str:
    """The Prefect record (and lock) of a stage's output: results hold URLs, so the same content elsewhere is
    another record."""
    return hashing.digest([key, marker_url])


def load_result(url: str, result: type[R], key: str | None = None) -> R | None:
    """The stage result at url when it is complete (and of `key`, when given), else None."""
    data = storage.read_json(url)
    if not data:
        return None
    try:
        done = result.model_validate(data)
    except ValidationError:
        return None
    return done if (key is None or done.key == key) and done.complete() else None


class StageInput(BaseModel):
    """What a stage reads, typed: `reads()` is what enters its key (hashed with the stage's name and code version),
    `marker(key)` the URL its result is written to, last; `covers(done)` may refuse a complete output that does not
    cover what this input asks (a shorter shard)."""

    model_config = ConfigDict(frozen=True)

    def reads(self) -> Any:
        raise NotImplementedError

    def marker(self, key: str) -> str:
        raise NotImplementedError

    def covers(self, done: StageResult) -> bool:
        return True


def stage(*, name: str, code: str, result: type[R], task_run_name: str | None = None, **options):
    """Make fn(inp, *rest) -> result a Prefect task under the contract: inp, a StageInput, says what enters the key
    and where the result goes; the other parameters (a task runner's futures, where to track) do not enter it. A
    keyword-only `key` parameter of fn receives the content key (a folder named by it); it is not a task
    parameter."""

    def wrap(fn: Callable[..., R]):
        signature = inspect.signature(fn)
        wants_key = "key" in signature.parameters
        names = [n for n in signature.parameters if n != "key"]

        def key_of(params: dict) -> str:
            return stage_key(name, code, params[names[0]].reads())

        def valid(params: dict, k: str) -> R | None:
            inp = params[names[0]]
            done = load_result(inp.marker(k), result, k)
            return done if done is not None and inp.covers(done) else None

        @functools.wraps(fn)
        def run(*args, **kwargs) -> R:
            params = dict(zip(names, args)) | kwargs
            k = key_of(params)
            marker = params[names[0]].marker(k)
            try:
                done = (fn(**params, key=k) if wants_key else fn(**params)).model_copy(update={"key": k})
                storage.write_json(marker, done.model_dump(mode="json"))
            except OSError as e:  # a full disk is the user's to fix, in one line: not a stack, not a retry
                said = storage.no_space(e, where=storage.local_path(marker).rsplit("/", 1)[0]
                                        if storage.is_local(marker) else None)
                if said is None:
                    raise
                raise said from None
            return done

        run.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "key"])

        def cache_key(context, parameters: dict) -> str:
            k = key_of(parameters)
            url = parameters[names[0]].marker(k)
            record = record_key(k, url)
            store = context.result_store
            holder = f"hwocr-cache-key-{uuid.uuid4()}"
            if not LOCKS.acquire_lock(record, holder, acquire_timeout=0):
                _logger().warning("another run is writing %s: waiting for it", url.rsplit("/", 1)[0])
                LOCKS.acquire_lock(record, holder)
            try:
                done = valid(parameters, k)
                if done is not None and not store.exists(record):
                    store.write(obj=done, key=record, holder=holder)
                elif done is None and store.exists(record):
                    store.write(obj=None, key=record, holder=holder, expiration=datetime.datetime.now(datetime.UTC)
                                - datetime.timedelta(seconds=1))
            finally:
                LOCKS.release_lock(record, holder)
            return record

        # SERIALIZABLE: the task's transaction holds the record's lock while it runs and commits; a run that
        # waited for it finds the record committed and is Cached.
        policy = CacheKeyFnPolicy(cache_key_fn=cache_key).configure(isolation_level="SERIALIZABLE", lock_manager=LOCKS)
        return task(run, name=name, task_run_name=task_run_name, cache_policy=policy, persist_result=True, **options)

    return wrap


def _logger():
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - no run context (a stage called as a plain function)
        return log


def retry_transient(task, task_run, state) -> bool:
    """retry_condition_fn: retry network hiccups and crashed workers, never bad input."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return is_transient(exc)
    return False


# The one retry preset of the stages that read and write storage: network hiccups and crashed workers, twice.
IO_RETRY = {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=2),
            "retry_condition_fn": retry_transient}
