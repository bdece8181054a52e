"""The dataset flow: words + fonts -> sharded trdg renders -> gt.txt -> LMDB, per split."""

from __future__ import annotations

import functools
import os

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from pydantic import PositiveInt

from flows.config import PipelineConfig, Preset, config_from_form
from hwocr import hashing, storage
from hwocr.errors import HwocrError
from models.charset import load_charset
from tasks.stage import result_storage, was_cached
from tasks.contact_sheet import contact_sheet, effects_sheet
from synth.font_pool import DEFAULT_ROOT, load_catalogue, select_pool
from synth.fonts import discover_fonts, inspect_font, local_font
from tasks.gt import assemble_gt
from tasks.lmdb_pack import pack_lmdb
from tasks.render import (RenderSettings, font_counts, plan_shards, render_shard, resolve_workers, shutdown_pool,
                          warm_pool)
from synth.words import BUNDLED_WORDS, read_words


@task(name="prepare_words")
def prepare_words(settings: RenderSettings, out: str) -> dict:
    """Read, normalize and filter the word list; store the clean list content-addressed under out/words."""
    url = settings.words or BUNDLED_WORDS
    words, report = read_words(url, load_charset(settings.charset), settings.batch_max_length)
    text = "".join(w + "\n" for w in words)
    sha = hashing.sha256_bytes(text.encode("utf-8"))
    words_url = storage.join(out, "words", sha[:24] + ".txt")
    if not storage.exists(words_url):
        storage.write_text(words_url, text)
    if report["dropped"]:
        get_run_logger().warning("word list %s: dropped %s; unknown characters %s", url, report["dropped"],
                                 report["unknown_chars"])
    return {"url": words_url, "sha256": sha, "count": len(words), "report": report}


@functools.lru_cache(maxsize=256)
def _inspect(path: str, sha: str, charset: str) -> dict:
    return inspect_font(path, charset)


def _survey(urls: list[str], settings: RenderSettings, charset: str, used: set[str], what: str) -> tuple[list, list]:
    kept, skipped, seen = [], [], set()
    for url in urls:
        try:
            sha = hashing.sha256_url(url)
        except OSError as e:
            raise HwocrError(f"font {url}: cannot be read ({e})") from None
        if sha in seen:
            skipped.append({"url": url, "reason": "same file as another font"})
            continue
        seen.add(sha)
        info = _inspect(local_font(url, sha), sha, charset)
        missing = "".join(sorted(used - set(info["covered"])))
        problem = None
        if info["hangul"] == 0:
            problem = f"font {url} ({info['name']}) draws no Hangul"
        elif missing and settings.font_missing != "skip_words":
            problem = f"font {url} ({info['name']}) cannot draw {len(missing)} characters of the word list: {missing[:40]!r}"
        if problem:
            if settings.font_missing == "error" or info["hangul"] == 0 and settings.font_missing == "skip_words":
                raise HwocrError(problem + " (render.font_missing decides: error, skip_font, skip_words)")
            skipped.append({"url": url, "name": info["name"], "reason": problem})
            continue
        covered = "".join(sorted(used & set(info["covered"])))
        kept.append({"url": url, "path": local_font(url, sha), "sha256": sha, "name": info["name"],
                     "covered": covered, "missing": missing})
    if not kept:
        raise HwocrError(f"no usable font among {what}: " + "; ".join(s["reason"] for s in skipped))
    return kept, skipped


def font_sources(settings: RenderSettings) -> tuple[list[str], list[str], dict[str, float]]:
    """(training font URLs, held-out font URLs, weight by URL): from render.pool, else fonts and test_fonts."""
    if settings.pool is None:
        return discover_fonts(settings.fonts), discover_fonts(settings.test_fonts) if settings.test_count else [], {}
    pool = select_pool(settings.pool)
    if settings.test_count and not pool["test"]:
        raise HwocrError(f"render.test_count is {settings.test_count} but no held-out font is left: "
                         f"render.pool.held_out_groups {settings.pool.held_out_groups} draw no image (weight 0?)")
    weights = {p.path: p.effective_weight for p in pool["train"] + pool["test"]}
    return [p.path for p in pool["train"]], [p.path for p in pool["test"]] if settings.test_count else [], weights


def check_held_out_families(train: list[dict], test: list[dict], catalogue: str | None = None) -> None:
    """A held-out font whose family (by the font catalogue) or file content is also in training would inflate the
    test score: refuse it."""
    group = {os.path.realpath(e.file if os.path.isabs(e.file) else os.path.join(DEFAULT_ROOT, e.file)): e.family_group
             for e in load_catalogue(catalogue)}
    training = {f["sha256"]: f for f in train}
    families = {group[os.path.realpath(f["path"])]: f for f in train if os.path.realpath(f["path"]) in group}
    for f in test:
        twin = training.get(f["sha256"]) or families.get(group.get(os.path.realpath(f["path"]), ""))
        if twin is not None:
            how = "the same file" if twin["sha256"] == f["sha256"] else "a font of the same family"
            raise HwocrError(f"held-out font {f['url']} ({f['name']}) is {how} as training font {twin['url']} "
                             f"({twin['name']}): its test score would be inflated; hold out the whole family")


@task(name="survey_fonts")
def survey_fonts(settings: RenderSettings, words: dict) -> dict:
    """Hash every font, check what it really draws, and apply settings.font_missing."""
    charset = load_charset(settings.charset)
    used = set(storage.read_text(words["url"]).replace("\n", ""))
    train_urls, test_urls, weights = font_sources(settings)
    what = "render.pool" if settings.pool is not None else f"render.fonts {settings.fonts}"
    kept, skipped = _survey(train_urls, settings, charset, used, what)
    held_out: list[dict] = []
    if settings.test_count:
        what = "render.pool held-out groups" if settings.pool is not None else f"render.test_fonts {settings.test_fonts}"
        held_out, more = _survey(test_urls, settings, charset, used, what)
        skipped += more
        check_held_out_families(kept, held_out, settings.pool.catalogue if settings.pool is not None else None)
    regression: list[dict] = []
    if settings.regression_count:
        regression, more = _survey(discover_fonts(settings.regression_fonts), settings, charset, used,
                                   f"render.regression_fonts {settings.regression_fonts}")
        skipped += more
    for f in kept + held_out:
        f["weight"] = weights.get(f["url"], 1.0)
    log = get_run_logger()
    for f in kept + held_out + regression:
        role = "held out" if f in held_out else "regression" if f in regression else "train/val"
        log.info("font %s (%s): %s%s", f["name"], role, f["url"],
                 f" (skips words using {f['missing'][:20]!r})" if f["missing"] else "")
    for s in skipped:
        log.warning("font skipped: %s", s["reason"])
    return {"fonts": kept, "test_fonts": held_out, "regression_fonts": regression, "skipped": skipped}


def default_task_runner() -> ThreadPoolTaskRunner:
    # Threads only wait on the render process pool; a few more than cores keeps it full.
    return ThreadPoolTaskRunner(max_workers=(os.cpu_count() or 1) + 4)


def dask_task_runner(config: PipelineConfig):
    """A Dask cluster for the render shards: the one at config.dask_address, or a LocalCluster."""
    from prefect_dask import DaskTaskRunner

    if config.dask_address:
        check_dask_address(config.dask_address)
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": resolve_workers(config.render), "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def check_dask_address(address: str, timeout: float = 5) -> None:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        socket.create_connection((parsed.hostname, parsed.port or 8786), timeout=timeout).close()
    except OSError as e:
        raise HwocrError(f"Dask scheduler {address} is unreachable ({e.strerror or e}); start it, or leave "
                         "dask_address empty for a local cluster") from None


def dataset_flow_for(config: PipelineConfig):
    """The dataset flow with the task runner config.runner asks for."""
    return dataset_flow if config.runner == "local" else dataset_flow.with_options(task_runner=dask_task_runner(config))


@flow(name="hwocr-dataset", task_runner=default_task_runner(), validate_parameters=True)
def dataset_flow(preset: Preset = "quick", out: str | None = None, fonts: list[str] | None = None,
                 words: str | None = None, count: PositiveInt | None = None, val_count: PositiveInt | None = None,
                 settings: list[str] | None = None, config: PipelineConfig | None = None) -> dict:
    """Render train/val (and test, regression) word images with trdg, assemble gt.txt and pack LMDB; only changed
    stages run.

    Args:
        preset: The settings to start from (configs/NAME.yaml); the fields below change them.
        out: Where everything is written: a local folder or an fsspec URL (s3://bucket/prefix).
        fonts: Font files, folders or globs to render with (render.fonts).
        words: The word list, one word a line (render.words).
        count: Training images to render (render.count).
        val_count: Validation images to render (render.val_count).
        settings: Any other setting as KEY=VALUE, e.g. render.shards=8 (as hwocr --set).
        config: Advanced: a whole config; when given, preset is not read.
    """
    config = config_from_form(preset, {"out": out, "render.fonts": fonts, "render.words": words,
                                       "render.count": count, "render.val_count": val_count}, settings or [], config)
    return build_dataset(config)


def build_dataset(config: PipelineConfig) -> dict:
    """The dataset flow's body, on a config already whole."""
    log = get_run_logger()
    out = storage.normalize(config.out)
    storage.ensure_writable(out)
    r = config.render
    workers = resolve_workers(r)
    if config.runner == "local":
        warm_pool(workers)
    results = result_storage(config.results_url())
    render, assemble, pack = (t.with_options(result_storage=results) for t in (render_shard, assemble_gt, pack_lmdb))
    try:
        words = prepare_words(r, out)
        fonts = survey_fonts(r, words)
        own = {"test": fonts["test_fonts"], "regression": fonts["regression_fonts"]}  # train and val share fonts
        specs = plan_shards(r, {split: own.get(split, fonts["fonts"]) for split in r.splits()}, words, out)
        log.info("%d shards over %d fonts, %d render processes", len(specs), len(fonts["fonts"]), workers)
        shards = {split: [render.submit(s, workers) for s in specs if s.split == split] for split in r.splits()}
        gts = {split: assemble.submit(split, shards[split], font_counts(specs, split), out, r.charset,
                                      r.batch_max_length) for split in r.splits()}
        packs = {split: pack.submit(gts[split], storage.join(out, "lmdb", split), config.pack) for split in gts}
        sheet = contact_sheet.submit(gts["train"], storage.join(out, "contact_sheet.png"),
                                     label_font=fonts["fonts"][0]["path"])
        every_font = fonts["fonts"] + [{**f, "held_out": True} for f in fonts["test_fonts"]]
        fonts_sheet = effects_sheet.submit(every_font, words["url"], r.pixel_settings(),
                                           r.effects.model_dump(mode="json"), r.glyph_jitter.model_dump(mode="json"),
                                           storage.join(out, "fonts_effects.png"))
        cached = sum(was_cached(f) for split in shards.values() for f in split if f.result())  # raises if one failed
        summary = {
            "out": out,
            "splits": {},
            "shards": {"total": len(specs), "rendered": len(specs) - cached, "cached": cached},
            "contact_sheet": sheet.result(),
            "fonts_effects_sheet": fonts_sheet.result(),
            "stages": {},
            "fonts": [{"name": f["name"], "url": f["url"], "sha256": f["sha256"], "weight": f["weight"]}
                      for f in fonts["fonts"]],
            "test_fonts": [{"name": f["name"], "url": f["url"], "sha256": f["sha256"], "weight": f["weight"]}
                           for f in fonts["test_fonts"]],
            "regression_fonts": [{"name": f["name"], "url": f["url"], "sha256": f["sha256"]}
                                 for f in fonts["regression_fonts"]],
            "fonts_skipped": fonts["skipped"],
            "words": {"url": words["url"], "count": words["count"], "dropped": words["report"]["dropped"]},
        }
        for split in gts:
            gt, packed = gts[split].result(), packs[split].result()
            dropped = dict(gt.dropped)
            if packed.skipped:
                dropped["bad_image"] = dropped.get("bad_image", 0) + packed.skipped
            names = {f["sha256"]: f["name"] for f in gt.fonts}
            summary["splits"][split] = {"lmdb": packed.url, "gt": gt.gt, "samples": packed.samples,
                                        "dropped": dropped,
                                        "per_font": {names.get(k, k): v for k, v in gt.per_font.items()}}
            summary["stages"][split] = {stage: "cached" if was_cached(f) else "ran"
                                        for stage, f in (("assemble_gt", gts[split]), ("pack_lmdb", packs[split]))}
        storage.write_json(storage.join(out, "dataset.json"), summary)
        return summary
    finally:
        shutdown_pool()
