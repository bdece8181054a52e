"""Content hashes: cache keys are built from what a stage reads, never from paths or timestamps."""

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from typing import Any

import grimp

from hwocr import memo, storage


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
        return _local_sha256(storage.local_path(url), chunk)
    return _sha256_stream(url, chunk)


@memo.by_file(maxsize=1024)
def _local_sha256(path: str, chunk: int) -> str:
    return _sha256_stream(path, chunk)


def _sha256_stream(url: str, chunk: int) -> str:
    h = hashlib.sha256()
    with storage.open_url(url, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_distributions = functools.cache(importlib.metadata.packages_distributions)  # import name -> distributions


@functools.cache
def project_packages() -> tuple[str, ...]:
    """The top-level packages installed with this one (its distribution's), so the ground names no upper layer."""
    provides = _distributions()
    ours = set(provides[__name__.partition(".")[0]])
    return tuple(sorted(name for name, dists in provides.items() if ours & set(dists)))


@functools.cache
def _graph(folders: tuple[tuple[str, str], ...]) -> grimp.ImportGraph:
    # Keyed by the folders the packages are found in: the same packages elsewhere are another graph.
    return grimp.build_graph(*(name for name, _ in folders), cache_dir=None)


def _module_path(module: str, folders: dict[str, str]) -> str:
    top, _, rest = module.partition(".")
    base = os.path.join(folders[top], *rest.split(".")) if rest else folders[top]
    return base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")


def _module_name(path: str, folders: dict[str, str]) -> str | None:
    path = os.path.realpath(path)
    for name, folder in folders.items():
        rel = os.path.relpath(path, os.path.realpath(folder))
        if not rel.startswith(os.pardir) and rel.endswith(".py"):
            parts = [name, *rel[:-3].split(os.sep)]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def _folders() -> dict[str, str]:
    return {name: spec.submodule_search_locations[0] for name in project_packages()
            if (spec := importlib.util.find_spec(name)) and spec.submodule_search_locations}


def project_modules(*files: str) -> set[str]:
    """The project modules that running the given files runs: theirs, every one they import, transitively, lazy
    imports too (grimp's import graph, as the layer contract in pyproject.toml reads it), and their packages."""
    folders = _folders()
    graph = _graph(tuple(sorted(folders.items())))
    modules = set()
    for f in files:
        module = _module_name(f, folders)
        if module is None:
            raise ValueError(f"{f} is not a module of {', '.join(folders)}")
        modules |= {module, *graph.find_upstream_modules(module)}
    for module in list(modules):  # importing a module runs its packages' __init__ first
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return modules


def code_version(*files: str, libraries: tuple[str, ...] = (), data: tuple[str, ...] = ()) -> str:
    """The code version of a cache key: the source of project_modules(*files), plus the installed version of each
    library (by import name: whichever distribution provides it, e.g. cv2 from opencv-python-headless), plus the
    bytes of the data files the code reads as part of itself (a measured table). Derived, so no list can miss a
    helper."""
    folders = _folders()
    h = hashlib.sha256()
    for module in sorted(project_modules(*files)):
        h.update(module.encode("utf-8") + b"\0")
        with open(_module_path(module, folders), "rb") as f:
            h.update(f.read() + b"\0")
    for path in data:
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    for name in libraries:
        for dist in sorted(_distributions().get(name, [name])):
            h.update(f"{name}:{dist}=={importlib.metadata.version(dist)}\0".encode())
    return h.hexdigest()[:16]


def stage_key(name: str, code: str, reads) -> str:
    """A stage's content key: its name, its code version and what it reads."""
    return digest({"stage": name, "code": code, "reads": reads})
