"""deep-text-recognition-benchmark's LMDB: gt.txt + images -> an LMDB its dataset.py reads, and the options it
reads with.

Keys: image-%09d (encoded image bytes, from 1), label-%09d (UTF-8), num-samples (decimal). The map is sized
from the data and grown on MapFullError; the database is built under a temp name and renamed into place.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import lmdb
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from hwocr import hashing, storage
from hwocr.errors import HwocrError

MARKER = "hwocr.json"  # the pack stage's result, written last
# What the benchmark's dataset.py passes to lmdb.open.
READER_OPTIONS = dict(max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)


class PackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    commit_every: PositiveInt = Field(1000, description="Samples per LMDB write transaction.")
    initial_map_mb: NonNegativeInt = Field(
        0, description="Initial LMDB map size in MiB; 0 sizes it from the data. It grows when full."
    )
    check: Literal["digest", "decode"] = Field(
        "digest", description="How images are checked: digest, an image in a render shard's archive against the "
        "sha256 its manifest.json records (the others decoded); decode, every image decoded."
    )
    bad_samples: Literal["error", "skip"] = Field(
        "error", description="A gt.txt line naming a missing or undecodable image: stop, or skip and count it."
    )


def read_gt(gt_url: str) -> list[tuple[int, str, str]]:
    """(line number, path, label) for every non-blank line; malformed lines raise naming file and line."""
    try:
        data = storage.read_bytes(gt_url)
    except FileNotFoundError:
        raise HwocrError(f"gt file {gt_url} does not exist") from None
    text = storage.decode_text(data, f"gt file {gt_url}")
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs != 1:
            what = "no tab" if tabs == 0 else f"{tabs} tabs"
            raise HwocrError(f"{gt_url} line {n}: expected 'path<TAB>label', found {what}: {line[:80]!r}")
        path, label = line.split("\t")
        if not path or not label:
            raise HwocrError(f"{gt_url} line {n}: empty {'path' if not path else 'label'}")
        rows.append((n, path, label))
    if not rows:
        raise HwocrError(f"gt file {gt_url} has no samples")
    return rows


def _check_image(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "empty image"
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


class ShardDigests:
    """The sha256 that a render shard's manifest.json records for each image of its archive, by gt path.

    An image whose bytes match its digest is the one the shard encoded, so packing skips decoding it (most of a
    pack's time); an image outside a shard archive, or in a shard without a manifest, is decoded to check it.
    """

    def __init__(self, read) -> None:
        self.read = read
        self.by_dir: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    def __call__(self, path: str) -> str | None:
        cut = path.find(storage.ARCHIVE_MARK)
        if cut < 0:
            return None
        shard, _, archive = path[:cut + len(storage.ARCHIVE_MARK) - 1].rpartition("/")
        with self.lock:
            files = self.by_dir.get(shard)
        if files is None:
            try:
                manifest = json.loads(self.read(f"{shard}/manifest.json" if shard else "manifest.json"))
                files = manifest["files"] if isinstance(manifest.get("files"), dict) else {}
            except (OSError, ValueError, AttributeError, KeyError):
                files = {}
            with self.lock:
                self.by_dir[shard] = files
        return files.get(f"{archive}/{path[cut + len(storage.ARCHIVE_MARK):]}")


def _load_block(read, digests: Callable[[str], str | None], image_root: str, gt_url: str, on_bad: str,
                block: list[tuple[int, str, str]]) -> list:
    """(bytes, label) per row, or None for a skipped row; raises naming gt file and line otherwise."""
    out = []
    for n, path, label in block:
        try:
            data = read(path)
        except FileNotFoundError:
            problem = f"image {storage.join(image_root, path)} does not exist"
        except ValueError as e:
            problem = str(e)
        else:
            want = digests(path)
            if want is not None:
                if hashlib.sha256(data).hexdigest() == want:
                    out.append((data, label))
                    continue
                problem = (f"image {storage.join(image_root, path)} is not the one its shard rendered (its sha256 "
                           "differs from the shard's manifest.json)")
            elif (problem := _check_image(data)) is None:
                out.append((data, label))
                continue
            else:
                problem = f"image {storage.join(image_root, path)} cannot be decoded ({problem})"
        if on_bad != "skip":
            raise HwocrError(f"{gt_url} line {n}: {problem}")
        out.append(None)
    return out


def _blocks(rows: Iterable[tuple[int, str, str]], size: int = 256) -> Iterator[list[tuple[int, str, str]]]:
    block = []
    for row in rows:
        block.append(row)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _samples(read: storage.Reader, image_root: str, gt_url: str, rows: Iterable[tuple[int, str, str]],
             settings: PackSettings, stats: dict):
    """Read and check images on threads (decoding and hashing release the GIL), yielding them in gt order.

    Rows are taken as they come, a few blocks ahead of the writer: a stream of rows (a split whose last shards
    still render) is packed while it arrives.
    """
    workers = os.cpu_count() or 1
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    digests = ShardDigests(read) if settings.check == "digest" else lambda path: None
    load = functools.partial(_load_block, read, digests, image_root, gt_url, settings.bad_samples)
    ahead: collections.deque = collections.deque()
    blocks = _blocks(rows)
    try:
        while True:
            for block in itertools.islice(blocks, 2 * workers - len(ahead)):
                ahead.append(ex.submit(load, block))
            if not ahead:
                return
            for item in ahead.popleft().result():
                if item is None:
                    stats["skipped"] += 1
                else:
                    stats["kept"].append(stats["rows"])
                    yield item
                stats["rows"] += 1
    finally:  # a failed pack stops reading at once instead of draining every queued block
        ex.shutdown(wait=True, cancel_futures=True)


def _write(env_dir: str, samples, settings: PackSettings, estimate: int) -> int:
    map_size = max(settings.initial_map_mb << 20 or estimate, 1 << 20)
    env = lmdb.open(env_dir, map_size=map_size, subdir=True, meminit=False, map_async=False)
    try:
        cnt = 0
        batch: list[tuple[bytes, bytes]] = []

        def commit(items):
            while True:
                try:
                    with env.begin(write=True) as txn:
                        for k, v in items:
                            txn.put(k, v)
                    return
                except lmdb.MapFullError:
                    env.set_mapsize(env.info()["map_size"] * 2)

        for data, label in samples:
            cnt += 1
            batch += [(b"image-%09d" % cnt, data), (b"label-%09d" % cnt, label.encode("utf-8"))]
            if len(batch) >= 2 * settings.commit_every:
                commit(batch)
                batch = []
        commit(batch + [(b"num-samples", str(cnt).encode())])
        env.sync(True)
        return cnt
    finally:
        env.close()


def _packing_failed(lmdb_url: str, e: lmdb.Error) -> HwocrError:
    if os.strerror(28) in str(e):  # LMDB reports a full disk as its own error, with the system's words
        return storage.no_space_error(storage.local_path(lmdb_url) if storage.is_local(lmdb_url) else lmdb_url)
    return HwocrError(f"packing {lmdb_url} failed: {type(e).__name__}: {e} (nothing was written)")


def pack_samples(samples: Iterable[tuple[bytes, str]], expected: int, lmdb_url: str, settings: PackSettings) -> dict:
    """Pack (encoded image, label) samples, already checked, into an LMDB at lmdb_url, built aside and moved into
    place whole; {"url", "samples", "bytes"}. expected: about how many (it sizes the map)."""
    samples = iter(samples)
    try:
        with storage.staged_dir(lmdb_url, last=MARKER) as tmp:
            head = list(itertools.islice(samples, 50))
            mean = sum(len(d) for d, _ in head) / max(len(head), 1)
            estimate = int((mean + 256) * max(expected, 1) * 1.5) + (8 << 20)
            count = _write(tmp, itertools.chain(head, samples), settings, estimate)
            if count == 0:
                raise HwocrError(f"{lmdb_url}: no sample to pack")
            size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    except lmdb.Error as e:
        raise _packing_failed(lmdb_url, e) from None
    return {"url": lmdb_url, "samples": count, "bytes": size}


META_MAGIC = 0xBEEFC0DE  # LMDB's meta pages (0 and 1): page header, then mm_magic, mm_version, ..., mm_last_pg


def check_lmdb_file(folder: str) -> None:
    """An LMDB folder's data.mdb is one, whole: its meta pages' magic, and a size that holds every page the newer
    meta says is in use. Mapping a truncated file would end the process with SIGBUS on the first read past its end;
    this makes it an error naming the file."""
    import struct

    path = os.path.join(folder, "data.mdb")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16 + 152)
            metas = []
            for offset in (0, None):
                if offset is None:  # the second meta page sits at the page size the first one records
                    if len(metas) != 1:
                        break
                    f.seek(metas[0][0])
                    head = f.read(16 + 152)
                if len(head) < 16 + 152:
                    break
                magic, version = struct.unpack_from("<II", head, 16)
                psize = struct.unpack_from("<I", head, 40)[0]  # mm_dbs[FREE_DBI].md_pad holds the page size
                last_pg, txnid = struct.unpack_from("<QQ", head, 136)
                if magic != META_MAGIC:
                    break
                metas.append((psize, last_pg, txnid))
    except FileNotFoundError:
        raise HwocrError(f"{folder}: not an LMDB (no data.mdb)") from None
    except OSError as e:
        raise HwocrError(f"{path}: cannot be read ({e})") from None
    if not metas:
        raise HwocrError(f"{path}: not an LMDB data file (no LMDB header; {size} bytes)")
    if len(metas) < 2:
        raise HwocrError(f"{path}: a truncated or damaged LMDB ({size} bytes: its second header page is missing)")
    psize, last_pg, _ = max(metas, key=lambda m: m[2])
    need = (last_pg + 1) * psize
    if size < need:
        raise HwocrError(f"{path}: a truncated LMDB ({size:,} bytes, its header says {need:,}); pack or copy it again")


def pack(gt_url: str, image_root: str, lmdb_url: str, settings: PackSettings, allow_outside: bool = False) -> dict:
    """Pack gt.txt's samples into an LMDB at lmdb_url; {"url", "samples", "skipped", "bytes", "kept"}, kept the
    0-based gt rows that went in, in order. A path that leaves image_root (`..`, absolute, a symlink out) is refused
    naming its line, unless allow_outside."""
    rows = [(n, storage.inside(image_root, path, f"{gt_url} line {n}", allow_outside), label)
            for n, path, label in read_gt(gt_url)]
    return pack_rows(rows, len(rows), gt_url, image_root, lmdb_url, settings)


def pack_rows(rows: Iterable[tuple[int, str, str]], expected: int, gt_url: str, image_root: str, lmdb_url: str,
              settings: PackSettings) -> dict:
    """pack() on (line number, path, label) rows of gt_url as they come (a list, or a stream still being
    made); expected, about how many (it sizes the map)."""
    rows = iter(rows)
    stats = {"rows": 0, "skipped": 0, "kept": []}
    try:
        with storage.reader(image_root) as read, storage.staged_dir(lmdb_url, last=MARKER) as tmp:
            # Size the map from the first images: about 1.5x the data, grown on demand.
            head = list(itertools.islice(rows, 50))
            probe = []
            for _, path, _ in head:
                with contextlib.suppress(OSError, ValueError):
                    probe.append(len(read(path)))
            estimate = int((sum(probe) / max(len(probe), 1) + 256) * max(expected, 1) * 1.5) + (8 << 20)
            samples = _samples(read, image_root, gt_url, itertools.chain(head, rows), settings, stats)
            with contextlib.closing(samples):
                count = _write(tmp, samples, settings, estimate)
            if stats["rows"] == 0:
                raise HwocrError(f"gt file {gt_url} has no samples")
            if count == 0:
                raise HwocrError(f"{gt_url}: no usable sample (all {stats['rows']} skipped)")
            env = lmdb.open(tmp, **READER_OPTIONS)
            with env.begin() as txn:
                stored = int(txn.get(b"num-samples"))
            env.close()
            if stored != count:
                raise HwocrError(f"{lmdb_url}: wrote {count} samples but num-samples reads {stored}")
            size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    except lmdb.Error as e:
        raise _packing_failed(lmdb_url, e) from None
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise HwocrError(f"packing {lmdb_url} failed: {e} (nothing was written)") from None
    return {"url": lmdb_url, "samples": count, "skipped": stats["skipped"], "bytes": size, "kept": stats["kept"]}


def lmdb_digest(url: str) -> str:
    """The content key pack_lmdb recorded for an LMDB, or the hash of its data file for other LMDBs."""
    marker = storage.read_json(storage.join(url, MARKER))
    if marker and marker.get("key"):
        return marker["key"]
    try:
        return hashing.sha256_url(storage.join(url, "data.mdb"))
    except FileNotFoundError:
        raise HwocrError(f"{url} is not an LMDB folder (no data.mdb)") from None
