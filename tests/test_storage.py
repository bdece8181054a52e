import os

import pytest

from hwocr import storage
from hwocr.errors import HwocrError


def test_staged_dir_publishes_whole_or_nothing(tmp_path):
    dest = tmp_path / "shard"
    with pytest.raises(RuntimeError):
        with storage.staged_dir(str(dest)) as tmp:
            open(os.path.join(tmp, "a"), "w").write("half")
            raise RuntimeError("crash mid-write")
    assert os.listdir(tmp_path) == []
    with storage.staged_dir(str(dest)) as tmp:
        open(os.path.join(tmp, "a"), "w").write("v1")
    with storage.staged_dir(str(dest)) as tmp:
        open(os.path.join(tmp, "b"), "w").write("v2")
    assert os.listdir(dest) == ["b"] and os.listdir(tmp_path) == ["shard"]


def test_stale_temp_folders_are_cleaned(tmp_path):
    stale = tmp_path / f".shard{storage.TMP_MARK}dead"
    stale.mkdir()
    (stale / "x").write_text("left by a killed run")
    with storage.staged_dir(str(tmp_path / "shard")) as tmp:
        open(os.path.join(tmp, "a"), "w").write("ok")
    assert os.listdir(tmp_path) == ["shard"]


def test_write_bytes_is_atomic_on_failure(tmp_path):
    target = tmp_path / "gt.txt"
    storage.write_text(str(target), "old\n")


    with pytest.raises(TypeError):
        storage.write_bytes(str(target), object())
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["gt.txt"]


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HwocrError, match=r"output location '.*file/out' is not writable"):
        storage.ensure_writable(str(blocker / "out"))
    with pytest.raises(HwocrError, match=r"output location '.*/file' is a file; the output is a folder"):
        storage.ensure_writable(str(blocker))
    assert blocker.read_text() == "x"


def test_archive_reader_reads_members_and_refuses_use_after_close(tmp_path):
    import io
    import tarfile

    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        info = tarfile.TarInfo("x.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "b.tar").write_bytes(b"junk" * 300)
    read = storage.reader(str(tmp_path))
    assert read("a.tar/x.png") == b"abc"
    with pytest.raises(FileNotFoundError, match="holds no member 'y.png'"):
        read("a.tar/y.png")
    for _ in range(2):  # a bad archive is remembered, not parsed again for every member
        with pytest.raises(ValueError, match="b.tar is not a readable uncompressed tar archive"):
            read("b.tar/x.png")
    read.close()
    with pytest.raises(ValueError, match="is closed"):
        read("a.tar/x.png")


def test_atomic_path_publishes_whole_or_nothing(tmp_path):
    target = tmp_path / "sub" / "ckpt.pth"
    with storage.atomic_path(str(target)) as tmp:
        open(tmp, "wb").write(b"v1")
    with pytest.raises(RuntimeError):
        with storage.atomic_path(str(target)) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"v1" and os.listdir(target.parent) == ["ckpt.pth"]


def test_local_copy_by_content_or_identity(tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
    url = "memory://hwocr-storage/blob.bin"
    with fsspec.open(url, "wb") as f:
        f.write(b"one")
    by_key = storage.local_copy(url, "things", "abc.bin")
    assert by_key == str(tmp_path / "cache" / "things" / "abc.bin") and open(by_key, "rb").read() == b"one"
    by_identity = storage.local_copy(url, "things")
    assert storage.local_copy(url, "things", download=False) == by_identity
    with fsspec.open(url, "wb") as f:  # replaced in place: another identity, fetched again
        f.write(b"two")
    with pytest.raises(HwocrError, match="not cached in .* and downloading is off"):
        storage.local_copy(url, "things", download=False)
    again = storage.local_copy(url, "things")
    assert again != by_identity and open(again, "rb").read() == b"two"
    assert storage.local_copy(url, "things", "abc.bin") == by_key  # a content key is trusted as given
    with pytest.raises(HwocrError, match="memory://hwocr-storage/missing: no such file or folder"):
        storage.local_copy("memory://hwocr-storage/missing", "things", "k")
    assert [n for n in os.listdir(tmp_path / "cache" / "things") if storage.TMP_MARK in n] == []


def test_readers_on_threads_share_a_remote_archive_safely():
    """Two stages read one shard's archive at once (the pack and the contact sheet): fsspec's memory filesystem
    hands both the same file object, so each reader must fetch the archive in one whole read."""
    import io
    import tarfile
    import threading

    import fsspec

    payload = os.urandom(4 << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("0.png")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/hwocr-readers/shard/images.tar", buf.getvalue())
    got = []

    def read():
        with storage.reader("memory://hwocr-readers") as r:
            got.append(r("shard/images.tar/0.png") == payload)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [True] * 8


def test_two_stages_fetching_one_remote_folder_get_one_whole_copy(tmp_path, monkeypatch):
    """Two evaluations of one split ask for the same remote LMDB at once: one fetch, both get the whole folder."""
    import threading

    import fsspec

    monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    data = os.urandom(8 << 20)
    fs.pipe_file("/hwocr-fetch/lmdb/data.mdb", data)
    fs.pipe_file("/hwocr-fetch/lmdb/lock.mdb", b"x")
    paths, errors = [], []

    def fetch():
        try:
            paths.append(storage.local_copy("memory://hwocr-fetch/lmdb", "lmdb", "digest"))
        except Exception as e:  # noqa: BLE001 - the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(paths)) == 1
    with open(os.path.join(paths[0], "data.mdb"), "rb") as f:
        assert f.read() == data
    assert sorted(os.listdir(tmp_path / "cache" / "lmdb")) == ["digest"]
