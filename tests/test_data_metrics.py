"""models.data (benchmark LMDBs, preprocessing, the resumable mixed loader) and models.metrics."""

import io
import math
import pickle

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from hwocr.errors import HwocrError
from models import metrics
from models.charset import load_charset
from models.data import LmdbDataset, MixedLoader, check_ratios, collate, pad, stretch


@pytest.fixture(scope="module")
def charset() -> str:
    return load_charset("korean_g2")


def png(w: int = 30, h: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def write_lmdb(path, samples, num_samples="auto") -> str:
    """samples: [(image bytes, label)]; num_samples: "auto" (= len), None (key left out) or a value."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(samples, 1):
            txn.put(b"image-%09d" % i, img)
            txn.put(b"label-%09d" % i, label.encode("utf-8"))
        if num_samples is not None:
            n = len(samples) if num_samples == "auto" else num_samples
            txn.put(b"num-samples", str(n).encode())
    env.close()
    return str(path)


def labelled(path, labels, seed=0) -> str:
    return write_lmdb(path, [(png(20 + 3 * i, 16, seed + i), t) for i, t in enumerate(labels)])


# -- LmdbDataset -------------------------------------------------------------------------------------------

def test_missing_num_samples(tmp_path, charset):
    root = write_lmdb(tmp_path / "db", [(png(), "한글")], num_samples=None)
    with pytest.raises(HwocrError, match="no num-samples") as e:
        LmdbDataset(root, charset)
    assert root in str(e.value)


def test_empty(tmp_path, charset):
    root = write_lmdb(tmp_path / "db", [], num_samples=0)
    with pytest.raises(HwocrError, match="is empty") as e:
        LmdbDataset(root, charset)
    assert root in str(e.value)


@pytest.mark.parametrize("kind", ["missing", "plain_dir", "file", "garbage_mdb"])
def test_not_an_lmdb(tmp_path, charset, kind):
    root = tmp_path / "x"
    if kind == "plain_dir":
        root.mkdir()
        (root / "readme.txt").write_text("hi")
    elif kind == "file":
        root.write_text("not a database")
    elif kind == "garbage_mdb":
        root.mkdir()
        (root / "data.mdb").write_bytes(b"\0junk" * 2000)
    with pytest.raises(HwocrError) as e:
        LmdbDataset(str(root), charset)
    assert str(root) in str(e.value)


def test_filter_counts_drops_and_keeps_case(tmp_path, charset):
    labels = ["Hello", "한글", "x" * 26, "눈사람☃", "hello", "x" * 25]
    ds = LmdbDataset(labelled(tmp_path / "db", labels), charset, batch_max_length=25)
    assert ds.dropped == {"too_long": 1, "out_of_charset": 1, "too_wide": 0}
    assert ds.indices == [1, 2, 5, 6]
    assert len(ds) == 4
    got = [ds[i][1] for i in range(len(ds))]
    assert got == ["Hello", "한글", "hello", "x" * 25]  # never lowercased
    img, _ = ds[0]  # 20 x 16: ratio 1.25, so EasyOCR's width is 2 x 80
    assert img.shape == (1, 80, 160) and img.dtype == torch.float32
    assert ds.widths == [160, 160, 160, 240]  # 20, 23, 32, 35 px wide at height 16: ceil(w / 16) * 80
    fixed = LmdbDataset(ds.root, charset, mode="pad")
    assert fixed.dropped == {"too_long": 1, "out_of_charset": 1} and fixed[0][0].shape == (1, 80, 100)


def test_too_wide_is_dropped_and_counted(tmp_path, charset):
    root = write_lmdb(tmp_path / "db", [(png(16, 16), "가"), (png(100, 16), "나"), (png(40, 16), "다")])
    ds = LmdbDataset(root, charset, img_h=32, max_width=96)  # widths 32, 224, 96
    assert ds.dropped["too_wide"] == 1 and ds.labels == ["가", "다"] and ds.widths == [32, 96]
    with pytest.raises(HwocrError, match=r"all 1 samples were dropped .*1 wider than 64 px"):
        LmdbDataset(write_lmdb(tmp_path / "one", [(png(100, 16), "나")]), charset, img_h=32, max_width=64)


def test_all_dropped_is_an_error(tmp_path, charset):
    root = labelled(tmp_path / "db", ["☃", "y" * 30])
    with pytest.raises(HwocrError, match="all 2 samples were dropped"):
        LmdbDataset(root, charset)


def test_undecodable_image_names_root_and_index(tmp_path, charset):
    root = write_lmdb(tmp_path / "db", [(png(), "한글"), (b"\x89PNG garbage", "학교")])
    ds = LmdbDataset(root, charset, mode="pad")
    ds[0]
    with pytest.raises(HwocrError) as e:
        ds[1]
    assert root in str(e.value) and "image 2" in str(e.value)
    # At natural width the sizes are read up front, so the dataset refuses to open at all.
    with pytest.raises(HwocrError, match="image 2 .*cannot be decoded") as e:
        LmdbDataset(root, charset)
    assert root in str(e.value)


def test_pickles_and_works_in_spawned_workers(tmp_path, charset):
    ds = LmdbDataset(labelled(tmp_path / "db", ["한글", "학교", "사랑", "바다"]), charset, mode="stretch",
                     img_h=32, img_w=64)
    expected = [ds[i] for i in range(len(ds))]  # the parent has the LMDB open before the workers start
    clone = pickle.loads(pickle.dumps(ds))  # what spawn workers receive
    assert clone[1][1] == "학교" and torch.equal(clone[1][0], expected[1][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn",
                                         collate_fn=collate)
    got = list(loader)
    assert [t for _, labels in got for t in labels] == ["한글", "학교", "사랑", "바다"]
    assert torch.equal(torch.cat([images for images, _ in got]), collate(expected)[0])
    # A second dataset over the same LMDB in the same process shares its environment.
    assert LmdbDataset(ds.root, charset)[0][1] == "한글"


def test_bad_mode(tmp_path, charset):
    with pytest.raises(HwocrError, match="squash"):
        LmdbDataset(labelled(tmp_path / "db", ["한글"]), charset, mode="squash")


# -- preprocessing -----------------------------------------------------------------------------------------

def test_stretch_by_hand():
    px = np.array([[0, 51, 255, 102], [255, 0, 204, 153]], dtype=np.uint8)
    out = stretch(Image.fromarray(px, "L"), 2, 4)  # same size: the resize is the identity
    assert out.shape == (1, 2, 4) and out.dtype == torch.float32
    expected = (px.astype(np.float32) / 255 - 0.5) / 0.5
    assert torch.allclose(out[0], torch.from_numpy(expected), atol=1e-6)
    assert out[0, 0, 0] == -1 and out[0, 0, 2] == 1 and abs(float(out[0, 0, 1]) + 0.6) < 1e-6


def test_stretch_resizes_bicubic():
    img = Image.open(io.BytesIO(png(37, 13, seed=3)))
    out = stretch(img, 80, 100)
    assert out.shape == (1, 80, 100)
    assert out.min() >= -1 and out.max() <= 1
    ref = np.asarray(img.convert("L").resize((100, 80), Image.BICUBIC), dtype=np.float32)
    assert torch.allclose(out[0], torch.from_numpy((ref / 255 - 0.5) / 0.5), atol=1e-6)


def test_pad_wide_image_is_capped():
    img = Image.open(io.BytesIO(png(40, 20, seed=1)))  # ratio 2: ceil(80 * 2) = 160 > 100
    out = pad(img, 80, 100)
    ref = np.asarray(img.resize((100, 80), Image.BICUBIC), dtype=np.float32)
    assert out.shape == (1, 80, 100)
    assert torch.allclose(out[0], torch.from_numpy((ref / 255 - 0.5) / 0.5), atol=1e-6)


def test_pad_keeps_aspect_and_replicates_last_column():
    img = Image.open(io.BytesIO(png(10, 20, seed=2)))  # ratio 0.5: width 40
    out = pad(img, 80, 100)
    ref = np.asarray(img.resize((40, 80), Image.BICUBIC), dtype=np.float32)
    assert out.shape == (1, 80, 100)
    assert torch.allclose(out[0, :, :40], torch.from_numpy((ref / 255 - 0.5) / 0.5), atol=1e-6)
    assert torch.equal(out[0, :, 40:], out[0, :, 39:40].expand(80, 60))
    assert out.min() >= -1 and out.max() <= 1
    # An RGB input is converted to gray first.
    assert torch.equal(pad(img.convert("RGB"), 80, 100), out)


def test_collate(tmp_path, charset):
    ds = LmdbDataset(labelled(tmp_path / "db", ["한글", "Hello", "2024"]), charset, mode="pad")
    images, labels = collate([ds[i] for i in range(3)])
    assert images.shape == (3, 1, 80, 100) and images.dtype == torch.float32
    assert labels == ["한글", "Hello", "2024"]


def test_collate_widens_by_the_last_column(tmp_path, charset):
    root = write_lmdb(tmp_path / "db", [(png(16, 16, 1), "가"), (png(40, 16, 2), "나")])
    ds = LmdbDataset(root, charset, img_h=16)
    narrow, wide = ds[0][0], ds[1][0]
    assert narrow.shape == (1, 16, 16) and wide.shape == (1, 16, 48)
    images, _ = collate([ds[0], ds[1]])
    assert images.shape == (2, 1, 16, 48)
    assert torch.equal(images[0, :, :, :16], narrow) and torch.equal(images[1], wide)
    assert torch.equal(images[0, :, :, 16:], narrow[:, :, 15:16].expand(1, 16, 32))


def test_natural_width_is_what_easyocr_reads(tmp_path, charset):
    """Training inputs are exactly the tensors of models.easyocr_compat (checked against easyocr in test_export)."""
    from models.easyocr_compat import _resized, easyocr_tensor

    sizes = [(16, 16), (37, 13), (90, 20), (13, 30), (61, 17)]
    root = write_lmdb(tmp_path / "db", [(png(w, h, i), "가") for i, (w, h) in enumerate(sizes)])
    ds = LmdbDataset(root, charset, img_h=32)
    for i, (w, h) in enumerate(sizes):
        gray = np.asarray(Image.open(io.BytesIO(png(w, h, i))).convert("L"))
        resized, max_w = _resized(gray, 32)
        assert torch.equal(ds[i][0], easyocr_tensor(resized, 32, max_w)[0])
        assert ds.widths[i] == max_w == 32 * math.ceil(max(w / h, h / w))


def test_batches_are_grouped_by_width(tmp_path, charset):
    widths_px = [16, 40, 70, 100] * 24  # four widths at height 16, shuffled by the loader
    root = write_lmdb(tmp_path / "db", [(png(w, 16, i), "가") for i, w in enumerate(widths_px)])
    ds = LmdbDataset(root, charset, img_h=16)
    assert sorted(set(ds.widths)) == [16, 48, 80, 112]

    def run():
        loader = MixedLoader([ds], (1.0,), 8, seed=5)
        return [next(loader)[0] for _ in range(24)]  # two epochs

    batches = run()
    # 12 batches of 8 per epoch, each of one width: 3 of each; nothing padded.
    first = [b.shape[-1] for b in batches[:12]]
    assert sorted(first) == [16] * 3 + [48] * 3 + [80] * 3 + [112] * 3
    assert first != sorted(first)  # batch order still shuffled
    again = run()
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # deterministic
    # Each epoch still visits every sample once.
    loader = MixedLoader([ds], (1.0,), 8, seed=5)
    seen = [i for _ in range(12) for _, i, _ in loader.next_indices()]
    assert sorted(seen) == list(range(len(ds)))


# -- MixedLoader -------------------------------------------------------------------------------------------

@pytest.fixture
def two_sets(tmp_path, charset):
    a = LmdbDataset(labelled(tmp_path / "a", [f"가{i}" for i in range(5)]), charset, img_h=16, img_w=32)
    b = LmdbDataset(labelled(tmp_path / "b", [f"나{i}" for i in range(3)], seed=50), charset, img_h=16, img_w=32)
    return a, b


@pytest.mark.parametrize("ratios,counts", [((0.5, 0.5), (4, 4)), ((0.75, 0.25), (6, 2)), ((0.95, 0.05), (7, 1))])
def test_mixed_batch_counts(two_sets, ratios, counts):
    loader = MixedLoader(two_sets, ratios, 8, seed=1)
    assert loader.counts == list(counts)
    for _ in range(4):
        labels = next(loader)[1]
        assert len(labels) == sum(counts)
        assert sum(t.startswith("가") for t in labels) == counts[0]
        assert sum(t.startswith("나") for t in labels) == counts[1]


def test_mixed_epochs_are_permutations(two_sets):
    loader = MixedLoader(two_sets, (0.5, 0.5), 2, seed=7)  # one sample of each per batch
    firsts = [next(loader)[1] for _ in range(10)]
    a = [labels[0] for labels in firsts]
    assert sorted(a[:5]) == sorted(a[5:]) == [f"가{i}" for i in range(5)]
    b = [labels[1] for labels in firsts]
    assert sorted(b[:3]) == sorted(b[3:6]) == [f"나{i}" for i in range(3)]


def test_mixed_is_deterministic_per_seed(two_sets):
    def run(seed):
        loader = MixedLoader(two_sets, (0.5, 0.5), 4, seed=seed)
        return [next(loader)[1] for _ in range(6)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def _labels_and_images(batch):
    images, labels = batch
    return labels, images


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_the_same_batches(two_sets, workers):
    """Resuming bit for bit, also with worker processes decoding ahead (the cursor is the last batch handed out)."""
    reference = MixedLoader(two_sets, (0.75, 0.25), 4, seed=11)
    expected = [_labels_and_images(next(reference)) for _ in range(9)]

    first = MixedLoader(two_sets, (0.75, 0.25), 4, seed=11, workers=workers)
    for i in range(4):
        assert _labels_and_images(next(first))[0] == expected[i][0]
    assert workers == 0 or first._cursors  # with workers, later batches were already drawn and being decoded
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # as the trainer checkpoints it
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    first.close()

    resumed = MixedLoader(two_sets, (0.75, 0.25), 4, seed=11, workers=workers)
    resumed.load_state_dict(state)
    for i in range(4, 9):
        labels, images = _labels_and_images(next(resumed))
        assert labels == expected[i][0]
        assert torch.equal(images, expected[i][1])
    resumed.close()


def test_resume_rejects_other_datasets(two_sets):
    state = MixedLoader(two_sets, (0.5, 0.5), 4).state_dict()
    other = MixedLoader(two_sets[::-1], (0.5, 0.5), 4)
    with pytest.raises(HwocrError, match="lengths"):
        other.load_state_dict(state)


@pytest.mark.parametrize("ratios,n", [((0.5,), 2), ((0.5, 0.6), 2), ((1.0, 0.0), 2), ((0.7, -0.2, 0.5), 3)])
def test_ratio_validation(ratios, n):
    with pytest.raises(HwocrError) as e:
        check_ratios(ratios, n)
    assert str(list(ratios)) in str(e.value)


def test_ratio_sum_tolerance():
    assert check_ratios((0.1, 0.2, 0.7 + 5e-7), 3) == [0.1, 0.2, 0.7 + 5e-7]


# -- metrics -----------------------------------------------------------------------------------------------

def test_edit_distance():
    assert metrics.edit_distance("한굴", "한글") == 1
    assert metrics.edit_distance("", "abc") == 3
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("Hello", "hello") == 1  # case-sensitive
    assert metrics.edit_distance("abc", "abc") == 0


def test_word_accuracy():
    assert metrics.word_accuracy(["한글", "Hello", "x"], ["한글", "hello", "x"]) == pytest.approx(200 / 3)
    assert math.isnan(metrics.word_accuracy([], []))


def test_norm_ed_benchmark_rules():
    assert metrics.norm_ed(["한굴"], ["한글"]) == pytest.approx(0.5)
    assert metrics.norm_ed([""], ["한글"]) == 0
    assert metrics.norm_ed([""], [""]) == 0  # the benchmark's rule: any empty side scores 0
    # gt longer: 1 - 1/3; pred longer: 1 - 2/4; exact: 1 -> mean
    assert metrics.norm_ed(["ab", "abcd", "z"], ["abc", "ab", "z"]) == pytest.approx(((1 - 1 / 3) + 0.5 + 1) / 3)


def test_cer():
    # ED 1 over 2 chars, ED 2 over 3 chars -> 3 / 5
    assert metrics.cer(["한굴", "a"], ["한글", "abc"]) == pytest.approx(0.6)
    assert metrics.cer(["", ""], ["", ""]) == 0


def test_breakdown():
    preds, gts = ["한글", "한굴", "ab", "x"], ["한글", "한글", "ab", "y"]
    table = metrics.breakdown(preds, gts, ["pen", "pen", "brush", "brush"])
    assert list(table) == ["brush", "pen"]
    assert table["pen"] == {"samples": 2, "accuracy": 50.0, "norm_ed": pytest.approx(0.75), "cer": pytest.approx(0.25)}
    brush = table["brush"]
    assert brush["samples"] == 2 and brush["accuracy"] == 50.0 and brush["cer"] == pytest.approx(1 / 3)
    by_len = metrics.breakdown(["a", "bc"], ["a", "bd"], [1, 2])
    assert list(by_len) == [1, 2] and by_len[2]["norm_ed"] == pytest.approx(0.5)


def test_length_mismatch():
    with pytest.raises(ValueError):
        metrics.cer(["a"], ["a", "b"])


def test_training_time_augmentation_is_seeded_per_epoch_and_resumable(two_sets):
    from synth.effects import EffectsSettings, augmenter

    assert augmenter(EffectsSettings()) is None  # off by default: the loader does no extra work
    aug = augmenter({"elastic": {"enabled": True, "probability": 1, "alpha": 4},
                     "blur_jpeg": {"enabled": True, "probability": 1}})

    def images(loader, n):
        return [next(loader) for _ in range(n)]

    plain = images(MixedLoader(two_sets[:1], (1.0,), 5, seed=3), 2)  # one epoch of the first set is one batch
    one = images(MixedLoader(two_sets[:1], (1.0,), 5, seed=3, augment=aug), 2)
    two = images(MixedLoader(two_sets[:1], (1.0,), 5, seed=3, augment=aug), 2)
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(one, two))  # same seed, same variants
    assert not torch.equal(one[0][0], plain[0][0])
    # Epoch 2 holds the same samples as epoch 1, in other variants.
    by_label = [dict(zip(labels, imgs)) for imgs, labels in one]
    assert set(by_label[0]) == set(by_label[1])
    assert all(not torch.equal(by_label[0][k], by_label[1][k]) for k in by_label[0])

    first = MixedLoader(two_sets[:1], (1.0,), 5, seed=3, augment=aug)
    next(first)
    for workers in (0, 1):  # augmented in a worker process, the same variants
        resumed = MixedLoader(two_sets[:1], (1.0,), 5, seed=3, augment=aug, workers=workers)
        resumed.load_state_dict(first.state_dict())
        again = next(resumed)
        resumed.close()
        assert again[1] == one[1][1] and torch.equal(again[0], one[1][0])
