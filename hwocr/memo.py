"""The one memo of what a local file holds: the CLI's checks and then the flow read the same fonts, charsets and
catalogues in one process, and a file edited in place must be read again."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def by_file(maxsize: int = 256) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Memoize fn(path, *args) on the file's identity (absolute path, size, modification time, inode) and args.
    A missing file raises FileNotFoundError, as os.stat does."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.lru_cache(maxsize=maxsize)
        def cached(identity: tuple, *args) -> T:
            return fn(identity[0], *args)

        @functools.wraps(fn)
        def call(path: str, *args) -> T:
            st = os.stat(path)
            return cached((os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino), *args)

        call.cache_clear = cached.cache_clear
        return call

    return wrap
