"""The dataset flow on Prefect's own engine: determinism, caching, bad input."""

import os
import shutil

import pytest

from conftest import FONTS, WORDS, read_lmdb
from flows.dataset import dataset_flow
from hwocr.errors import HwocrError
from tasks.lmdb_pack import PackResult

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]  # see pyproject.toml's markers


def lmdbs(out):
    return {split: read_lmdb(os.path.join(out, "lmdb", split)) for split in ("train", "val")}


def test_same_dataset_bytes_for_any_shard_layout(tmp_path, make_config):
    # Every syllable of the words drawn in each split: each font's first images draw its share, whatever the shards
    a = dataset_flow(config=make_config(tmp_path / "a", "render.shards=2", "render.workers=1",
                                        "render.min_syllable_draws=1"))
    b = dataset_flow(config=make_config(tmp_path / "b", "render.shards=5", "render.min_syllable_draws=1"))
    assert a["shards"]["total"] < b["shards"]["total"]
    da, db = lmdbs(tmp_path / "a"), lmdbs(tmp_path / "b")
    assert da == db
    assert da["train"][b"num-samples"] == b"48" and da["val"][b"num-samples"] == b"12"
    assert a["splits"]["train"]["samples"] == 48 and a["splits"]["train"]["per_font"] == {
        "Nanum Pen Script Regular": 24, "UnPilgi Regular": 24}
    assert os.path.exists(a["contact_sheet"])
    used = {c for w in WORDS for c in w if "가" <= c <= "힣"}
    for split in ("train", "val"):  # val: 12 images for the 8 words that hold the 18 syllables
        labels = [line.split("\t")[1] for line in (tmp_path / "a" / split / "gt.txt").read_text().splitlines()]
        assert {c for w in labels for c in w if "가" <= c <= "힣"} == used, split
        assert a["splits"][split]["syllables"]["covered"] == len(used)
    # The LMDB's pack result names the font of every sample (evaluation reads it there, not from paths), and the
    # fonts alternate image by image.
    packed = PackResult.model_validate_json((tmp_path / "a" / "lmdb" / "train" / "hwocr.json").read_text())
    names = [packed.fonts[i]["name"] for i in packed.sample_fonts]
    assert len(names) == 48 and set(names[:2]) == {"Nanum Pen Script Regular", "UnPilgi Regular"}
    assert names.count("UnPilgi Regular") == 24


def test_only_changed_stages_run(tmp_path, make_config):
    out = tmp_path / "out"
    first = dataset_flow(config=make_config(out))
    assert first["shards"] == {"total": 8, "rendered": 8, "cached": 0}
    assert first["stages"]["train"] == {"assemble_gt": "ran", "pack_lmdb": "ran"}
    before = lmdbs(out)

    again = dataset_flow(config=make_config(out))
    assert again["shards"] == {"total": 8, "rendered": 0, "cached": 8}
    assert again["stages"] == {s: {"assemble_gt": "cached", "pack_lmdb": "cached"} for s in ("train", "val")}

    # Prefect's records lost (the outputs came from another machine, or the records were deleted): the stages'
    # results in place are adopted as cache hits, nothing runs again.
    shutil.rmtree(out / "prefect-results")
    adopted = dataset_flow(config=make_config(out))
    assert adopted["shards"] == again["shards"] and adopted["stages"] == again["stages"]

    # A packing-only setting re-packs and renders nothing.
    repack = dataset_flow(config=make_config(out, "pack.commit_every=5"))
    assert repack["shards"]["rendered"] == 0
    assert repack["stages"]["train"] == {"assemble_gt": "cached", "pack_lmdb": "ran"}
    assert lmdbs(out) == before

    # Deleted outputs are rebuilt, not returned from the cache.
    shutil.rmtree(out / "lmdb" / "val")
    shard = next(p for p in (out / "shards" / "train").iterdir())
    shutil.rmtree(shard)
    rebuilt = dataset_flow(config=make_config(out, "pack.commit_every=5"))
    assert rebuilt["shards"]["rendered"] == 1
    assert rebuilt["stages"]["val"]["pack_lmdb"] == "ran"
    assert lmdbs(out) == before

    # One more font renders only that font's shards; the result equals a fresh build with three fonts.
    three = ("pen", "pilgi", "brush")
    added = dataset_flow(config=make_config(out, fonts=three))
    assert added["shards"] == {"total": 6, "rendered": 2, "cached": 4}
    fresh = dataset_flow(config=make_config(tmp_path / "fresh", fonts=three))
    assert fresh["shards"]["rendered"] == 6
    assert lmdbs(out) == lmdbs(tmp_path / "fresh")


def test_font_without_hangul_is_refused(tmp_path, make_config):
    with pytest.raises(HwocrError, match=r"font .*DejaVuSans\.ttf \(DejaVu Sans Book\) draws no Hangul"):
        dataset_flow(config=make_config(tmp_path / "o", fonts=("pen", "latin")))
    assert not (tmp_path / "o" / "shards").exists() and not (tmp_path / "o" / "lmdb").exists()


def test_font_missing_policies(tmp_path, make_config):
    with pytest.raises(HwocrError, match=r"Guseul\.ttf \(Guseul Regular\) cannot draw 7 characters .*'024Helo'"):
        dataset_flow(config=make_config(tmp_path / "e", "render.font_missing=error", fonts=("pen", "guseul")))
    skipped = dataset_flow(config=make_config(tmp_path / "s", "render.font_missing=skip_font", fonts=("pen", "guseul")))
    assert [f["name"] for f in skipped["fonts"]] == ["Nanum Pen Script Regular"]
    assert "Guseul" in skipped["fonts_skipped"][0]["reason"]
    kept = dataset_flow(config=make_config(tmp_path / "k", fonts=("pen", "guseul")))
    assert len(kept["fonts"]) == 2 and kept["splits"]["train"]["samples"] == 48
    gt = (tmp_path / "k" / "train" / "gt.txt").read_text(encoding="utf-8").splitlines()
    assert len(gt) == 48
    # Guseul never draws a word with a character it lacks: those images are redrawn, and counted for it alone
    redrawn = kept["splits"]["train"]["redrawn_per_font"]
    assert set(redrawn) == {"Guseul Regular"} and redrawn["Guseul Regular"]["missing_glyph"] > 0
    packed = PackResult.model_validate_json((tmp_path / "k" / "lmdb" / "train" / "hwocr.json").read_text())
    labels = [line.split("\t")[1] for line in gt]
    assert not [label for label, n in zip(labels, packed.sample_fonts, strict=True)
                if packed.fonts[n]["name"] == "Guseul Regular" and set(label) & set("024Helo")]


def test_missing_font_file_fails_before_rendering(tmp_path, make_config, words_file):
    """Also from a deployment, where no CLI checked first; Prefect logs the error by its message, no stack."""
    import logging

    from flows.config import load_config

    class Keep(logging.Handler):
        records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    keep = Keep()
    loggers = [logging.getLogger(name) for name in ("prefect.task_runs", "prefect.flow_runs")]
    for logger in loggers:
        logger.addHandler(keep)
    config = load_config(None, [f"render.words={words_file}", "render.fonts=/nope/x.ttf"], out=str(tmp_path / "o"))
    try:
        with pytest.raises(HwocrError, match=r"font file '/nope/x\.ttf' does not exist"):
            dataset_flow(config=config)
    finally:
        for logger in loggers:
            logger.removeHandler(keep)
    assert not (tmp_path / "o" / "shards").exists()
    failures = [r for r in keep.records if "/nope/x.ttf" in r.getMessage()]
    assert {r.name for r in failures} == {"prefect.task_runs", "prefect.flow_runs"}
    assert all(r.exc_info is None and r.exc_text is None for r in failures)


def test_unwritable_output_url(tmp_path, make_config):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HwocrError, match=r"output location '.*file/out' is not writable"):
        dataset_flow(config=make_config(tmp_path / "file" / "out"))


def test_remote_output_url_gives_the_same_dataset(tmp_path, make_config):
    """Every stage goes through fsspec: an in-memory filesystem stands in for a bucket."""
    import fsspec

    local = dataset_flow(config=make_config(tmp_path / "local"))
    remote = dataset_flow(config=make_config("memory://hwocr-test/out"))
    assert remote["splits"]["train"]["lmdb"] == "memory://hwocr-test/out/lmdb/train"
    fs = fsspec.filesystem("memory")
    for split in ("train", "val"):
        dest = tmp_path / "fetched" / split
        dest.mkdir(parents=True)
        for name in ("data.mdb", "hwocr.json"):
            (dest / name).write_bytes(fs.cat_file(f"/hwocr-test/out/lmdb/{split}/{name}"))
        assert read_lmdb(dest) == read_lmdb(local["splits"][split]["lmdb"])
        assert fs.cat_file(f"/hwocr-test/out/{split}/gt.txt") == (tmp_path / "local" / split / "gt.txt").read_bytes()
    assert not [p for p in fs.find("/hwocr-test/out") if ".tmp-" in p]
    again = dataset_flow(config=make_config("memory://hwocr-test/out"))
    assert again["shards"]["rendered"] == 0


EUNJIN = "/usr/share/fonts/truetype/alee/EunjinNakseo.ttf"


def test_held_out_fonts_make_a_test_split(tmp_path, make_config):
    result = dataset_flow(config=make_config(tmp_path / "o", "render.test_count=6", f"render.test_fonts=[{EUNJIN}]"))
    assert result["splits"]["test"]["per_font"] == {"Eunjin Nakseo Regular": 6}
    assert "Eunjin Nakseo Regular" not in result["splits"]["train"]["per_font"]
    assert read_lmdb(tmp_path / "o" / "lmdb" / "test")[b"num-samples"] == b"6"
    # Every font (two training, one held out) against every effect: a header and one row a font.
    from PIL import Image

    from synth.effects import ORDER

    with Image.open(result["fonts_effects_sheet"]) as sheet:
        assert sheet.size == (300 + 240 * (2 + len(ORDER)), 36 + 56 * 3)  # plain, glyph jitter, the effects


@pytest.mark.parametrize("held_out, message", [
    (FONTS["pen"], r"held-out font .*NanumPen\.ttf .* is the same file as training font .*NanumPen\.ttf"),
    # Nanum Brush is the same writer's hand as Nanum Pen: the catalogue puts them in one family.
    (FONTS["brush"], r"held-out font .*NanumBrush\.ttf .* is a font of the same family as training font "
                     r".*NanumPen\.ttf .*hold out the whole family"),
])
def test_held_out_font_whose_family_trains_is_refused(tmp_path, make_config, held_out, message):
    with pytest.raises(HwocrError, match=message):
        dataset_flow(config=make_config(tmp_path / "o", "render.test_count=6", f"render.test_fonts=[{held_out}]"))
    assert not (tmp_path / "o" / "shards").exists()


def test_font_pool_weights_and_held_out_families(tmp_path, words_file):
    from flows.config import load_config

    config = load_config(None, [
        f"render.words={words_file}", "render.count=40", "render.val_count=8", "render.test_count=6",
        "render.min_shard_images=1", "render.workers=2",
        "render.pool.held_out_groups=[alee-eunjin]",
        # Only two handwriting families train, one drawn three times as often as the other.
        "render.pool.weights={un-pilgi: 0, un-pen: 0, un-vada: 0, NanumBrush.ttf: 0, NanumPen.ttf: 3, UnPilgi.ttf: 1}",
    ], out=str(tmp_path / "o"))
    result = dataset_flow(config=config)
    assert result["splits"]["train"]["per_font"] == {"Nanum Pen Script Regular": 30, "UnPilgi Regular": 10}
    assert set(result["splits"]["test"]["per_font"]) == {"Eunjin Regular", "Eunjin Nakseo Regular"}
    assert sum(result["splits"]["test"]["per_font"].values()) == 6
    assert {f["name"]: f["weight"] for f in result["fonts"]} == {"Nanum Pen Script Regular": 0.75,
                                                                  "UnPilgi Regular": 0.25}


def test_font_pool_refuses_a_latin_font_tagged_handwriting(tmp_path, words_file):
    from flows.config import load_config

    catalogue = tmp_path / "fonts.yaml"
    catalogue.write_text(
        "fonts:\n"
        "  - {file: nanum/NanumPen.ttf, package: fonts-nanum-extra, family: Nanum Pen Script, style: handwriting,\n"
        "     family_group: nanum, hangul: 11172}\n"
        f"  - {{file: {FONTS['latin']}, package: fonts-dejavu-core, family: DejaVu Sans, style: handwriting,\n"
        "     family_group: dejavu, hangul: 0}\n", encoding="utf-8")
    config = load_config(None, [f"render.words={words_file}", "render.count=8", "render.val_count=4",
                                f"render.pool.catalogue={catalogue}"], out=str(tmp_path / "o"))
    with pytest.raises(HwocrError, match=r"DejaVuSans\.ttf is tagged handwriting but draws none of the Hangul"):
        dataset_flow(config=config)
    assert not (tmp_path / "o" / "shards").exists()


def test_deleted_shard_archive_is_rerendered(tmp_path, make_config):
    out = tmp_path / "o"
    first = dataset_flow(config=make_config(out))
    shard = next(p for p in (out / "shards" / "train").iterdir())
    (shard / "images.tar").unlink()  # the manifest stays: it must not vouch for a shard without its images
    again = dataset_flow(config=make_config(out))
    assert again["shards"]["rendered"] == 1
    assert lmdbs(out) == {s: read_lmdb(first["splits"][s]["lmdb"]) for s in ("train", "val")}


def test_pool_with_no_held_out_font_left_is_a_clear_error(tmp_path, words_file):
    from flows.config import load_config

    config = load_config(None, [f"render.words={words_file}", "render.count=8", "render.val_count=4",
                                "render.test_count=4", "render.pool.held_out_groups=[un-vada]",
                                "render.pool.weights={un-vada: 0}"], out=str(tmp_path / "o"))
    with pytest.raises(HwocrError, match=r"render.test_count is 4 but no held-out font is left"):
        dataset_flow(config=config)


def test_test_split_is_drawn_plain_whatever_the_effects(tmp_path, make_config):
    held_out = ("render.test_count=6", f"render.test_fonts=[{EUNJIN}]")
    plain = dataset_flow(config=make_config(tmp_path / "plain", *held_out))
    varied = dataset_flow(config=make_config(tmp_path / "varied", *held_out, "render.glyph_jitter.enabled=true",
                                      "render.effects.elastic.enabled=true", "render.effects.elastic.probability=1"))
    assert read_lmdb(varied["splits"]["test"]["lmdb"]) == read_lmdb(plain["splits"]["test"]["lmdb"])
    assert read_lmdb(varied["splits"]["train"]["lmdb"]) != read_lmdb(plain["splits"]["train"]["lmdb"])


GOTHIC = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"
MYEONGJO = "/usr/share/fonts/truetype/nanum/NanumMyeongjo.ttf"


def test_regression_split_is_plain_print_and_leaves_the_other_splits_alone(tmp_path, make_config):
    regression = ("render.regression_count=6", f"render.regression_fonts=[{GOTHIC}, {MYEONGJO}]")
    without = dataset_flow(config=make_config(tmp_path / "without"))
    plain = dataset_flow(config=make_config(tmp_path / "plain", *regression))
    varied = dataset_flow(config=make_config(tmp_path / "varied", *regression, "render.effects.elastic.enabled=true",
                                      "render.effects.elastic.probability=1"))
    assert "regression" not in without["splits"]
    assert plain["splits"]["regression"]["per_font"] == {"NanumGothic Regular": 3, "NanumMyeongjo Regular": 3}
    assert {f["name"] for f in plain["regression_fonts"]} == {"NanumGothic Regular", "NanumMyeongjo Regular"}
    for split in ("train", "val"):  # adding the split changes no other split's bytes
        assert read_lmdb(plain["splits"][split]["lmdb"]) == read_lmdb(without["splits"][split]["lmdb"])
    assert read_lmdb(varied["splits"]["regression"]["lmdb"]) == read_lmdb(plain["splits"]["regression"]["lmdb"])
    assert read_lmdb(varied["splits"]["train"]["lmdb"]) != read_lmdb(plain["splits"]["train"]["lmdb"])


def _shards(out, split):
    from tasks.render import ShardResult

    root = out / "shards" / split
    return [ShardResult.model_validate_json((root / name / "manifest.json").read_text())
            for name in os.listdir(root) if not name.startswith(".")]


def test_rows_come_wave_by_wave_as_shards_arrive(tmp_path, make_config):
    from hwocr.layout import Layout
    from models.gt_rows import SplitPlan, SplitRows
    from models.lmdb_format import read_gt

    out = tmp_path / "out"
    config = make_config(out, "render.count=1200", "render.shards=4", "render.min_shard_images=1")
    dataset_flow(config=config)
    # Two fonts, 600 images each in shards of 300: wave 0 is both fonts' [0:300].
    shards = sorted(_shards(out, "train"), key=lambda s: (s.start, s.font_sha))
    assert [(s.start, s.stop) for s in shards] == [(0, 300), (0, 300), (300, 600), (300, 600)]
    layout = Layout.at(str(out))
    plan = SplitPlan(split="train", gt=layout.gt("train"), image_root=layout.out,
                     needed={s.font_sha: 600 for s in shards}, shards=[(s.key, s.start) for s in shards],
                     charset=config.render.charset, max_length=config.render.batch_max_length)
    arrived = []

    def feed():
        for s in shards:
            arrived.append(s)
            yield s

    rows = SplitRows(plan, layout)
    seen = [(int(path.rsplit("/", 1)[1].split(".")[0]), len(arrived), n, path, label)
            for n, path, label in rows.follow(feed())]
    # Every row of images 0-299 comes once the first wave is in, before the second wave is asked for.
    assert {a for j, a, *_ in seen if j < 300} == {2} and {a for j, a, *_ in seen if j >= 300} == {4}
    # The rows are gt.txt's lines, numbered as in it.
    assert [(n, path, label) for _, _, n, path, label in seen] == read_gt(layout.gt("train"))
    assert rows.per_font == {s.font_sha: 600 for s in shards}


def test_pack_starts_before_the_last_shard_is_rendered(tmp_path, make_config):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    config = make_config(tmp_path / "out", "render.count=1600", "render.shards=8", "render.workers=1",
                         "render.min_shard_images=1")
    state = dataset_flow(config=config, return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    pack = next(r for r in runs if r.name.startswith("pack_lmdb") and r.name.endswith("/train"))
    renders = [r for r in runs if r.name.startswith("render train")]
    assert len(renders) == 8
    # Prefect would start a task whose inputs are futures only once all of them finished.
    assert pack.start_time < max(r.end_time for r in renders)


def test_a_failed_shard_fails_its_pack_at_once_and_leaves_no_lmdb(tmp_path, make_config):
    from prefect import flow, task
    from prefect.utilities.annotations import quote

    from hwocr.layout import Layout
    from models.gt_rows import SplitPlan
    from models.lmdb_format import PackSettings
    from tasks.lmdb_pack import PackInput, pack_lmdb

    out = tmp_path / "out"
    config = make_config(out, "render.count=600", "render.shards=4")
    dataset_flow(config=config)
    shards = sorted(_shards(out, "train"), key=lambda s: (s.start, s.font_sha))
    layout = Layout.at(str(out))
    plan = SplitPlan(split="train", gt=layout.gt("train"), image_root=layout.out,
                     needed={s.font_sha: 300 for s in shards}, shards=[(s.key, s.start) for s in shards],
                     charset=config.render.charset, max_length=config.render.batch_max_length)

    @task
    def rendered(i):
        return shards[i]

    @task
    def broken():  # a shard whose render failed
        raise HwocrError("render failed")

    @flow
    def one_broken():
        futures = [rendered.submit(0), rendered.submit(1), broken.submit(), rendered.submit(3)]
        inp = PackInput(plan=plan, layout=layout, lmdb_url=str(tmp_path / "lmdb"), settings=PackSettings())
        return pack_lmdb.submit(inp, quote(futures)).result()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = one_broken(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    pack = next(r for r in runs if r.name.startswith("pack_lmdb"))
    assert pack.state.is_failed() and pack.run_count == 1  # not retried: the shard's failure is not packing's
    assert "a shard failed" in pack.state.message
    assert os.listdir(tmp_path) and not [n for n in os.listdir(tmp_path) if "lmdb" in n]
