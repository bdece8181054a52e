"""Content hashes: cache keys are built from what a stage reads, never from paths or timestamps."""

import hashlib
import json
from typing import Any

from hwocr import storage


def digest(obj: Any) -> str:
    """sha256 of a canonical JSON rendering of obj."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_url(url: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with storage.open_url(url, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(*modules: Any) -> str:
    """Hash of the source files of the given modules (or file paths): the 'code version' of a cache key."""
    h = hashlib.sha256()
    for m in modules:
        with open(m if isinstance(m, str) else m.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()
