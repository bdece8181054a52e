"""The dataset flow: words + fonts -> sharded trdg renders -> gt.txt -> LMDB, per split."""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from pydantic import PositiveInt

from flows.config import PipelineConfig, Preset, config_from_form
from flows.records import stages_at, was_cached
from flows.summary import DatasetSummary
from hwocr import storage
from hwocr.errors import HwocrError
from hwocr.layout import Layout
from models.charset import load_charset
from models.gt_rows import SplitPlan
from synth.inputs import check_space, describe_plan
from synth.pool import resolve_workers, shutdown_pool, stop_pool, warm_pool
from synth.shards import plan_shards
from tasks.contact_sheet import ContactSheetInput, EffectsSheetInput, contact_sheet, effects_sheet
from tasks.gt import GtInput, assemble_gt
from tasks.lmdb_pack import PackInput, pack_lmdb
from tasks.prepare import prepare_words, survey_fonts
from tasks.render import RenderInput, render_shard


def default_task_runner() -> ThreadPoolTaskRunner:
    # Threads only wait on the render process pool; a few more than cores keeps it full, and four more are for the
    # packs (one a split at most) that wait on shards still rendering.
    return ThreadPoolTaskRunner(max_workers=(os.cpu_count() or 1) + 4 + 4)


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


def _font(f: dict) -> dict:
    return {k: f[k] for k in ("name", "url", "sha256", "weight") if k in f}


def build_dataset(config: PipelineConfig) -> dict:
    """The dataset flow's body, on a config already whole; returns a DatasetSummary as JSON."""
    log = get_run_logger()
    layout = Layout.at(config.out)
    storage.ensure_writable(layout.out)
    r = config.render
    workers = resolve_workers(r)
    log.info(describe_plan(check_space(r, layout.out, workers)))
    if config.runner == "local":
        warm_pool(workers)
    render, assemble, pack, sheet_of, effects_of = stages_at(config.results_url(), render_shard, assemble_gt, pack_lmdb,
                                                             contact_sheet, effects_sheet)
    try:
        words = prepare_words(r, layout)
        fonts = survey_fonts(r, words)
        own = {"test": fonts["test_fonts"], "regression": fonts["regression_fonts"]}  # train and val share fonts
        specs = plan_shards(r, {split: own.get(split, fonts["fonts"]) for split in r.splits()}, words, layout,
                            load_charset(r.charset))
        log.info("%d shards over %d fonts, %d render processes", len(specs), len(fonts["fonts"]), workers)
        plans = {split: SplitPlan.of(layout, split, specs, r.charset, r.batch_max_length) for split in r.splits()}
        # Each split's pack is queued right behind its shards and takes their rows as they finish (quoted: Prefect
        # would wait for all of them first); a Dask worker cannot wait on this process's futures, so there it
        # starts once they are done.
        follow = quote if config.runner == "local" else (lambda futures: futures)
        shards, packs = {}, {}
        for split in r.splits():
            shards[split] = [render.submit(RenderInput(spec=s), workers) for s in specs if s.split == split]
            packs[split] = pack.submit(PackInput(plan=plans[split], layout=layout, lmdb_url=layout.lmdb(split),
                                                 settings=config.pack), follow(shards[split]))
        gts = {split: assemble.submit(GtInput(plan=plans[split], layout=layout), shards[split]) for split in r.splits()}
        every_font = fonts["fonts"] + [{**f, "held_out": True} for f in fonts["test_fonts"]]
        fonts_sheet = effects_of.submit(EffectsSheetInput(
            fonts=every_font, words_url=words["url"], pixels=r.pixel_settings(), out_url=layout.fonts_sheet,
            effects=r.effects.model_dump(mode="json"), glyph_jitter=r.glyph_jitter.model_dump(mode="json")))
        splits = {}
        for split in gts:
            for shard in shards[split]:  # a failed shard's own error, where the pack only says that one failed
                shard.wait()
                if shard.state.is_failed():
                    shard.result()
            gt, packed = gts[split].result(), packs[split].result()
            names = {f["sha256"]: f["name"] for f in gt.fonts}
            splits[split] = {"lmdb": packed.url, "gt": gt.gt, "samples": packed.samples,
                             "dropped": gt.dropped | ({"bad_image": gt.dropped.get("bad_image", 0) + packed.skipped}
                                                      if packed.skipped else {}),
                             "per_font": {names.get(k, k): v for k, v in gt.per_font.items()},
                             "redrawn_per_font": {names.get(k, k): v for k, v in gt.redrawn_per_font.items()},
                             "syllables": gt.syllables}
        sheet = sheet_of.submit(ContactSheetInput(gt=gts["train"].result(), out_url=layout.contact_sheet,
                                                  label_font=fonts["fonts"][0]["path"]))
        cached = sum(was_cached(f) for split in shards.values() for f in split)
        summary = DatasetSummary(
            out=layout.out, splits=splits,
            shards={"total": len(specs), "rendered": len(specs) - cached, "cached": cached},
            stages={split: {"assemble_gt": "cached" if was_cached(gts[split]) else "ran",
                            "pack_lmdb": "cached" if was_cached(packs[split]) else "ran"} for split in gts},
            contact_sheet=sheet.result().url, fonts_effects_sheet=fonts_sheet.result().url,
            fonts=[_font(f) for f in fonts["fonts"]], test_fonts=[_font(f) for f in fonts["test_fonts"]],
            regression_fonts=[_font(f) for f in fonts["regression_fonts"]],
            fonts_skipped=fonts["skipped"],
            words={"url": words["url"], "count": words["count"], "dropped": words["report"]["dropped"]})
        storage.write_json(layout.summary, summary.model_dump(mode="json"))
        return summary.model_dump(mode="json")
    except BaseException as e:
        if not isinstance(e, Exception):  # an interrupt: running shards are ended, not waited for
            stop_pool()
        raise
    finally:
        shutdown_pool()
