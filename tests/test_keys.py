"""Cache keys come from content: the code a stage runs (derived from its imports), the characters of a charset
file and the bytes of a pretrained checkpoint, not their names or paths."""

import os
import shutil
import sys

from hwocr import hashing
from hwocr.layout import Layout
from models.charset import BUILTIN, load_charset
from models.train_settings import TrainSettings
from tasks.stage import stage_key
from tasks.train import CODE_VERSION, TrainInput


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_a_helper_the_stage_imports_changes_its_code_version(tmp_path, monkeypatch):
    root = str(tmp_path)
    write(f"{root}/tasks/__init__.py", "")
    write(f"{root}/tasks/stage.py",
          "import json\nfrom tasks import helper\n\ndef run():\n    from models import deep\n")
    write(f"{root}/tasks/helper.py", "X = 1\n")
    write(f"{root}/tasks/other.py", "Y = 1\n")
    write(f"{root}/models/__init__.py", "")
    write(f"{root}/models/deep.py", "Z = 1\n")
    # This tree's tasks/ and models/ stand in for the project's: found first on the path, not yet imported.
    monkeypatch.syspath_prepend(root)
    for name in ("tasks", "models"):
        monkeypatch.delitem(sys.modules, name)
    version = hashing.code_version(f"{root}/tasks/stage.py")
    write(f"{root}/tasks/other.py", "Y = 2\n")  # not imported: no change
    assert hashing.code_version(f"{root}/tasks/stage.py") == version
    write(f"{root}/models/deep.py", "Z = 2\n")  # imported inside a function, two packages away
    deep = hashing.code_version(f"{root}/tasks/stage.py")
    assert deep != version
    write(f"{root}/tasks/helper.py", "X = 2\n")  # `from tasks import helper`
    assert hashing.code_version(f"{root}/tasks/stage.py") not in (version, deep)
    write(f"{root}/models/__init__.py", "W = 1\n")  # a package's __init__ runs before its modules
    assert hashing.code_version(f"{root}/tasks/stage.py") not in (version, deep)
    assert hashing.code_version(f"{root}/tasks/stage.py", libraries=("trdg",)) != hashing.code_version(
        f"{root}/tasks/stage.py")
    # A data file the code reads as part of itself (a measured table) enters by its bytes.
    write(f"{root}/tasks/table.json", "[1]\n")
    table = hashing.code_version(f"{root}/tasks/stage.py", data=(f"{root}/tasks/table.json",))
    assert table != hashing.code_version(f"{root}/tasks/stage.py")
    write(f"{root}/tasks/table.json", "[2]\n")
    assert hashing.code_version(f"{root}/tasks/stage.py", data=(f"{root}/tasks/table.json",)) != table


def test_the_real_stages_cover_their_helpers():
    """The training key's code holds the model library and the torchrun entry, with no list to keep."""
    from synth.effects import CRAFT_MARGINS
    from tasks import render, train

    assert len(train.CODE_VERSION) == 16
    assert train.CODE_VERSION == hashing.code_version(train.__file__, data=(str(CRAFT_MARGINS),))
    assert {"models.ddp_train", "models.trainer", "synth.effects"} <= hashing.project_modules(train.__file__)
    assert render.CODE_VERSION != hashing.code_version(render.trdg_driver.__file__)  # + trdg, Pillow, OpenCV, numpy
    # A library enters by import name, whichever distribution provides it (opencv-python or its headless build).
    assert hashing.code_version(render.trdg_driver.__file__, libraries=("cv2",)) not in (
        render.CODE_VERSION, hashing.code_version(render.trdg_driver.__file__))


def key(**settings):
    s = TrainSettings(**{"pretrained": "none", **settings})
    inp = TrainInput(settings=s, train_lmdbs=["train"], val_lmdb="val", digests={"train": "t" * 64, "val": "v" * 64},
                     layout=Layout.at("out"))
    return stage_key("fine_tune", CODE_VERSION, inp.reads())


def test_a_charset_file_edited_in_place_trains_again(tmp_path):
    path = tmp_path / "chars.txt"
    shutil.copy(BUILTIN["korean_g2"], path)
    before = key(charset=str(path))
    assert key(charset=str(path)) == before
    chars = load_charset(str(path))
    path.write_text(chars[:-2] + chars[-1] + chars[-2], encoding="utf-8")  # same size, two characters swapped
    assert load_charset(str(path)) != chars  # read again, not served from the cache
    assert key(charset=str(path)) != before


def test_a_checkpoint_replaced_at_the_same_path_or_url_trains_again(tmp_path):
    import fsspec

    path = tmp_path / "start.pth"
    path.write_bytes(b"first checkpoint")
    before = key(pretrained=str(path))
    assert key(pretrained=str(path)) == before
    path.write_bytes(b"other checkpoint")
    assert key(pretrained=str(path)) != before

    url = "memory://hwocr-keys/start.pth"
    with fsspec.open(url, "wb") as f:
        f.write(b"first checkpoint")
    remote = key(pretrained=url)
    assert key(pretrained=url) == remote
    with fsspec.open(url, "wb") as f:
        f.write(b"a longer checkpoint")
    assert key(pretrained=url) != remote
    assert key(pretrained="english_g2") != key(pretrained="korean_g2")  # built-ins: their pinned md5s
