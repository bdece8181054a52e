import io
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import read_lmdb
from hwocr.errors import HwocrError
from models.lmdb_format import READER_OPTIONS, PackSettings
from models.lmdb_format import pack as pack_gt


def png(text_width=40, seed=0) -> bytes:
    im = Image.new("L", (text_width, 32), 255)
    for x in range(seed % 7, text_width, 5):
        im.putpixel((x, 16), 0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    lines = []
    for i, label in enumerate(["한글", "Hello", "2024", "손글씨"]):
        (root / "img" / f"{i}.png").write_bytes(png(40 + i, i))
        lines.append(f"img/{i}.png\t{label}\n")
    (root / "gt.txt").write_text("".join(lines), encoding="utf-8")
    return root


def pack(folder, out, **settings):
    return pack_gt(str(folder / "gt.txt"), str(folder), str(out), PackSettings(**settings))


def test_benchmark_layout(folder, tmp_path):
    out = tmp_path / "lmdb"
    result = pack(folder, out)
    assert result["samples"] == 4
    items = read_lmdb(out)
    assert items[b"num-samples"] == b"4"
    assert items[b"label-000000001"].decode() == "한글" and items[b"label-000000004"].decode() == "손글씨"
    assert items[b"image-000000002"] == (folder / "img" / "1.png").read_bytes()
    assert set(items) == {b"num-samples"} | {f"{k}-{i:09d}".encode() for k in ("image", "label") for i in range(1, 5)}
    assert sorted(os.listdir(out)) == ["data.mdb", "lock.mdb"]  # the marker is the pipeline stage's


def test_reader_settings_of_the_benchmark(folder, tmp_path):
    import lmdb

    pack(folder, tmp_path / "lmdb")
    env = lmdb.open(str(tmp_path / "lmdb"), **READER_OPTIONS)
    with env.begin(write=False) as txn:
        n = int(txn.get(b"num-samples"))
        for index in range(1, n + 1):
            label = txn.get(f"label-{index:09d}".encode()).decode("utf-8")
            img = Image.open(io.BytesIO(txn.get(f"image-{index:09d}".encode()))).convert("L")
            assert label and img.size[1] == 32


def test_map_grows_when_full(folder, tmp_path):
    big = folder / "img" / "big.png"
    big.write_bytes(_noise_png())
    with open(folder / "gt.txt", "a", encoding="utf-8") as f:
        f.write("img/big.png\t큰그림\n")
    result = pack(folder, tmp_path / "lmdb", initial_map_mb=1, commit_every=1)
    assert result["samples"] == 5
    assert read_lmdb(tmp_path / "lmdb")[b"image-000000005"] == big.read_bytes()


def _noise_png() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((900, 900), 120).convert("L").save(buf, "PNG", compress_level=0)
    assert len(buf.getvalue()) > 800_000
    return buf.getvalue()


@pytest.mark.parametrize("line,message", [
    ("img/0.png 한글", r"gt\.txt line 2: expected 'path<TAB>label', found no tab"),
    ("img/0.png\t한\t글", r"gt\.txt line 2: expected 'path<TAB>label', found 2 tabs"),
    ("img/missing.png\t한글", r"gt\.txt line 2: image .*img/missing\.png does not exist"),
])
def test_bad_gt_lines(folder, tmp_path, line, message):
    (folder / "gt.txt").write_text(f"img/1.png\tHello\n{line}\n", encoding="utf-8")
    with pytest.raises(HwocrError, match=message):
        pack(folder, tmp_path / "lmdb")
    assert not (tmp_path / "lmdb").exists() and os.listdir(tmp_path) == ["data"]


@pytest.mark.parametrize("encoding, message", [
    ("cp949", r"gt\.txt line 2 is not UTF-8 \(byte 0x.*\); it decodes as cp949: convert it with `iconv -f cp949"),
    ("utf-16", r"gt\.txt is UTF-16 text; expected UTF-8: convert it with `iconv -f utf-16 -t utf-8`"),
])
def test_gt_in_another_encoding_names_it(folder, tmp_path, encoding, message):
    (folder / "gt.txt").write_bytes("img/1.png\tHello\nimg/0.png\t한글\n".encode(encoding))
    with pytest.raises(HwocrError, match=message):
        pack(folder, tmp_path / "lmdb")
    assert not (tmp_path / "lmdb").exists()


def test_unreadable_image(folder, tmp_path):
    (folder / "img" / "2.png").write_bytes(png()[:40])
    with pytest.raises(HwocrError, match=r"gt\.txt line 3: image .*2\.png cannot be decoded"):
        pack(folder, tmp_path / "lmdb")
    assert os.listdir(tmp_path) == ["data"]


def test_bad_samples_skip(folder, tmp_path):
    (folder / "img" / "2.png").write_bytes(b"garbage")
    result = pack(folder, tmp_path / "lmdb", bad_samples="skip")
    assert (result["samples"], result["skipped"]) == (3, 1)
    assert read_lmdb(tmp_path / "lmdb")[b"label-000000003"].decode() == "손글씨"


def test_disk_full_leaves_nothing(folder, tmp_path):
    big = folder / "img" / "big.png"
    big.write_bytes(_noise_png())
    with open(folder / "gt.txt", "a", encoding="utf-8") as f:
        f.write("img/big.png\t큰그림\n")
    out = tmp_path / "out"
    out.mkdir()
    # A real write failure: the kernel refuses to grow any file past 256 KiB (EFBIG), as on a full disk.
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10));"
        "from flows.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, "pack", "--gt", str(folder / "gt.txt"), "--images",
                           str(folder), "--out", str(out / "lmdb")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "packing" in proc.stderr and "nothing was written" in proc.stderr and str(out / "lmdb") in proc.stderr
    assert os.listdir(out) == []


def test_cli_pack_json(folder, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "pack", "--gt", str(folder / "gt.txt"), "--images",
                           str(folder), "--out", str(tmp_path / "lmdb"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples"] == 4 and result["url"] == str(tmp_path / "lmdb")


def _tar(path, members: dict[str, bytes]) -> None:
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_images_inside_an_archive_pack_like_loose_files(folder, tmp_path):
    # gt.txt may name members of a tar (<dir>/NAME.tar/<member>), as render shards do.
    _tar(folder / "img.tar", {f"{i}.png": (folder / "img" / f"{i}.png").read_bytes() for i in range(4)})
    (folder / "gt_tar.txt").write_text((folder / "gt.txt").read_text(encoding="utf-8").replace("img/", "img.tar/"),
                                       encoding="utf-8")
    loose = pack_gt(str(folder / "gt.txt"), str(folder), str(tmp_path / "a"), PackSettings())
    packed = pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "b"), PackSettings())
    assert packed["samples"] == loose["samples"] == 4
    assert read_lmdb(tmp_path / "b") == read_lmdb(tmp_path / "a")


@pytest.mark.parametrize("archive, message", [
    (None, r"gt_tar.txt line 3: image .*img.tar/2.png does not exist"),
    (b"not a tar at all" * 64, r"gt_tar.txt line 1: .*img.tar is not a readable uncompressed tar archive"),
])
def test_bad_archive_names_the_gt_line(folder, tmp_path, archive, message):
    if archive is None:
        _tar(folder / "img.tar", {f"{i}.png": png() for i in (0, 1, 3)})
    else:
        (folder / "img.tar").write_bytes(archive)
    (folder / "gt_tar.txt").write_text((folder / "gt.txt").read_text(encoding="utf-8").replace("img/", "img.tar/"),
                                       encoding="utf-8")
    with pytest.raises(HwocrError, match=message):
        pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "db"), PackSettings())
    assert not (tmp_path / "db").exists()


def test_a_shard_manifest_vouches_for_its_images_and_catches_a_changed_one(folder, tmp_path):
    """Images in a render shard's archive are checked against the sha256 its manifest.json records, not decoded;
    one whose bytes changed after rendering is refused, naming the gt line, even when it still decodes."""
    import hashlib
    import json

    images = {f"{i}.png": (folder / "img" / f"{i}.png").read_bytes() for i in range(4)}
    shard = folder / "shard"
    shard.mkdir()
    (shard / "manifest.json").write_text(json.dumps(
        {"files": {f"images.tar/{k}": hashlib.sha256(v).hexdigest() for k, v in images.items()}}), encoding="utf-8")
    (folder / "gt_tar.txt").write_text((folder / "gt.txt").read_text(encoding="utf-8").replace(
        "img/", "shard/images.tar/"), encoding="utf-8")
    _tar(shard / "images.tar", images)
    packed = pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "a"), PackSettings())
    pack_gt(str(folder / "gt.txt"), str(folder), str(tmp_path / "b"), PackSettings())
    assert packed["samples"] == 4 and read_lmdb(tmp_path / "a") == read_lmdb(tmp_path / "b")

    _tar(shard / "images.tar", {**images, "2.png": png(50, 3)})  # a valid PNG, but not the one rendered
    with pytest.raises(HwocrError, match=r"gt_tar\.txt line 3: image .*shard/images\.tar/2\.png is not the one its "
                                         r"shard rendered \(its sha256 differs from the shard's manifest\.json\)"):
        pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "c"), PackSettings())
    assert not (tmp_path / "c").exists()
    skipped = pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "d"), PackSettings(bad_samples="skip"))
    assert (skipped["samples"], skipped["skipped"]) == (3, 1)
    # pack.check=decode decodes every image instead: the changed image still decodes, so it packs.
    decoded = pack_gt(str(folder / "gt_tar.txt"), str(folder), str(tmp_path / "e"), PackSettings(check="decode"))
    assert decoded["samples"] == 4
