"""Content hashes: cache keys are built from what a stage reads, never from paths or timestamps."""

import ast
import hashlib
import importlib.metadata
import json
import os
from typing import Any

from hwocr import storage


def digest(obj: Any) -> str:
    """sha256 of a canonical JSON rendering of obj."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def seed(*parts: object) -> int:
    """A 64-bit seed from parts, the same in every process (unlike hash()): blake2b of their "|"-joined text. The
    rendered images' seeds come from it, so its form is pinned: changing it changes every dataset's bytes."""
    key = "|".join(map(str, parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_url(url: str, chunk: int = 1 << 20) -> str:
    if storage.is_local(url):
        # The CLI's checks and then the flow hash the same fonts in one process: a local file is hashed again only
        # when its size, time or inode changed.
        st = os.stat(storage.local_path(url))
        key = (os.path.abspath(storage.local_path(url)), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in _LOCAL_SHA:
            _LOCAL_SHA[key] = _sha256_stream(url, chunk)
        return _LOCAL_SHA[key]
    return _sha256_stream(url, chunk)


_LOCAL_SHA: dict[tuple, str] = {}


def _sha256_stream(url: str, chunk: int) -> str:
    h = hashlib.sha256()
    with storage.open_url(url, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("hwocr", "synth", "models", "tasks", "flows")


def _module_file(name: str, root: str) -> str | None:
    """The source file of a project module by dotted name, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imports(path: str, root: str) -> set[str]:
    """The project files a source file imports, at any depth of its body (lazy imports count)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from synth import effects`
    return {f for n in names if (f := _module_file(n, root))}


def code_version(*files: str, libraries: tuple[str, ...] = (), root: str = ROOT) -> str:
    """The code version of a cache key: the source of the given files and of every project module they import,
    transitively, plus the installed version of each library (by import name: whichever distribution provides it,
    e.g. cv2 from opencv-python-headless). Derived, so no list can miss a helper."""
    seen, todo = set(), [os.path.abspath(f) for f in files]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imports(path, root))
    h = hashlib.sha256()
    for path in sorted(seen):
        h.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            h.update(f.read() + b"\0")
    provides = importlib.metadata.packages_distributions() if libraries else {}
    for name in libraries:
        for dist in sorted(provides.get(name, [name])):
            h.update(f"{name}:{dist}=={importlib.metadata.version(dist)}\0".encode())
    return h.hexdigest()[:16]
