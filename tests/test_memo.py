"""hwocr/memo.py: what a local file holds, read once until the file changes."""

import os

import pytest

from hwocr import memo


def test_a_file_is_read_once_until_it_changes(tmp_path, monkeypatch):
    reads = []

    @memo.by_file(maxsize=4)
    def size_of(path: str, scale: int = 1) -> int:
        reads.append(path)
        with open(path, "rb") as f:
            return len(f.read()) * scale

    path = tmp_path / "a.txt"
    path.write_text("abc")
    assert size_of(str(path)) == 3 and size_of(str(path)) == 3 and len(reads) == 1
    assert size_of(str(path), 2) == 6 and len(reads) == 2  # other arguments, another entry
    path.write_text("abcdef")  # edited in place: another size (and time)
    assert size_of(str(path)) == 6 and len(reads) == 3
    os.utime(path, ns=(1, 1))  # the same size, another time
    assert size_of(str(path)) == 6 and len(reads) == 4
    monkeypatch.chdir(tmp_path)
    assert size_of("a.txt") == 6 and len(reads) == 4  # a relative path names the same file
    with pytest.raises(FileNotFoundError):
        size_of(str(tmp_path / "missing.txt"))
