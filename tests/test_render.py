import os

import pytest
from PIL import Image

from conftest import FONTS
from synth import trdg_driver
from synth.render_settings import RenderSettings


def job(tmp_path, name, start, stop, words=("한글", "사랑", "Hello", "2024"), font="pen", covered=None, **over):
    return trdg_driver.RenderJob(
        settings=RenderSettings(**over).pixel_settings(), words=words, covered=covered or "".join(set("".join(words))),
        split="train", font_sha="f" * 64, font_path=FONTS[font], start=start, stop=stop, key="k",
        dir=str(tmp_path / name),
    )


def files(path):
    import tarfile

    with tarfile.open(os.path.join(path, "images.tar")) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_bytes_depend_only_on_index_not_on_range(tmp_path):
    whole = trdg_driver.render_shard_here(job(tmp_path, "whole", 0, 12))
    trdg_driver.render_shard_here(job(tmp_path, "a", 0, 5))
    trdg_driver.render_shard_here(job(tmp_path, "b", 5, 12))
    merged = {**files(tmp_path / "a"), **files(tmp_path / "b")}
    assert merged == files(tmp_path / "whole") and len(merged) == 12
    assert whole["counts"]["images"] == 12
    # The manifest records the sha256 of every file it wrote.
    import hashlib

    images = files(tmp_path / "whole")
    for rel, sha in whole["files"].items():
        data = images[rel.split("/", 1)[1]] if "/" in rel else open(tmp_path / "whole" / rel, "rb").read()
        assert hashlib.sha256(data).hexdigest() == sha
    assert set(whole["files"]) == {"labels.tsv", "images.tar"} | {f"images.tar/{n}" for n in images}
    # Only the three files of the layout are left: the pieces went into the archive.
    assert sorted(os.listdir(tmp_path / "whole")) == ["images.tar", "labels.tsv", "manifest.json"]


def test_archive_joined_from_pieces_is_the_one_tarfile_writes(tmp_path):
    """Workers write archive members piece by piece; the joined archive has tarfile's bytes, so shard hashes stay."""
    import io
    import tarfile

    spec = job(tmp_path, "whole", 0, 7)
    parts = [trdg_driver.render_range(spec.model_copy(update={"start": a, "stop": b})) for a, b in ((0, 3), (3, 7))]
    manifest = trdg_driver.write_manifest(spec, parts)
    images = files(tmp_path / "whole")
    assert len(images) == 7
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(images):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(images[name]), 0o644
            tar.addfile(info, io.BytesIO(images[name]))
    assert (tmp_path / "whole" / "images.tar").read_bytes() == buf.getvalue()
    assert manifest["files"]["images.tar"] == __import__("hashlib").sha256(buf.getvalue()).hexdigest()


def test_member_headers_are_tarfiles_for_every_name_and_size():
    """The template header (name, size and checksum patched) against tarfile's own, across field widths."""
    import tarfile

    for size in (0, 1, 511, 512, 513, 70_000, 8**7, 8**8 + 5):
        for name in ("000000001.png", "a", "x" * 99, "x" * 100, "d" * 60 + "/" + "y" * 60, "한글.png"):
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, 0o644
            data = bytes(size)
            want = info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")
            assert trdg_driver._member(name, data) == want + data + bytes(-size % 512), (name, size)


def test_first_words_come_first_and_leave_the_rest_as_they_were(tmp_path):
    """render.min_syllable_draws: a font's images 0.. draw the words dealt to it; later images are unchanged."""
    plain = job(tmp_path, "plain", 0, 6, covered="한글사랑Hello2024바다하늘")
    first = plain.model_copy(update={"first": ("바다", "하늘"), "dir": str(tmp_path / "first")})
    trdg_driver.render_shard_here(plain)
    trdg_driver.render_shard_here(first)
    labels = [line.split("\t")[1] for line in (tmp_path / "first" / "labels.tsv").read_text().splitlines()]
    assert labels[:2] == ["바다", "하늘"]
    a, b = files(tmp_path / "plain"), files(tmp_path / "first")
    assert [a[n] for n in sorted(a)][2:] == [b[n] for n in sorted(b)][2:]


def test_seed_settings_give_80px_grayscale_pngs(tmp_path):
    trdg_driver.render_shard_here(job(tmp_path, "s", 0, 6))
    for data in files(tmp_path / "s").values():
        im = Image.open(__import__("io").BytesIO(data))
        assert im.format == "PNG" and im.mode == "L" and im.height == 80
        assert im.getextrema()[0] < 100  # ink present


def test_different_seed_changes_images(tmp_path):
    trdg_driver.render_shard_here(job(tmp_path, "a", 0, 4, seed=1))
    trdg_driver.render_shard_here(job(tmp_path, "b", 0, 4, seed=2))
    assert files(tmp_path / "a") != files(tmp_path / "b")


def test_words_a_font_cannot_draw_are_redrawn(tmp_path):
    # Guseul draws Hangul but no Latin letters or digits: those words must never be drawn with it.
    m = trdg_driver.render_shard_here(job(tmp_path, "g", 0, 20, font="guseul", covered="한글사랑"))
    labels = open(tmp_path / "g" / "labels.tsv", encoding="utf-8").read().split("\n")[:-1]
    assert len(labels) == 20 and {line.split("\t")[1] for line in labels} <= {"한글", "사랑"}
    assert m["counts"]["rejected"]["missing_glyph"] > 0


def test_blank_images_are_rejected_and_counted(tmp_path):
    # A text colour equal to the background draws nothing visible.
    m = trdg_driver.render_shard_here(job(tmp_path, "w", 0, 3, text_color="#FFFFFF", stroke_fill="#FFFFFF"))
    assert m["counts"]["images"] == 0
    assert sum(m["counts"]["rejected"].values()) == 3 * trdg_driver.MAX_ATTEMPTS
    assert m["counts"]["dropped"] == {"render_failed": 3}


def test_blank_detector():
    assert trdg_driver.is_blank(Image.new("L", (50, 20), 255))
    im = Image.new("L", (50, 20), 255)
    im.putpixel((3, 3), 0)
    assert not trdg_driver.is_blank(im)


def test_jpeg_option(tmp_path):
    trdg_driver.render_shard_here(job(tmp_path, "j", 0, 2, image_format="jpg"))
    assert sorted(files(tmp_path / "j")) == ["000000000.jpg", "000000001.jpg"]


@pytest.mark.parametrize("bad", [{"skew_angle": 91}, {"height": 0}, {"background": 3}])
def test_settings_are_validated(bad):
    with pytest.raises(ValueError):
        RenderSettings(**bad)


_PLAIN_TRDG = r"""
import contextlib, hashlib, io, json, random, sys
import cv2, numpy as np
from PIL import ImageFont
ImageFont.FreeTypeFont.getsize = lambda self, t, *a, **k: self.getbbox(t, *a, **k)[2:]
with contextlib.redirect_stdout(io.StringIO()):
    from trdg.data_generator import FakeTextDataGenerator
cases = json.loads(sys.argv[1])
out = []
for word, font, background, seed, mode, margins in cases:
    random.seed(seed); np.random.seed(seed % (1 << 32)); cv2.setRNGSeed(seed % (1 << 31))
    with contextlib.redirect_stdout(io.StringIO()):
        img = FakeTextDataGenerator.generate(0, word, font, None, 80, "png", 15, True, 0, False, background, 0, 0,
                                             False, 2, -1, 1, "#282828", 0, 1.0, 0, tuple(margins), False, 0, False,
                                             None, image_mode=mode)
    buf = io.BytesIO(); img.save(buf, "PNG"); out.append(hashlib.sha256(buf.getvalue()).hexdigest())
print(json.dumps(out))
"""


def test_same_bytes_as_unpatched_trdg():
    """trdg's generate re-expressed, with its speed-ups (font cache, numpy ImageStat, no mask on backgrounds 0 and 1),
    gives every byte of trdg's own images."""
    import hashlib
    import json
    import subprocess
    import sys

    cases = [[w, FONTS[f], bg, 1000 * i + bg, "L", (0, 0, 0, 0)] for i, (w, f) in enumerate(
        [("한글", "pen"), ("안녕하세요", "pilgi"), ("Hello", "brush"), ("2024", "pen"), ("손글씨", "brush")])
        for bg in (0, 1)]
    # Colour output and margins: the gray word is composed on one band, and still gives trdg's bytes.
    cases += [["사랑", FONTS["pen"], 1, 77, "RGB", (0, 0, 0, 0)], ["글씨", FONTS["pilgi"], 0, 78, "L", (3, 5, 2, 4)]]
    proc = subprocess.run([sys.executable, "-c", _PLAIN_TRDG, json.dumps(cases)], capture_output=True, text=True,
                          check=True, timeout=120)
    expected = json.loads(proc.stdout)
    ours = []
    for word, font, bg, seed, mode, margins in cases:
        s = trdg_driver.PixelSettings.model_validate(
            RenderSettings(background=bg, grayscale=mode == "L", margins=margins).pixel_settings())
        ours.append(hashlib.sha256(trdg_driver.encode(trdg_driver.render_one(word, font, s, seed), s)).hexdigest())
    assert ours == expected


def test_effects_are_seeded_per_image_and_off_by_default(tmp_path):
    from synth.effects import EffectsSettings

    assert "effects" not in RenderSettings().pixel_settings()  # plain renders keep their keys and bytes
    on = EffectsSettings.all_on(probability=1.0).model_dump(mode="json")
    trdg_driver.render_shard_here(job(tmp_path, "plain", 0, 6))
    trdg_driver.render_shard_here(job(tmp_path, "whole", 0, 6, effects=on))
    trdg_driver.render_shard_here(job(tmp_path, "a", 0, 2, effects=on))
    trdg_driver.render_shard_here(job(tmp_path, "b", 2, 6, effects=on))
    whole = files(tmp_path / "whole")
    assert {**files(tmp_path / "a"), **files(tmp_path / "b")} == whole
    plain = files(tmp_path / "plain")
    assert all(whole[n] != plain[n] for n in plain)


def test_split_count_follows_weights():
    from synth.shards import split_count

    assert split_count(10, [1, 1, 1]) == [4, 3, 3]  # as an even split: the first fonts get the remainder
    assert split_count(40, [0.75, 0.25]) == [30, 10]
    assert split_count(7, [0.5, 0.3, 0.2]) == [4, 2, 1] and sum(split_count(1001, [0.3, 0.3, 0.4])) == 1001


def test_glyph_jitter_draws_each_glyph_apart_and_stays_seeded(tmp_path):
    assert "glyph_jitter" not in RenderSettings().pixel_settings()
    jitter = {"enabled": True, "probability": 1.0, "baseline": 0.1, "rotation": 8, "scale": 0.1, "spacing": 0.1}
    trdg_driver.render_shard_here(job(tmp_path, "plain", 0, 6))
    trdg_driver.render_shard_here(job(tmp_path, "whole", 0, 6, glyph_jitter=jitter))
    trdg_driver.render_shard_here(job(tmp_path, "a", 0, 3, glyph_jitter=jitter))
    trdg_driver.render_shard_here(job(tmp_path, "b", 3, 6, glyph_jitter=jitter))
    whole, plain = files(tmp_path / "whole"), files(tmp_path / "plain")
    assert {**files(tmp_path / "a"), **files(tmp_path / "b")} == whole
    assert all(whole[n] != plain[n] for n in plain)
    import io

    for n in whole:  # the word keeps trdg's height and is drawn whole
        with Image.open(io.BytesIO(whole[n])) as im:
            assert im.height == 80 and im.getextrema()[0] < 100
    # And a plain render after a jittered one is plain again.
    trdg_driver.render_shard_here(job(tmp_path, "plain2", 0, 6))
    assert files(tmp_path / "plain2") == plain
