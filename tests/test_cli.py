"""The command line: the whole pipeline from one command, and bad input (exit status 2, the problem named)."""

import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
import zipfile

import pytest


def hwocr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core: draws no Hangul
PEN = "/usr/share/fonts/truetype/nanum/NanumPen.ttf"
SMALL = ["--set", f"render.fonts=[{PEN}]", "--set", "render.words=words.txt"]  # inputs that pass, quickly

# (arguments, what stderr's one line says). Paths are relative to the test's folder, which inputs() fills.
BAD_INPUT = [
    # settings and presets
    (["run", "--set", "train.batch_size=0"], "train.batch_size: Input should be greater than 0"),
    (["data", "--set", "render.cont=5"], "unknown setting 'render.cont' (did you mean render.count?)"),
    (["run", "--set", "render.count=abc"], "(got 'abc', from --set render.count=abc)"),
    (["data", "--set", "render.count=1000000000000"], "render.count: Input should be less than or equal to"),
    (["data", "--out", "o", "--set", "render.val_count=0"], "render.val_count: Input should be greater than 0 (got 0"),
    (["data", "--set", "render.height=5"], "render.height: Input should be greater than or equal to 8"),
    (["train", "--set", "train.optimizer=sgd"], "train.optimizer: Input should be 'adadelta' or 'adam'"),
    (["data", "--set", "render.image_format=gif"], "render.image_format: Input should be 'png' or 'jpg'"),
    (["data", "--set", "render.workers=-1"], "render.workers: Input should be greater than or equal to 0"),
    (["data", "--set", "render.seed=x"], "render.seed: Input should be a valid integer"),
    (["data", "--out", "o", "--set", "render.test_count=5"], "test_count needs test_fonts"),
    (["data", "--set", "render.count"], "--set 'render.count': expected KEY=VALUE"),
    (["data", "--config", "nosuch"], "config file 'nosuch' does not exist (presets: "),
    (["data", "--config", "bad.yaml"], "config file bad.yaml: not valid YAML (line 3, column 1: expected"),
    (["data", "--config", "unknown.yaml"], "render.colour: Extra inputs are not permitted (got 1, from unknown.yaml)"),
    # fonts
    (["data", "--out", "o", "--set", "render.fonts=[nofont.ttf]"], "font file 'nofont.ttf' does not exist"),
    (["run", "--out", "o", "--set", f"render.fonts=[{LATIN}]"], "(DejaVu Sans Book) draws no Hangul"),
    (["data", "--out", "o", "--set", "render.fonts=[fake.ttf]"], "fake.ttf: cannot be read as a font"),
    (["data", "--out", "o", "--set", "render.fonts=[truncated.ttf]"], "truncated.ttf: cannot be read as a font"),
    (["data", "--out", "o", "--set", "render.fonts=[nofonts]"], "folder 'nofonts' holds no .ttf/.otf/.ttc file"),
    (["data", "--out", "o", "--set", "render.fonts=[none/*.ttf]"], "glob 'none/*.ttf' matches no .ttf/.otf/.ttc"),
    # word lists
    (["data", "--out", "o", "--set", "render.words=binary.txt"], "binary.txt looks binary (NUL byte at offset 2)"),
    (["data", "--out", "o", "--set", "render.words=nowords.txt"], "word list nowords.txt does not exist"),
    (["run", "--out", "o", "--set", "render.words=."], "word list . is a folder"),
    (["data", "--out", "o", "--set", "render.words=empty.txt"], "word list empty.txt is empty"),
    (["data", "--out", "o", "--set", "render.words=pipe"], "pipe is a pipe, not a file to read"),
    (["data", "--out", "o", "--set", f"render.fonts=[{LATIN}]", "--set", "render.font_missing=error"],
     "draws no Hangul (render.font_missing is error): take it out of the fonts, or set "
     "render.font_missing=skip_font"),
    (["data", "--out", "o", "--set", "render.words=blank.txt"], "word list blank.txt is empty"),
    (["data", "--out", "o", "--set", "render.words=cp949-words.txt"], "it decodes as cp949: convert it with `iconv"),
    (["data", "--out", "o", "--set", "render.words=utf16.txt"], "is UTF-16 text; expected UTF-8: convert it"),
    (["data", "--out", "o", "--set", "render.words=long.txt"], "none of its 1 words is usable (dropped: {'too_long'"),
    (["data", "--out", "o", "--set", "render.words=emoji.txt"], "characters outside the set: '😀' x1"),
    (["data", "--out", "o", "--set", "render.generated.share=1"],
     "render.generated.share: Input should be less than 1 (got 1, from --set render.generated.share=1)"),
    # output location and sizes
    (["data", "--out", "gt.txt"], "gt.txt' is a file; the output is a folder"),
    (["data", "--out", "gt.txt/o", *SMALL], "gt.txt is a file, so no folder can be made below it"),
    (["data", "--out", "o", *SMALL, "--set", "render.count=10000000", "--set", "render.height=512"],
     "the plan needs about "),
    # sizes the machine cannot hold
    (["train", "--set", "train.batch_size=1000000000"],
     "train.batch_size 1,000,000,000 at train.img_h 80 (up to 800 px wide) needs about "),
    (["run", "--set", "train.loader_workers=100000"], "train.loader_workers 100,000: each is a process"),
    (["data", "--set", "render.workers=100000"], "render.workers 100,000: each is a process"),
    # training inputs
    (["train", "--out", "o"], "lmdb/train holds no LMDB: run `hwocr data` with the same --out"),
    (["run", "--out", "o", "--set", "train.pretrained=missing.pth"], "pretrained weights 'missing.pth': no such file"),
    (["train", "--out", "o", "--set", "train.pretrained=gt.txt"], "gt.txt is not a PyTorch checkpoint"),
    (["train", "--out", "o", "--set", "train.pretrained=m.pth"], "m.pth holds something other than tensors"),
    (["train", "--out", "o", "--set", "train.pretrained=nofonts"], "nofonts is a folder, not a checkpoint file"),
    (["train", "--out", "o", "--set", "train.charset=nocharset.txt"], "character set 'nocharset.txt': no such"),
    # the network (train.model)
    (["train", "--set", "train.model.feature_extraction=resnet"],
     "train.model.feature_extraction: Input should be 'VGG', 'RCNN' or 'ResNet' (did you mean ResNet?)"),
    (["run", "--set", "train.model.prediction=Atn"], "Input should be 'CTC' or 'Attn' (did you mean Attn?)"),
    (["train", "--set", "train.model.transformation=TSP"], "(did you mean TPS?)"),
    (["train", "--set", "train.model.num_fiducial=2"], "train.model.num_fiducial: Input should be greater than or"),
    (["train", "--set", "train.model.num_fiducial=21"], "train.model.num_fiducial: Input should be a multiple of 2"),
    (["run", "--set", "train.model.feature_extraction=ResNet"],
     "pretrained korean_g2 does not fit train.model (None-ResNet-BiLSTM-CTC, output_channel 256, hidden_size 256): "
     "korean_g2 is None-VGG-BiLSTM-CTC"),
    (["export", "--model", "m.pth", "--out", "b", "--set", "train.model.prediction=Attn"],
     "EasyOCR cannot run an attention decoder"),
    # evaluate
    (["evaluate", "--model", "m.pth", "--data", "nodata"], "--data "),
    (["evaluate", "--model", "m.pth", "--data", "nofonts"], "neither an LMDB (data.mdb) nor a folder with gt.txt"),
    (["evaluate", "--model", "missing.pth", "--data", "evaldata"], "missing.pth: no such file"),
    (["evaluate", "--model", "gt.txt", "--data", "evaldata"], "gt.txt: not a PyTorch checkpoint"),
    (["evaluate", "--model", "nofonts", "--data", "evaldata", "--engine", "easyocr"], "nofonts: not an EasyOCR bundle"),
    (["evaluate", "--model", "nofonts", "--data", "evaldata"], "nofonts: not an EasyOCR bundle (one NAME.yaml"),
    (["evaluate", "--model", "m.pth", "--data", "evaldata", "--engine", "easyocr"], "the folder of an exported bundle"),
    (["evaluate", "--model", "m.pth", "--data", "evaldata", "--decoder", "all"],
     "--decoder all: the decoders are EasyOCR's; add --engine easyocr"),
    (["evaluate", "--model", "nofonts", "--data", "evaldata", "--engine", "easyocr", "--words", "gt.txt"],
     "--words: the list wordbeamsearch searches; add --decoder wordbeamsearch (or all)"),
    (["evaluate", "--model", "nofonts", "--data", "evaldata", "--engine", "easyocr", "--decoder", "all", "--words",
      "nowords.txt"], "--words nowords.txt: no such file"),
    # the reading contract: a model says how it is read
    (["evaluate", "--model", "m.pth", "--data", "evaldata"],
     "m.pth carries no reading contract (hwocr did not write it): say how it is read, --set "
     "train.img_h=... and --set train.charset=..."),
    (["evaluate", "--model", "m.pth", "--data", "evaldata", "--set", "train.img_h=64"],
     "say how it is read, --set train.charset=... (the height"),
    (["evaluate", "--model", "at32.pth", "--data", "evaldata", "--set", "train.img_h=80"],
     "at32.pth says how it is read (None-VGG-BiLSTM-CTC at height 32, preprocess easyocr, 1008 characters "
     "(korean_g2)), but --set asked for train.img_h 80 (the model's 32): drop them"),
    (["evaluate", "--model", "at32.pth", "--data", "evaldata", "--set", "train.charset=english_g2"],
     "asked for train.charset english_g2 (the model's korean_g2: 1008 characters"),
    (["export", "--model", "at32.pth", "--out", "b", "--config", "quick"],
     "--config quick asked for train.img_h 64 (the model's 32)"),
    (["export", "--model", "m.pth", "--out", "b"], "m.pth carries no reading contract"),
    (["evaluate", "--model", "m.pth", "--data", "evaldata", "--pages", "-1"], "argument --pages: expected 0 or more"),
    (["evaluate", "--data", "evaldata"], "the following arguments are required: --model"),
    (["evaluate", "--model", "m.pth", "--data", "evaldata", "--engine", "paddle"], "argument --engine: invalid choice"),
    # export
    (["export", "--model", "m.pth", "--out", "b", "--name", "1abc"], "not starting with a digit), and it starts with"),
    (["export", "--model", "m.pth", "--out", "b", "--name", "my-model"], "must be an ASCII Python identifier"),
    (["export", "--model", "missing.pth", "--out", "b"], "missing.pth: no such file"),
    (["export", "--model", "gt.txt", "--out", "b"], "gt.txt: not a PyTorch checkpoint"),
    (["export", "--model", "m.pth", "--out", "gt.txt"], "gt.txt' is a file; the output is a folder"),
    # real sources (your own handwriting)
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: nosuch}]"], "nosuch does not exist"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: nosuch, format: gt}]"],
     "nosuch/gt.txt does not exist (format gt)"),
    (["train", "--set", "real.sources=[{name: a, url: x, ratio: 0.6}, {name: b, url: y, ratio: 0.5}]"],
     "real.sources' ratios add up to 1.1"),
    (["run", "--out", "o", "--set", "real.sources=[{name: a, url: escape}]"],
     "escape/gt.txt line 1: path '../gt.txt' leaves the folder"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: latin}]"],
     "real source a: 2 of 2 labels dropped ({'out_of_charset': 2})"),
    (["run", "--out", "o", *SMALL, "--set", "real.sources=[{name: a, url: standin/pages}]"],
     "pages was drawn in Nanum Pen (its manifest.json), and the synthetic training renders"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/header}]"],
     "header/labels.csv line 1: expected EasyOCR's header 'filename,words', found file, text"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/tabbed}]"],
     "(a tab-separated file? give format paddle)"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/fields}]"],
     "fields/labels.csv line 2: 3 fields, the header has 2 (quote a label holding a comma)"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/notjson}]"],
     "notjson/Label.txt line 1: its boxes are not JSON"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/nopoints}]"],
     "nopoints/Label.txt line 1 box 1: expected {\"transcription\", \"points\"}"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/onepoint}]"],
     "onepoint/Label.txt line 1 box 1: a box needs at least 4 points, got 1"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/template}]"],
     "region r: a box without a transcription: not an export of Label Studio's OCR template"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/noimage}]"], "task 3: no image in its data"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/lost}]"],
     "task 3: image '/data/upload/1/0a1b2c3d-page.jpg' is not in"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: absolute}]"], "path '/etc/passwd' is absolute"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: linked}]"], "path 'out.png' is a symlink to"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs/korean, format: gt}]"],
     "korean/gt.txt line 1 is not UTF-8 (byte 0x"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: nofonts, format: pages}]"],
     "nofonts/Label.txt does not exist (format pages)"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: rs}]"], "cannot tell the format of"),
    (["train", "--set", "real.sources=[{name: a, url: x}, {name: a, url: y}]"], "the name 'a' is used twice"),
    (["train", "--set", "real.sources=[{name: a, url: x, ratio: 0.3, split: test}]"], "its split is test (held out)"),
    (["train", "--set", "real.sources=[{name: My Scans, url: x}]"], "real.sources.0.name: String should match"),
    (["train", "--out", "o", "--set", "real.sources=[{name: a, url: $HWOCR_NOPE_SCANS}]"],
     "real source a: url '$HWOCR_NOPE_SCANS' names an environment variable that is not set"),
    (["train", "--set", "real.train_fraction=0.9", "--set", "real.val_fraction=0.1"],
     "real.train_fraction 0.9 + val_fraction 0.1 must be below 1"),
    (["train", "--set", "real.sources=[{name: a, url: x}]", "--set", "real.refine.iterations=10"],
     "real.refine trains on the real train splits alone, but no source has a ratio"),
    (["data", "--set", "remote.read_timeout=0"], "remote.read_timeout: Input should be greater than 0"),
    # models and data that cannot be read as asked
    (["evaluate", "--model", "badbundle", "--data", "evaldata"], "badbundle/b.yaml: not an EasyOCR network yaml"),
    (["evaluate", "--model", "at32.pth", "--data", "evaldata", "--set", "train.preprocess=pad"],
     "asked for train.preprocess pad (the model's easyocr)"),
    (["export", "--model", "at32.pth", "--out", "b", "--set", "train.model.hidden_size=128"],
     "asked for train.model.hidden_size 128 (the model's 256)"),
    (["evaluate", "--model", "at32.pth", "--data", "truncated"], "truncated/data.mdb: a truncated LMDB"),
    (["train", "--out", "cut"], "cut/lmdb/train/data.mdb: a truncated LMDB"),
    (["scans", "--out", "o", "--fonts", "nofont.ttf"], "nofont.ttf"),
    (["scans", "--out", "o", "--words", "nowords.txt"], "word list nowords.txt does not exist"),
    # stand-in scans
    (["scans", "--out", "gt.txt"], "gt.txt' is a file; the output is a folder"),
    (["scans", "--out", "nofonts"], "--out nofonts already holds files"),
    (["scans", "--out", "o", "--families", "gaegu"], "'Gaegu' is a reserved font family"),
    (["scans", "--out", "o", "--pages", "0"], "argument --pages: expected 1 or more"),
    # pack
    (["pack", "--gt", "escape/gt.txt", "--images", "escape", "--out", "db"],
     "escape/gt.txt line 1: path '../gt.txt' leaves the folder"),
    (["pack", "--gt", "absolute/gt.txt", "--images", "absolute", "--out", "db"],
     "absolute/gt.txt line 1: path '/etc/passwd' is absolute"),
    (["pack", "--gt", "linked/gt.txt", "--images", "linked", "--out", "db"],
     "linked/gt.txt line 1: path 'out.png' is a symlink to "),
    (["evaluate", "--model", "at32.pth", "--data", "absolute"],
     "absolute/gt.txt line 1: path '/etc/passwd' is absolute"),
    (["pack", "--gt", "gt.txt", "--images", ".", "--out", "db"], "gt.txt line 1: expected 'path<TAB>label'"),
    (["pack", "--gt", "cp949.txt", "--images", ".", "--out", "db"], "decodes as cp949: convert it with `iconv"),
    (["pack", "--gt", "nogt.txt", "--images", ".", "--out", "db"], "nogt.txt does not exist"),
    (["pack", "--gt", "evaldata/gt.txt", "--images", "noimages", "--out", "db"], "--images noimages: no such folder"),
    (["pack", "--gt", "evaldata/gt.txt", "--images", "evaldata", "--out", "gt.txt"], "is a file; the output is a"),
    # outputs that exist are not replaced unless asked
    (["pack", "--gt", "evaldata/gt.txt", "--images", "evaldata", "--out", "nofonts"],
     "--out nofonts already holds files (an LMDB?): name another folder, or add --overwrite"),
    (["export", "--model", "at32.pth", "--out", "nofonts"], "--out nofonts already holds files (a bundle?)"),
    (["evaluate", "--model", "at32.pth", "--data", "evaldata", "--out", "nofonts"],
     "--out nofonts already holds files (an evaluation?)"),
    # the command line itself
    (["data", "--out", ""], "argument --out: is empty"),
    (["data", "--config", " "], "argument --config: is empty"),
    (["pack", "--gt", "", "--images", ".", "--out", "db"], "argument --gt: is empty"),
    (["evaluate", "--model", "", "--data", "evaldata"], "argument --model: is empty"),
    (["data", "--set", "render.words=''"], "render.words: Value error, is empty: name a word list"),
    (["nope"], "argument command: invalid choice: 'nope'"),
    (["data", "--runner", "spark"], "argument --runner: invalid choice: 'spark'"),
    (["serve", "--limit", "0"], "argument --limit: expected 1 or more, got 0"),
]


def inputs(folder) -> None:
    """The files the cases name, each wrong in one way (or right, to reach the check after it)."""
    (folder / "gt.txt").write_text("a.png no tab\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"ab\x00\x01")
    (folder / "cp949.txt").write_bytes("a.png\t한글\n".encode("cp949"))
    (folder / "cp949-words.txt").write_bytes("한글\n사랑\n".encode("cp949"))
    (folder / "utf16.txt").write_bytes("한글\n사랑\n".encode("utf-16"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("  \n\t\n", encoding="utf-8")
    (folder / "long.txt").write_text("가" * 40 + "\n", encoding="utf-8")
    (folder / "emoji.txt").write_text("😀\n🎉\n", encoding="utf-8")
    (folder / "words.txt").write_text("한글\n사랑\n바다\n", encoding="utf-8")
    (folder / "fake.ttf").write_text("not a font\n", encoding="utf-8")
    with open(PEN, "rb") as f:
        (folder / "truncated.ttf").write_bytes(f.read(2000))
    (folder / "nofonts").mkdir()
    (folder / "nofonts" / "readme.txt").write_text("no fonts here\n", encoding="utf-8")
    (folder / "bad.yaml").write_text("render:\n  count: [1\n", encoding="utf-8")
    (folder / "unknown.yaml").write_text("render:\n  colour: 1\n", encoding="utf-8")
    (folder / "evaldata").mkdir()
    (folder / "evaldata" / "gt.txt").write_text("a.png\t한글\n", encoding="utf-8")
    with zipfile.ZipFile(folder / "m.pth", "w") as z:  # torch.save's container, enough for the checks before torch
        z.writestr("archive/data.pkl", b"")
    os.mkfifo(folder / "pipe")  # a word list that would block a reader forever
    (folder / "escape").mkdir()
    (folder / "escape" / "gt.txt").write_text("../gt.txt\t한글\n", encoding="utf-8")
    (folder / "absolute").mkdir()
    (folder / "absolute" / "gt.txt").write_text("/etc/passwd\t한글\n", encoding="utf-8")
    (folder / "linked").mkdir()
    (folder / "linked" / "gt.txt").write_text("out.png\t한글\n", encoding="utf-8")
    os.symlink(folder / "words.txt", folder / "linked" / "out.png")
    (folder / "latin").mkdir()
    (folder / "latin" / "gt.txt").write_text("a.png\tÆsir\nb.png\tØre\n", encoding="utf-8")
    (folder / "standin" / "pages").mkdir(parents=True)
    (folder / "standin" / "pages" / "Label.txt").write_text(
        'pages/p.jpg\t[{"transcription": "한글", "points": [[1, 1], [9, 1], [9, 5], [1, 5]]}]\n', encoding="utf-8")
    from synth.font_pool import font_sha256

    (folder / "standin" / "manifest.json").write_text(json.dumps(
        {"fonts": [{"file": PEN, "sha256": font_sha256(PEN), "family": "Nanum Pen"}]}), encoding="utf-8")
    rs = folder / "rs"
    for name, file, text in (
        ("header", "labels.csv", "file,text\na.png,한글\n"), ("tabbed", "labels.csv", "filename\twords\na.png\t한글\n"),
        ("fields", "labels.csv", "filename,words\na.png,한,글\n"), ("notjson", "Label.txt", "p.jpg\tnot json\n"),
        ("nopoints", "Label.txt", 'p.jpg\t[{"transcription": "한글"}]\n'),
        ("onepoint", "Label.txt", 'p.jpg\t[{"transcription": "한글", "points": [[1, 2]]}]\n'),
        ("template", "export.json", json.dumps([{"id": 3, "data": {"image": "/data/upload/1/p.jpg"}, "annotations": [
            {"result": [{"id": "r", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5,
                                                                         "rectanglelabels": ["cat"]}}]}]}])),
        ("noimage", "export.json", json.dumps([{"id": 3, "data": {"x": 1}, "annotations": [{"result": []}]}])),
        ("lost", "export.json", json.dumps([{"id": 3, "data": {"ocr": "/data/upload/1/0a1b2c3d-page.jpg"},
                                              "annotations": [{"result": []}]}])),
    ):
        (rs / name).mkdir(parents=True)
        (rs / name / file).write_text(text, encoding="utf-8")
    (rs / "template" / "p.jpg").write_bytes(b"")
    (rs / "korean").mkdir()
    (rs / "korean" / "gt.txt").write_bytes("a.png\t한글\n".encode("cp949"))
    (folder / "badbundle").mkdir()
    for ext in ("pth", "py"):
        (folder / "badbundle" / f"b.{ext}").write_bytes(b"")
    (folder / "badbundle" / "b.yaml").write_text("imgH: 64\n", encoding="utf-8")
    import lmdb

    for where in (folder / "truncated", folder / "cut" / "lmdb" / "train", folder / "cut" / "lmdb" / "val"):
        where.mkdir(parents=True)
        env = lmdb.open(str(where), map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(b"num-samples", b"1")
            txn.put(b"label-000000001", "한글".encode())
            txn.put(b"image-000000001", b"x" * 20000)
        env.close()
        size = os.path.getsize(where / "data.mdb")
        os.truncate(where / "data.mdb", size - 4096)
    import torch

    from models.charset import load_charset
    from models.reading import Reading, attach

    # A checkpoint with a reading contract (one tensor: the contract is checked before the weights are read).
    torch.save(attach({"module.x": torch.zeros(1)}, Reading(img_h=32, charset=load_charset("korean_g2"),
                                                           charset_name="korean_g2")), folder / "at32.pth")


def tree(folder) -> dict[str, int]:
    return {os.path.relpath(os.path.join(root, n), folder): os.path.getsize(os.path.join(root, n))
            for root, dirs, files in os.walk(folder) for n in files + dirs}


LOADED = "print(sorted(m for m in ('prefect', 'torch', 'mlflow', 'trdg') if m in sys.modules), file=sys.stdout)"


def fail(args, cwd, env=None) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run hwocr to its failure: (the process, wall seconds, CPU seconds of the process)."""
    code = ("import sys\nfrom flows.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    rc = e.code\n{LOADED}\nsys.exit(rc)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                       env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def assert_one_line(p, message: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stderr.startswith("hwocr: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr[-2000:]
    assert message in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_bad_input_suite_covers_every_command():
    assert len(BAD_INPUT) >= 40
    assert {args[0] for args, _ in BAD_INPUT} >= {"data", "train", "run", "evaluate", "export", "serve", "pack"}


# One Python that has imported the CLI (and nothing heavy) forks a child per case: each case still runs in a
# process of its own, from the CLI's pristine import state, without paying the interpreter's start-up 150 times.
FORKS = f"""
import json, os, resource, sys, time
import flows.config  # what main() imports first on every path, itself light
from flows.cli import main
{LOADED.replace("sys.stdout", "sys.stderr")}
for line in sys.stdin:
    case = json.loads(line)
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    pid = os.fork()
    if pid == 0:
        os.chdir(case["cwd"])
        for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        try:
            rc = main(case["args"])
        except SystemExit as e:
            rc = e.code
        {LOADED}
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc if isinstance(rc, int) else 1)
    _, status = os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps([os.waitstatus_to_exitcode(status), time.monotonic() - start, cpu]), flush=True)
"""


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    # One BLAS and OpenMP thread: no thread pool of the parent's is forked half-held into a child.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", FORKS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    outputs = tmp_path_factory.mktemp("outputs")  # outside the case's folder, which must stay as it was

    def run(args, cwd) -> tuple[subprocess.CompletedProcess, float, float]:
        out, err = outputs / "stdout", outputs / "stderr"
        proc.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}) + "\n")
        proc.stdin.flush()
        rc, wall, cpu = json.loads(proc.stdout.readline())
        done = subprocess.CompletedProcess(args, rc, out.read_text(), err.read_text())
        out.unlink()
        err.unlink()
        return done, wall, cpu

    yield run
    proc.stdin.close()
    proc.wait(30)


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_fails_at_once_with_one_line(tmp_path, args, message, forks):
    """Settings, then the inputs they name, are checked before Prefect, torch, MLflow or trdg load: a mistake says
    what is wrong in one line, and writes nothing."""
    inputs(tmp_path)
    before = tree(tmp_path)
    p, wall, cpu = forks(args, tmp_path)
    assert_one_line(p, message)
    assert p.stdout.strip().splitlines()[-1] == "[]"  # none of the heavy libraries was imported
    assert tree(tmp_path) == before  # nothing written, not even an empty output folder
    assert cpu < 2.0 and wall < 8.0, (cpu, wall)


# A case of each kind of check, from a Python of its own as a user runs it: start-up included.
@pytest.mark.parametrize("args, message", [case for case in BAD_INPUT if case[0][0] in {"run", "train"}][:2]
                         + [case for case in BAD_INPUT if "fake.ttf" in " ".join(case[0])][:1]
                         + [case for case in BAD_INPUT if case[0][0] == "export"][:1])
def test_bad_input_fails_in_a_second_or_two_with_one_line(tmp_path, args, message):
    """A mistake costs a second or two from the shell, says what is wrong in one line, and writes nothing."""
    inputs(tmp_path)
    before = tree(tmp_path)
    p, wall, cpu = fail(args, tmp_path)
    assert_one_line(p, message)
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert tree(tmp_path) == before
    # The time to fail: the CPU the process used is the machine-independent part (the tests share 2 cores with
    # another worker); the wall time only has to stay clear of Prefect's and torch's start-up.
    assert cpu < 2.0 and wall < 8.0, (cpu, wall)


def test_unreachable_prefect_api_is_a_clear_error(tmp_path):
    """A remote endpoint is asked: under 5 s, Prefect's settings loaded but no server started."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    inputs(tmp_path)
    before = tree(tmp_path)
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    p, wall, cpu = fail(["data", "--out", "o", *SMALL], tmp_path, env)
    assert_one_line(p, f"Prefect API at http://127.0.0.1:{port}/api is unreachable")
    assert tree(tmp_path) == before and cpu < 5.0 and wall < 30.0


def test_bad_cron_is_refused_before_serving(tmp_path):
    p, wall, cpu = fail(["serve", "--cron", "every monday"], tmp_path)
    assert_one_line(p, "--cron 'every monday': Invalid cron string")
    assert p.stdout.strip() == "['prefect']" and cpu < 5.0 and wall < 30.0  # Prefect's schedule model checks it


@pytest.mark.slow
def test_run_end_to_end_then_cached(tmp_path, prefect_api):
    """README command 1 in small: data, fine-tune, evaluation, export and MLflow, from one command."""
    import json

    import mlflow

    from tests.conftest import FONTS

    words = tmp_path / "words.txt"
    words.write_text("한글\n사랑\n바다\n하늘\n", encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", "--config", "quick", "--out", str(tmp_path / "out"), "--set", f"render.words={words}",
            "--set", "render.count=16", "--set", "render.val_count=8", "--set", "render.min_shard_images=1",
            "--set", f"render.fonts=[{FONTS['pen']}]", "--set", "train.img_h=32", "--set", "train.batch_size=8",
            "--set", "train.num_iter=4", "--set", "train.val_interval=2", "--set", "train.threads=1",
            "--set", f"tracking.tracking_uri={uri}", "--set", "tracking.registered_model=''",
            "--set", "render.effects.ink.enabled=true", "--set", "render.regression_count=8"]
    env = {**os.environ, **prefect_api}  # the temporary server: tests/test_prefect_server.py and test_crash.py
    first = subprocess.run([sys.executable, "-m", "flows.cli", *args, "--json"], capture_output=True, text=True,
                           timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["dataset"]["splits"]["train"]["samples"] == 16
    assert result["train"]["iterations"] == 4
    val = result["train"]["evaluation"]["val"]
    assert val["samples"] == 8 and 0 <= val["accuracy"] <= 100 and set(val["by_font"]) == {"Nanum Pen Script Regular"}
    bundle = result["export"]
    assert {os.path.basename(bundle[k]) for k in ("pth", "yaml", "py")} == {
        "hwocr_korean.pth", "hwocr_korean.yaml", "hwocr_korean.py"}
    assert all(os.path.exists(bundle[k]) for k in ("pth", "yaml", "py", "readme"))
    client = mlflow.MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result["train"]["mlflow_run_id"], "easyocr")}
    assert "easyocr/hwocr_korean.pth" in logged and "easyocr/hwocr_korean.yaml" in logged
    # The run says what data it trained on: effects, glyph jitter and fonts as tags, the render settings in full.
    run = client.get_run(result["train"]["mlflow_run_id"])
    assert {k: run.data.tags[k] for k in ("render.effects", "render.glyph_jitter", "render.test_fonts")} == {
        "render.effects": "ink", "render.glyph_jitter": "off", "render.test_fonts": "none"}
    assert run.data.tags["render.train_fonts"] == "Nanum Pen Script Regular"
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/dataset/render.json")
    assert logged["render"]["effects"]["ink"]["enabled"] is True and logged["words"]["count"] == 4
    # The bundle was read by the real easyocr, float and int8, beside hwocr's own figure (no test split: val).
    check = result["easyocr"]
    assert check["split"] == "val" and set(check) >= {"float", "int8", "int8_agreement", "gap", "mismatch"}
    assert check["gap"] == check["float"]["accuracy"] - val["accuracy"]
    assert check["mismatch"] == (abs(check["gap"]) > 1)
    assert run.data.metrics["val_easyocr_float_accuracy"] == check["float"]["accuracy"]
    assert run.data.metrics["val_easyocr_int8_cer"] == check["int8"]["cer"]
    assert run.data.tags["hwocr.easyocr_mismatch"] == str(check["mismatch"]).lower()
    assert check["pages"]["words"] == 8 and run.data.metrics["val_easyocr_pages_cer"] == check["pages"]["cer"]
    assert check["batch"]["samples"] == 8
    # The three decoders on the same words; the bundle README says which to pass, and its confidence thresholds.
    assert list(check["decoders"]) == ["greedy", "beamsearch", "wordbeamsearch"]
    assert run.data.metrics["val_easyocr_beamsearch_accuracy"] == check["decoders"]["beamsearch"]["accuracy"]
    with open(bundle["readme"], encoding="utf-8") as f:
        readme = f.read()
    assert "## Decoder" in readme and 'Pass `decoder="' in readme
    assert "## Confidence\n\nNot calibrated (8 words: calibration needs at least 200)" in readme
    assert run.data.metrics["val_easyocr_batch_agreement"] == check["batch"]["agreement"]

    # conftest keeps Prefect at WARNING; a user's default (INFO) shows what the run log holds.
    again = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                           env={**env, "PREFECT_LOGGING_LEVEL": "INFO"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 4 iterations (cached)" in again.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in again.stdout
    assert "val: 8 samples, accuracy" in again.stdout
    assert "read by EasyOCR itself, val: accuracy" in again.stdout
    # Quiet by default: Prefect's task lines go to the log file named at the end, not to the console.
    assert "Finished in state" not in again.stderr
    [log] = [line.removeprefix("log: ") for line in again.stdout.splitlines() if line.startswith("log: ")]
    assert os.path.dirname(log) == str(tmp_path / "out" / "logs")
    with open(log, encoding="utf-8") as f:
        logged = f.read()
    assert "Finished in state Cached" in logged
    # The check's pages, composed and run through the detector before training, are found in the cache again.
    assert re.search(r"Task run 'find pages val' - Finished in state Cached", logged)
    [pages] = (tmp_path / "out" / "pages" / "val").iterdir()
    assert (pages / "pages.json").is_file() and (pages / "page-0000.png").is_file()

    # Another machine's MLflow (a fresh store) with the same outputs: the cached training is reused, and its run,
    # tracked elsewhere, is named instead of failing the pipeline.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    elsewhere = subprocess.run([sys.executable, "-m", "flows.cli",
                                *[f"tracking.tracking_uri={other}" if a == f"tracking.tracking_uri={uri}" else a
                                  for a in args]], capture_output=True, text=True, timeout=600, env=env)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert "trained 4 iterations (cached)" in elsewhere.stdout
    assert f"MLflow: the cached training was tracked in another store than {other}" in elsewhere.stdout
    assert f"MLflow run {result['train']['mlflow_run_id']} is not in {other}" in elsewhere.stderr
    fresh = mlflow.MlflowClient(other)
    assert fresh.search_runs([e.experiment_id for e in fresh.search_experiments()]) == []


@pytest.fixture
def silent_store():
    """A TCP server on loopback that accepts connections and never answers (an object store hung mid-request)."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


def test_remote_faults_say_what_to_check_in_one_line(tmp_path, silent_store):
    """Credentials, endpoint and network told apart, within the timeouts, nothing written."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    inputs(tmp_path)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    keys = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    cases = [
        (["data", "--out", "s3://bucket/x", *SMALL], {"AWS_ENDPOINT_URL": closed},
         "s3://bucket/x: no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", 8),
        (["data", "--out", "s3://bucket/x", *SMALL], {**keys, "AWS_ENDPOINT_URL": closed},
         f"s3://bucket/x: cannot connect to {closed} (EndpointConnectionError", 8),
        (["data", "--out", "s3://bucket/x", *SMALL, "--set", "remote.read_timeout=2"],
         {**keys, "AWS_ENDPOINT_URL": silent_store},
         f"s3://bucket/x: {silent_store} accepted the connection but sent nothing for 2 s (remote.read_timeout)", 12),
        (["data", "--out", "o", "--set", f"render.fonts=[{PEN}]", "--set", f"render.words={closed}/words.txt"], {},
         f"{closed}/words.txt: cannot connect to {closed} (ClientConnectorError", 8),
    ]
    before = tree(tmp_path)
    for args, env, message, limit in cases:
        p, wall, _ = fail(args, tmp_path, {**base, **env})
        assert_one_line(p, message)
        assert wall < limit and tree(tmp_path) == before, (args, wall)
