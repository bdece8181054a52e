"""fsspec URLs everywhere; atomic publication of files and folders.

A local destination is written under a temporary sibling name and renamed into place. A remote one is
built in a local temp folder and uploaded; the folder's manifest goes last, so readers that check the
manifest never take a half-uploaded folder for a complete one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator

import fsspec
from fsspec.core import url_to_fs

from hwocr import remote
from hwocr.errors import HwocrError, NoSpace

TMP_MARK = ".tmp-"
ARCHIVE_MARK = ".tar/"


def fs_and_path(url: str):
    return url_to_fs(url)


def is_local(url: str) -> bool:
    fs, _ = url_to_fs(url)
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def local_path(url: str) -> str:
    _, path = url_to_fs(url)
    return path


def normalize(url: str) -> str:
    """Absolute local paths, untouched remote URLs, no trailing slash."""
    if "://" not in url:
        return os.path.abspath(os.path.expanduser(url))
    return url.rstrip("/")


def join(url: str, *parts: str) -> str:
    out = url.rstrip("/")
    for p in parts:
        out = out + "/" + p.strip("/")
    return out


def _told(fn):
    """Remote failures of fn as errors that say what to check (hwocr/remote.py); others as they are."""
    import functools

    @functools.wraps(fn)
    def wrapper(url: str, *args, **kwargs):
        try:
            return fn(url, *args, **kwargs)
        except (HwocrError, FileNotFoundError):
            raise
        except Exception as e:
            said = remote.problem(e, url)
            if said is None:
                raise
            raise said from None

    return wrapper


@_told
def exists(url: str) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def open_url(url: str, mode: str = "rb"):
    return fsspec.open(url, mode).open()


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def decode_text(data: bytes, what: str) -> str:
    """A user's text file (a word list, a gt.txt) as UTF-8, else an error that names `what`, the line, and the
    encoding it is in when that is UTF-16 or cp949 (Korean Windows), with the iconv line that converts it."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and _decodes(data, "utf-16"):  # its ASCII has NULs between
        raise HwocrError(f"{what} is UTF-16 text; expected UTF-8: convert it with `iconv -f utf-16 -t utf-8`")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise HwocrError(f"{what} looks binary (NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        hint = "; it decodes as cp949: convert it with `iconv -f cp949 -t utf-8`" if _decodes(data, "cp949") else ""
        raise HwocrError(f"{what} line {line} is not UTF-8 (byte 0x{data[e.start]:02x}){hint}") from None


def inside(root: str, rel: str, where: str, allow_outside: bool = False) -> str:
    """rel, a path a list file names, as a clean path below root; a path that leaves root (an absolute path, `..`,
    or a symlink out) is refused naming `where` (file and line), unless allowed. Returns the path to read, relative
    to root (absolute when allowed outside)."""
    import posixpath

    if allow_outside:
        return rel
    if os.path.isabs(rel) or "://" in rel or rel.startswith("~"):
        raise HwocrError(f"{where}: path {rel!r} is absolute; the files a list names must lie in its folder {root} "
                         "(name them relative to it, or allow paths outside)")
    clean = posixpath.normpath(rel.replace("\\", "/"))
    if clean == ".." or clean.startswith("../"):
        raise HwocrError(f"{where}: path {rel!r} leaves the folder {root} (the files a list names must lie in it, "
                         "or allow paths outside)")
    if is_local(root):
        base = os.path.realpath(local_path(root))
        real = os.path.realpath(os.path.join(base, clean))
        if real != base and not real.startswith(base + os.sep):
            raise HwocrError(f"{where}: path {rel!r} is a symlink to {real}, outside the folder {root} (the files a "
                             "list names must lie in it, or allow paths outside)")
    return clean


@_told
def read_bytes(url: str) -> bytes:
    fs, path = url_to_fs(url)
    if is_local(url):
        import stat

        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(path) from None
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):  # a pipe or a device would block, or never end
            raise HwocrError(f"{url} is {'a pipe' if stat.S_ISFIFO(mode) else 'a device'}, not a file to read")
    return fs.cat_file(path)


class Reader:
    """read(relative_path) -> bytes under root, for many small reads from threads.

    A path through an archive, `<dir>/NAME.tar/<member>`, reads that member: shards keep their images in one
    tar each. Local archives are read in place; a remote one is fetched once into a temp folder that close()
    removes. Missing files and members raise FileNotFoundError.
    """

    def __init__(self, root: str):
        self.root = root
        self.local = is_local(root)
        self.fs, base = url_to_fs(root)
        self.base = local_path(root) if self.local else base.rstrip("/")
        self._archives: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._bad: dict[str, str] = {}
        self._tmp: str | None = None
        self._closed = False

    def __call__(self, rel: str) -> bytes:
        cut = rel.find(ARCHIVE_MARK)
        if cut < 0:
            return self._file(rel)
        archive, member = rel[:cut + len(ARCHIVE_MARK) - 1], rel[cut + len(ARCHIVE_MARK):]
        fd, index = self._archive(archive)
        try:
            offset, size = index[member]
        except KeyError:
            raise FileNotFoundError(f"{archive} holds no member {member!r}") from None
        return os.pread(fd, size, offset)

    def _file(self, rel: str) -> bytes:
        if self.local:
            with open(os.path.join(self.base, rel), "rb") as f:
                return f.read()
        return self.fs.cat_file(self.base + "/" + rel)

    def _archive(self, rel: str):
        with self._lock:
            if self._closed:
                raise ValueError(f"reader of {self.root} is closed")
            if rel in self._archives:
                return self._archives[rel]
            if rel in self._bad:
                raise ValueError(self._bad[rel])
            fetch_lock = self._fetch_locks.setdefault(rel, threading.Lock())
        with fetch_lock:  # one download per archive, other archives in parallel
            with self._lock:
                if rel in self._archives:
                    return self._archives[rel]
            if self.local:
                path = os.path.join(self.base, rel)
            else:
                with self._lock:
                    if self._tmp is None:
                        self._tmp = tempfile.mkdtemp(prefix="hwocr-read-")
                path = os.path.join(self._tmp, uuid.uuid4().hex)
                # One whole read: fsspec's memory filesystem hands every opener the same file object, so two
                # threads streaming one archive would move each other's position.
                data = self.fs.cat_file(self.base + "/" + rel)
                with open(path, "wb") as f:
                    f.write(data)
            try:
                with tarfile.open(path, "r:") as tar:  # uncompressed only: members are read by offset
                    index = {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
            except tarfile.TarError as e:
                message = f"{join(self.root, rel)} is not a readable uncompressed tar archive ({e})"
                with self._lock:
                    self._bad[rel] = message
                if not self.local:
                    os.remove(path)
                raise ValueError(message) from None
            entry = (os.open(path, os.O_RDONLY), index)
            with self._lock:
                self._archives[rel] = entry
            return entry

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd, _ in self._archives.values():
                os.close(fd)
            self._archives.clear()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reader(root: str) -> Reader:
    return Reader(root)


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def read_json(url: str) -> dict | None:
    """The JSON object at url, or None when it is missing or unreadable (an incomplete output)."""
    try:
        return json.loads(read_text(url))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temp path beside the local `path` to write (a file or a folder): renamed onto `path` when the block ends
    without error, removed when it fails, so readers see the old content or the new one, never a part."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
        raise


@_told
def write_bytes(url: str, data: bytes) -> None:
    """Write a whole file so that readers see the old content or the new one, never a part."""
    fs, path = url_to_fs(url)
    if is_local(url):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
    else:
        # A single PUT is atomic on object stores.
        fs.pipe_file(path, data)


def write_text(url: str, text: str) -> None:
    write_bytes(url, text.encode("utf-8"))


def write_json(url: str, obj) -> None:
    write_text(url, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def remove(url: str) -> None:
    fs, path = url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def not_a_file(url: str) -> None:
    """An output location that is a file is refused, by name, before anything is written."""
    fs, path = url_to_fs(url)
    if fs.isfile(path):
        raise HwocrError(f"output location {url!r} is a file; the output is a folder: name another")


def check_creatable(url: str) -> None:
    """A local output folder can be made: its nearest existing folder is a folder (not a file) and writable. Checked
    without creating anything, so that a run refused for another reason leaves no empty folder behind."""
    if not is_local(url):
        return
    path = _nearest_existing(url)
    if not os.path.isdir(path):
        raise HwocrError(f"output location {url!r}: {path} is a file, so no folder can be made below it; name "
                         "another --out")
    if not os.access(path, os.W_OK):
        raise HwocrError(f"output location {url!r}: {path} is not writable by this user; name another --out")


def free_bytes(url: str) -> int | None:
    """Free space where a local url would be written (its nearest existing folder); None for remote stores, whose
    quota no API tells."""
    if not is_local(url):
        return None
    return shutil.disk_usage(_nearest_existing(url)).free


def _nearest_existing(url: str) -> str:
    """The local url's path, or its nearest ancestor that exists: where a folder for it would be made."""
    path = os.path.abspath(local_path(url))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def used_bytes(url: str) -> int:
    """Bytes of the files under a local url (0 when it is missing, or remote)."""
    if not is_local(url) or not os.path.isdir(local_path(url)):
        return 0
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(local_path(url)) for f in files
               if not os.path.islink(os.path.join(root, f)))


def ensure_writable(url: str) -> None:
    """Fail early, naming the URL, when the output location cannot be written."""
    probe = join(url, f".hwocr-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        fs, path = url_to_fs(url)
        check_bucket(fs, url, path)
        not_a_file(url)
        fs.makedirs(path, exist_ok=True)
        write_bytes(probe, b"ok")
        remove(probe)
    except HwocrError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the user
        raise HwocrError(f"output location {url!r} is not writable: {type(e).__name__}: {e}") from e


def check_bucket(fs, url: str, path: str) -> None:
    """On object stores: the bucket exists and answers. makedirs would create a missing one (a typo must fail),
    and an unreachable endpoint or refused credentials should say so, not pass for a missing bucket."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if not {"s3", "s3a", "gs", "gcs", "az", "abfs"} & set(protocols):
        return
    bucket = path.strip("/").split("/")[0]
    try:
        if hasattr(fs, "call_s3"):
            fs.call_s3("head_bucket", Bucket=bucket)
        elif not fs.exists(bucket):
            raise FileNotFoundError(bucket)
    except FileNotFoundError:
        raise HwocrError(f"{url}: bucket {bucket!r} does not exist (hwocr never creates buckets: create it, or fix "
                         "the name)") from None
    except Exception as e:  # noqa: BLE001 - credentials, endpoint and network errors come as many types
        said = remote.problem(e, url)
        if said is not None:
            raise HwocrError(str(said)) from None  # before a run: no stage is there to retry it
        if isinstance(e, PermissionError):
            raise HwocrError(f"{url}: access to bucket {bucket!r} is denied ({e}); check the credentials in the "
                             "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)") from None
        raise HwocrError(f"{url}: the object store does not answer ({type(e).__name__}: {e}); check the endpoint "
                         "(AWS_ENDPOINT_URL) and the network") from None


NO_SPACE = {28, 122, 27}  # ENOSPC, EDQUOT, EFBIG: a write the disk (or a quota, or a file size limit) refused


def no_space(e: BaseException, need: int | None = None, where: str | None = None) -> NoSpace | None:
    """A full disk, as one line naming the path and the bytes there are (and those needed, when known); None for
    any other error. The writer's staging was removed as it failed: nothing half-written is kept."""
    err = next((x for x in remote.causes(e) if isinstance(x, OSError) and x.errno in NO_SPACE), None)
    if err is None:
        return None
    return no_space_error(str(err.filename or where or "the output"), need, os.strerror(err.errno))


def no_space_error(path: str, need: int | None = None, why: str = os.strerror(28)) -> NoSpace:
    free = free_bytes(path) if os.path.isabs(path) else None
    have = f"{free:,} bytes free" if free is not None else "no space left"
    want = f", about {need:,} more needed" if need else ""
    return NoSpace(f"no space left writing {path} ({have}{want}; {why}): nothing half-written was kept; free some "
                   "space or write elsewhere (--out), then run the same command again", path)


def _clean_stale(local_dest: str) -> None:
    """Remove the staging folders that killed runs left beside local_dest. A live run holds a lock on its own
    (staged_dir): a run of the same output at the same time keeps its folder."""
    parent, name = os.path.split(local_dest)
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        if not entry.startswith(f".{name}{TMP_MARK}"):
            continue
        path = os.path.join(parent, entry)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # gone already
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # in use
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _locked_folder(parent: str, name: str) -> tuple[str, int]:
    """A new folder `parent/.name.tmp-XXXXXXXX` and an fd holding its flock for as long as it is open: the OS lets
    go when the process dies, and _clean_stale may then remove it."""
    while True:
        path = os.path.join(parent, f".{name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
        os.makedirs(path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner, who locked it first, removes it
        try:
            mine, now = os.fstat(fd), os.stat(path)
            if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                return path, fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def staged_dir(url: str, last: str = "manifest.json") -> Iterator[str]:
    """Yield a local folder to fill; on success it replaces the folder at url in one step.

    On failure the temp folder is removed and url is left as it was. `last` names the file uploaded
    after all others on remote stores (its presence marks the folder complete).
    """
    if is_local(url):
        dest = local_path(url)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        _clean_stale(dest)
        tmp, held = _locked_folder(*os.path.split(dest))
        try:
            yield tmp
            if os.path.exists(dest):
                old = f"{tmp}-old"
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(held)
    else:
        tmp = tempfile.mkdtemp(prefix="hwocr-stage-")
        try:
            yield tmp
            fs, path = url_to_fs(url)
            if fs.exists(path):
                fs.rm(path, recursive=True)
            marker = os.path.join(tmp, last)
            files = []
            for root, _, names in os.walk(tmp):
                files += [os.path.join(root, n) for n in names]
            files.sort(key=lambda p: p == marker)
            for f in files:
                fs.put_file(f, path + "/" + os.path.relpath(f, tmp).replace(os.sep, "/"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hwocr")


@_told
def identity(url: str) -> str:
    """A digest of url and the store's own fingerprint of the object there now (ETag, or size and time: one
    metadata request): another when the object is replaced at the same URL."""
    fs, path = url_to_fs(url)
    try:
        return hashlib.sha256(f"{url}\n{fs.ukey(path)}".encode()).hexdigest()
    except FileNotFoundError:
        raise HwocrError(f"{url}: no such file or folder") from None


@_told
def local_copy(url: str, kind: str, key: str | None = None, *, folder: str | None = None,
               download: bool = True) -> str:
    """A local path for url (a file or a folder): itself when local, else a copy fetched once into
    `folder` (~/.cache/hwocr/<kind> by default) under `key`. The copy is staged under a temp name and renamed, so a
    partial fetch is never mistaken for a whole one. `key` must change when the content does (a content digest);
    without one, identity(url) stands in. With download off, a copy not yet cached is an error."""
    if is_local(url):
        return local_path(url)
    fs, path = url_to_fs(url)
    folder = folder or os.path.join(CACHE_DIR, kind)
    dest = os.path.join(folder, key or identity(url))
    with _FETCHING_LOCK:
        lock = _FETCHING.setdefault(dest, threading.Lock())
    with lock:  # stages on threads asking for the same copy (two evaluations of one split) fetch it once
        if os.path.exists(dest):
            return dest
        if not download:
            raise HwocrError(f"{url}: not cached in {folder} and downloading is off")
        try:
            with atomic_path(dest) as part:
                if fs.isdir(path):
                    fs.get(path.rstrip("/") + "/", part, recursive=True)
                else:
                    fs.get(path, part)
        except FileNotFoundError:
            raise HwocrError(f"{url}: no such file or folder") from None
        except OSError:
            if not os.path.exists(dest):  # else another process fetched the same content first
                raise
    return dest


_FETCHING: dict[str, threading.Lock] = {}
_FETCHING_LOCK = threading.Lock()


def upload_files(local_dir: str, url: str, names: list[str]) -> None:
    """Copy the named files of local_dir to url, in the order given (put the marker last)."""
    for name in names:
        path = os.path.join(local_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                write_bytes(join(url, name), f.read())
