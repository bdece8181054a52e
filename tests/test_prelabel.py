"""hwocr prelabel: scans read by a model as EasyOCR reads them, into a review folder that is a `pages` source."""

import ast
import glob
import json
import os
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from flows.cli import main
from models.charset import load_charset
from models.prelabeling import DetectorSettings
from tests.test_export import EASYOCR_PYTHON
from tests.test_pages import MODELS, READTEXT

BRUSH = "/usr/share/fonts/truetype/nanum/NanumBrush.ttf"


def readtext_defaults() -> dict:
    """readtext's keyword defaults, read from EasyOCR's source in its venv (no import: torch would load)."""
    [source] = glob.glob(os.path.join(os.path.dirname(os.path.dirname(EASYOCR_PYTHON)), "lib", "python3*",
                                      "site-packages", "easyocr", "easyocr.py"))
    tree = ast.parse(open(source, encoding="utf-8").read())
    [fn] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "readtext"]
    args = fn.args.args[-len(fn.args.defaults):]
    return {a.arg: ast.literal_eval(d) for a, d in zip(args, fn.args.defaults)}


def test_detector_settings_are_readtexts_defaults():
    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it")
    defaults = readtext_defaults()
    ours = DetectorSettings().model_dump()
    assert ours == {k: defaults[k] for k in ours}
    assert "add_margin" in defaults and "add_margin" not in ours  # stored tight, cut with readtext's margin


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["prelabel", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys):
    model = tmp_path / "model.pth"
    model.write_bytes(b"not read before the images are")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "--images", str(tmp_path / "empty"), "--model", str(model), "--out", str(tmp_path / "o"))
    assert code == 2 and "no images (.png, .jpg" in err and len(err.strip().splitlines()) == 1, err

    scans = tmp_path / "scans"
    scans.mkdir()
    Image.new("L", (40, 20), 255).save(scans / "a.png")
    (scans / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code, _, err = run(capsys, "--images", str(scans), "--model", str(model), "--out", str(tmp_path / "o"))
    assert code == 2 and f"{scans / 'b.jpg'}: cannot be decoded as an image" in err, err

    (scans / "b.jpg").unlink()
    Image.new("1", (10_001, 10_000)).save(scans / "huge.png")  # 100.01 megapixels, a few kB on disk
    code, _, err = run(capsys, "--images", str(scans), "--model", str(model), "--out", str(tmp_path / "o"))
    assert code == 2 and "huge.png: 10001 x 10000 pixels (100 megapixels), over the 100 megapixels" in err, err

    (scans / "huge.png").unlink()
    for bad, said in (("nonsense=1", "KEY one of min_size, text_threshold"),
                      ("text_threshold=high", "--detector text_threshold=high: Input should be a valid number")):
        code, _, err = run(capsys, "--images", str(scans), "--model", str(model), "--out", str(tmp_path / "o"),
                           "--detector", bad)
        assert code == 2 and said in err, err

    # Korean scans with their own labels, and a bundle of English's characters (its yaml is what the check reads;
    # the weights are not loaded before it).
    (scans / "Label.txt").write_text('scans/a.png\t[{"transcription": "한글", "points": [[0, 0], [9, 0], [9, 9], '
                                     '[0, 9]]}]\n', encoding="utf-8")
    english = tmp_path / "english"
    english.mkdir()
    (english / "en.yaml").write_text(yaml.safe_dump({
        "network_params": {"input_channel": 1, "output_channel": 256, "hidden_size": 256}, "imgH": 64,
        "lang_list": ["en"], "character_list": load_charset("english_g2")}), encoding="utf-8")
    (english / "en.pth").write_bytes(b"")
    code, _, err = run(capsys, "--images", str(scans), "--model", str(english), "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == (
        f"hwocr: error: --model {english}: its 96 characters cannot write 1 of the 1 labels of {scans / 'Label.txt'} "
        "('한글': '한' U+D55C is not one of them); a model of the labels' language reads these scans"), err
    assert not (tmp_path / "o").exists()


def label_rows(path) -> dict[str, list[dict]]:
    rows = {}
    for line in open(path, encoding="utf-8"):
        page, words = line.rstrip("\n").split("\t")
        rows[page.split("/", 1)[1]] = json.loads(words)
    return rows


@pytest.mark.slow
def test_scans_are_prelabelled_as_readtext_reads_them_and_reviews_are_never_overwritten(trained, tmp_path, capsys):
    from models.bundle import ExportSettings, export_easyocr_fn
    from models.sources import SourceSettings, read_source
    from synth.scans import make_scans

    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it")
    words = ["한글", "손글씨", "가나다", "학교", "사랑", "바다", "하늘", "서울", "친구", "가족"]
    make_scans(str(tmp_path / "scans"), [BRUSH], words, pages=2, words_per_page=(4, 5), page_size=(640, 900), seed=5)
    pages = tmp_path / "scans" / "pages"
    bundle = tmp_path / "bundle"
    assert export_easyocr_fn(trained, str(bundle), ExportSettings(name="hwocr_pl"))["detector"]
    review = tmp_path / "review"
    args = ("--images", str(pages), "--model", str(bundle), "--out", str(review), "--json")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["images"], result["pages"], result["crops"]) == (2, 2, 0)
    # The stand-in scans carry their own Label.txt: the detector found the words there.
    truth = result["truth"]
    assert truth["pages"] == 2 and truth["words"] >= 8 and truth["detection_recall"] >= 90.0, truth
    rows = label_rows(review / "Label.txt")
    assert sorted(rows) == ["page-0001.jpg", "page-0002.jpg"]
    found = [w for page in rows.values() for w in page]
    assert len(found) == result["words"] == sum(result["confidence_histogram"].values())
    for w in found:
        assert w["status"] == "predicted" and not w["difficult"] and 0.0 <= w["confidence"] <= 1.0
        assert (review / w["crop"]).is_file() and len(w["points"]) == 4
    # The sources are copied, not touched; the folder is a pages source as it is.
    assert (review / "page-0001.jpg").read_bytes() == (pages / "page-0001.jpg").read_bytes()
    assert len(read_source(SourceSettings(name="mine", url=str(review))).entries) == len(found)
    tasks = json.loads((review / "labelstudio-tasks.json").read_text(encoding="utf-8"))
    assert [t["data"]["ocr"] for t in tasks] == [f"/data/local-files/?d=review/{p}" for p in sorted(rows)]
    assert sum(len(t["predictions"][0]["result"]) for t in tasks) == 3 * len(found)
    # Each prediction and confidence is readtext's for that box, bit for bit (readtext's boxes carry its margin;
    # the stored ones are tight, and cut with that margin).
    proc = subprocess.run([EASYOCR_PYTHON, "-c", READTEXT, str(bundle), "hwocr_pl",
                           *(str(pages / p) for p in sorted(rows))], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": MODELS})
    readtext = json.loads(proc.stdout)
    assert [[[t, c] for _, t, c in page] for page in readtext] == [
        [[w["transcription"], w["confidence"]] for w in rows[p]] for p in sorted(rows)]

    # Again: every shard from the cache, the same labels.
    before = (review / "Label.txt").read_bytes()
    code, _, err = run(capsys, *args)
    assert code == 0 and (review / "Label.txt").read_bytes() == before, err
    # A person reviewed a word: prelabel refuses to write over the folder, in one line, and changes nothing.
    text = before.decode("utf-8").replace('"status": "predicted"', '"status": "reviewed"', 1)
    (review / "Label.txt").write_text(text, encoding="utf-8")
    code, _, err = run(capsys, *args)
    assert code == 2 and "1 of its words were reviewed; prelabel would overwrite them" in err, err
    assert (review / "Label.txt").read_text(encoding="utf-8") == text


def test_the_label_studio_round_trip_keeps_every_label_and_box(tmp_path):
    """The review folder's words as Label Studio pre-annotations, accepted (one corrected) and exported by Label
    Studio: read back as a `labelstudio` source, every label and box is the one sent, or the correction."""
    from models.prelabeling import labelstudio_tasks
    from models.sources import SourceSettings, read_source
    from tests.test_sources import WORDS, page

    (tmp_path / "scans").mkdir()
    rows = []
    for k, tilt in enumerate((0.0, 6.0)):  # the second page's second line tilted: polygons
        quads = page(tmp_path / "scans", f"p{k}.png", WORDS, tilt)
        rows.append({"image": f"p{k}.png", "kind": "pages", "size": [640, 360],
                     "words": [{"transcription": w, "points": q, "confidence": 0.5, "status": "predicted"}
                               for w, q in zip(WORDS, quads)]})
    tasks = labelstudio_tasks(rows, "scans")
    assert [t["predictions"][0]["model_version"] for t in tasks] == ["hwocr-prelabel"] * 2
    # What Label Studio exports once a person accepted the pre-annotations and corrected one transcription.
    exported = [{"id": t["id"], "data": t["data"], "annotations": [{"id": t["id"], "result": t["predictions"][0]
                                                                     ["result"]}]} for t in tasks]
    [fix] = [r for r in exported[1]["annotations"][0]["result"] if r["type"] == "textarea"
             and r["value"]["text"] == [WORDS[4]]]
    fix["value"]["text"] = ["나무"]
    (tmp_path / "scans" / "export.json").write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    src = read_source(SourceSettings(name="ls", url=str(tmp_path / "scans" / "export.json"), format="labelstudio"))
    got = sorted((e.path, e.label, [[round(x, 2), round(y, 2)] for x, y in e.box]) for e in src.entries)
    want = sorted((r["image"], "나무" if (r["image"], w["transcription"]) == ("p1.png", WORDS[4])
                   else w["transcription"], [[float(x), float(y)] for x, y in w["points"]])
                  for r in rows for w in r["words"])
    assert len(got) == 12 and [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, a), (_, _, b) in zip(got, want):
        assert np.allclose(a, b, atol=0.01), (a, b)
