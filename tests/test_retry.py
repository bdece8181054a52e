import concurrent.futures.process

from hwocr.errors import HwocrError, TransientError
from hwocr.remote import is_transient


def test_only_transient_errors_are_retried():
    assert is_transient(TransientError("worker died"))
    assert is_transient(ConnectionError("reset"))
    assert is_transient(TimeoutError())
    assert is_transient(concurrent.futures.process.BrokenProcessPool("killed"))
    assert not is_transient(HwocrError("font x.ttf draws no Hangul"))
    assert not is_transient(ValueError("bad"))
    assert not is_transient(FileNotFoundError("gone"))
