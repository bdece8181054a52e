"""The finetune flow (LMDBs -> fine-tuned recognizer, tracked in MLflow) and the whole pipeline."""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from pydantic import PositiveInt

from flows.config import PipelineConfig, Preset, config_from_form
from flows.dataset import dataset_flow_for
from flows.records import run_stage, stages_at
from flows.summary import DatasetSummary, PipelineSummary, RealScore, TrainingSummary
from hwocr import storage
from hwocr.layout import Layout
from models.curves import learning_curves
from models.evaluation import easyocr_available, retention
from models.lmdb_format import lmdb_digest
from models.metrics import Scores
from models.sources import source_digest
from models.train_settings import ATTN_REFUSED
from tasks.champion import judge_champion
from tasks.evaluate import CheckInput, EvalInput, EvalResult, PagesInput, easyocr_check, evaluate_split, find_pages
from tasks.export import ExportInput, export_easyocr
from tasks.real import SourceInput, SourceResult, import_real
from tasks.train import TrainInput, TrainResult, fine_tune
from tracking.runs import holds_run, log_bundle, log_dataset, log_figures, log_retention


@flow(name="hwocr-finetune", validate_parameters=True)
def finetune_flow(preset: Preset = "quick", out: str | None = None, pretrained: str | None = None,
                  num_iter: PositiveInt | None = None, settings: list[str] | None = None,
                  config: PipelineConfig | None = None, train_lmdbs: list[str] | None = None,
                  val_lmdb: str | None = None) -> dict:
    """Fine-tune from the pretrained weights on the dataset flow's LMDBs under out, evaluate, track in MLflow.

    Args:
        preset: The settings to start from (configs/NAME.yaml); the fields below change them.
        out: The dataset flow's output folder or URL; the run is written under it.
        pretrained: Starting weights: english_g2, korean_g2, a path or URL, or none.
        num_iter: Training iterations (train.num_iter).
        settings: Any other setting as KEY=VALUE, e.g. train.batch_size=64 (as hwocr --set).
        config: Advanced: a whole config; when given, preset is not read.
        train_lmdbs: Advanced: training LMDBs other than out's lmdb/train.
        val_lmdb: Advanced: a validation LMDB other than out's lmdb/val.
    """
    config = config_from_form(preset, {"out": out, "train.pretrained": pretrained, "train.num_iter": num_iter},
                              settings or [], config)
    return fine_tune_and_score(config, train_lmdbs, val_lmdb)


CURVES = "learning_curves.png"  # beside the checkpoints: losses, accuracy and CER by iteration


def fine_tune_and_score(config: PipelineConfig, train_lmdbs: list[str] | None, val_lmdb: str | None) -> dict:
    """The finetune flow's body, on a config already whole; returns a TrainingSummary as JSON."""
    layout = Layout.at(config.out)
    train, evaluate, import_ = stages_at(config.results_url(), fine_tune, evaluate_split, import_real)
    train_lmdbs = [storage.normalize(u) for u in train_lmdbs] if train_lmdbs else [layout.lmdb("train")]
    val_lmdb = storage.normalize(val_lmdb) if val_lmdb else layout.lmdb("val")
    sources = import_sources(config, layout, import_)
    settings, train_lmdbs = mixed(config, train_lmdbs, sources)
    # A real validation split, when there is one, picks the best checkpoint and drives early stopping.
    chooser = next((r.lmdb("val") for r in sources.values() if r.lmdb("val")), val_lmdb)
    scored = {"val": val_lmdb}
    for split in ("test", "regression"):  # the held-out-font and print splits, when the dataset has them
        if storage.exists(storage.join(layout.lmdb(split), "data.mdb")):
            scored[split] = layout.lmdb(split)
    scored |= {real_split(name): r.lmdb("test") for name, r in sources.items() if r.lmdb("test")}
    # One read (or hash) per LMDB: keys, MLflow lineage and evaluation all use these.
    digests = {u: lmdb_digest(u) for u in {*train_lmdbs, chooser, *scored.values()}}
    first, cached = _trained(train, config, settings, train_lmdbs, chooser, digests, layout)
    trained = first
    if config.real.refine.iterations:  # then the real train splits alone, from the first stage's best checkpoint
        refine, refine_lmdbs = refined(config, settings, first, sources)
        trained, cached = _trained(train, config, refine, refine_lmdbs, chooser, digests, layout)
    # Every split overall, per font, per length; from a pretrained start, the start itself (its head remapped to
    # this charset) on the same splits.
    runs = {(split, start): evaluate.submit(EvalInput(layout=layout, trained=first if start else trained, split=split,
                                                      data=data, digest=digests[data], start=start), config.tracking)
            for split, data in scored.items() for start in (False, True) if not start or first.start_checkpoint}
    scores = {split: _score(r.result(), digests[scored[split]]) for (split, start), r in runs.items() if not start}
    starts = {split: _score(r.result(), digests[scored[split]]) for (split, start), r in runs.items() if start}
    curves = storage.join(trained.run_dir, CURVES)
    if not (cached and storage.exists(curves)):
        learning_curves(trained.history, {s: v["accuracy"] for s, v in scores.items()},
                        {s: v["accuracy"] for s, v in starts.items()} or None, curves)
        log_figures(config.tracking, trained.mlflow_run_id, {}, "", (curves,))
    forgetting = None
    if "regression" in starts:
        forgetting = retention(starts["regression"]["predictions"], scores["regression"]["predictions"])
        if not cached:
            log_retention(config.tracking, trained.mlflow_run_id, forgetting)
    real = {name: RealScore(format=r.format, dropped=r.dropped, splits={k: v["samples"] for k, v in r.splits.items()},
                            lmdb=r.lmdb("test"), hwocr=scores.pop(real_split(name), None),
                            start=starts.pop(real_split(name), None), pages=r.splits.get("test", {}).get("pages"))
            for name, r in sources.items()}
    return TrainingSummary(**trained.model_dump(exclude={"history"}), cached=cached, pretrained=config.train.pretrained,
                           tracking_uri=config.tracking.tracking_uri, evaluation=scores, start=starts or None,
                           forgetting=forgetting, real=real or None,
                           validated_on=chooser if chooser != val_lmdb else None,
                           refined_from=first.checkpoint if trained is not first else None).model_dump(mode="json")


def _trained(train, config: PipelineConfig, settings, train_lmdbs: list[str], val: str, digests: dict,
             layout: Layout) -> tuple[TrainResult, bool]:
    """A training stage run (or its cache hit), its MLflow run dropped when another store tracked it."""
    trained, cached = run_stage(train, TrainInput(settings=settings, train_lmdbs=train_lmdbs, val_lmdb=val,
                                                  digests=digests, layout=layout), config.tracking)
    if cached and not holds_run(config.tracking, trained.mlflow_run_id):
        get_run_logger().warning(
            "the cached training's MLflow run %s is not in %s (another store tracked it): this run's evaluation, "
            "bundle and dataset are not logged to MLflow", trained.mlflow_run_id, config.tracking.tracking_uri)
        trained = trained.model_copy(update={"mlflow_run_id": None})
    return trained, cached


def refined(config: PipelineConfig, settings, first: TrainResult, sources: dict[str, SourceResult]):
    """(the settings, the LMDBs) of real.refine: the real train splits alone, by their ratios, from the first
    stage's best checkpoint, everything unfrozen."""
    real = [(s.ratio, sources[s.name].lmdb("train")) for s in config.real.sources if s.ratio]
    total, r = sum(w for w, _ in real), config.real.refine
    update = {"pretrained": first.checkpoint, "source_charset": None, "num_iter": r.iterations, "lr": r.lr,
              "batch_ratio": [w / total for w, _ in real], "freeze": [], "freeze_iterations": 0, "max_minutes": 0,
              "val_interval": min(settings.val_interval, r.iterations)}
    return settings.model_copy(update=update), [u for _, u in real]


def real_split(name: str) -> str:
    """The name a real source's test split is scored under (folders, MLflow metrics: real_<name>_accuracy)."""
    return f"real_{name}"


def import_sources(config: PipelineConfig, layout: Layout, import_) -> dict[str, SourceResult]:
    """Every real source read, checked, split and packed, each on its own content key (in parallel)."""
    t = config.train
    futures = {s.name: import_.submit(SourceInput(layout=layout, source=s, real=config.real, charset=t.charset,
                                                  batch_max_length=t.batch_max_length, pack=config.pack,
                                                  digest=source_digest(s))) for s in config.real.sources}
    return {name: f.result() for name, f in futures.items()}


def mixed(config: PipelineConfig, train_lmdbs: list[str], sources: dict[str, SourceResult]):
    """(the training settings, the training LMDBs) with the real train splits mixed in by their ratios: the
    synthetic LMDBs keep their batch_ratio among themselves, scaled to the share the real ones leave."""
    real = [(s.ratio, sources[s.name].lmdb("train")) for s in config.real.sources if s.ratio]
    if not real:
        return config.train, train_lmdbs
    rest = 1 - sum(r for r, _ in real)
    ratio = [b * rest for b in config.train.batch_ratio] + [r for r, _ in real]
    return config.train.model_copy(update={"batch_ratio": ratio}), train_lmdbs + [u for _, u in real]


def _score(report: EvalResult, digest: str) -> dict:
    return {**report.model_dump(include=set(Scores.model_fields)), "by_font": report.by_font,
            "predictions": report.predictions, "digest": digest, "jamo": report.jamo,
            "calibration": report.calibration}


@flow(name="hwocr-pipeline", validate_parameters=True)
def pipeline_flow(preset: Preset = "quick", out: str | None = None, pretrained: str | None = None,
                  fonts: list[str] | None = None, words: str | None = None, count: PositiveInt | None = None,
                  val_count: PositiveInt | None = None, num_iter: PositiveInt | None = None,
                  settings: list[str] | None = None, config: PipelineConfig | None = None) -> dict:
    """Dataset, then fine-tuning, evaluation, EasyOCR export and its check; each stage re-runs only when its inputs
    changed.

    Args:
        preset: The settings to start from (configs/NAME.yaml); the fields below change them.
        out: Where everything is written: a local folder or an fsspec URL (s3://bucket/prefix).
        pretrained: Starting weights: english_g2, korean_g2, a path or URL, or none.
        fonts: Font files, folders or globs to render with (render.fonts).
        words: The word list, one word a line (render.words).
        count: Training images to render (render.count).
        val_count: Validation images to render (render.val_count).
        num_iter: Training iterations (train.num_iter).
        settings: Any other setting as KEY=VALUE, e.g. train.batch_size=64 (as hwocr --set).
        config: Advanced: a whole config; when given, preset is not read.
    """
    config = config_from_form(preset, {"out": out, "train.pretrained": pretrained, "render.fonts": fonts,
                                       "render.words": words, "render.count": count, "render.val_count": val_count,
                                       "train.num_iter": num_iter}, settings or [], config)
    layout = Layout.at(config.out)
    export, check_, find = stages_at(config.results_url(), export_easyocr, easyocr_check, find_pages)
    data = DatasetSummary.model_validate(dataset_flow_for(config)(config=config))
    pages = found_pages(config, layout, data, find)  # before training: it needs no model, and may fail
    train = TrainingSummary.model_validate(finetune_flow(config=config, train_lmdbs=[data.splits["train"].lmdb],
                                                         val_lmdb=data.splits["val"].lmdb))
    trained = TrainResult(**train.model_dump(include=set(TrainResult.model_fields)))
    log_dataset(config.tracking, trained.mlflow_run_id, config.render, data.model_dump(mode="json"))
    check = bundle = None
    cached = False
    t = config.train
    if t.model.prediction != "CTC":  # EasyOCR decodes CTC only: the run ends without a bundle instead of failing
        get_run_logger().warning("EasyOCR export skipped: %s", ATTN_REFUSED)
    else:
        val = train.evaluation.get("val")
        bundle, cached = run_stage(export, ExportInput(layout=layout, trained=trained, settings=config.export,
                                                       calibration=val.calibration if val else None))
        if not cached:
            log_bundle(config.tracking, trained.mlflow_run_id, bundle)
    why = easyocr_available() if config.easyocr_check else None
    real = train.real or {}
    if bundle is None or not config.easyocr_check:
        pass
    elif why:
        get_run_logger().warning("EasyOCR check skipped: %s", why)
    else:
        # The bundle read by the real easyocr on the test split (else validation), beside hwocr's own figure.
        split = "test" if "test" in train.evaluation else "val"
        check = check_(CheckInput(layout=layout, bundle=bundle, trained=trained, split=split, data=layout.lmdb(split),
                                  digest=train.evaluation[split].digest, pages=pages, words=data.words["url"]),
                       config.tracking, train.evaluation[split].accuracy)
        if check.mismatch:
            get_run_logger().warning(
                "EasyOCR reads %s at %.2f%% (int8 %.2f%%) but hwocr reports %.2f%%: the exported model does not read "
                "in EasyOCR as hwocr measured it", split, check.float["accuracy"], check.int8["accuracy"],
                check.hwocr_accuracy)
        real = {name: r.model_copy(update={"easyocr": easyocr_real(layout, bundle, trained, name, r, config, check_)})
                for name, r in real.items()}
    decision = None
    if config.real.sources and config.tracking.registered_model:
        decision = judge_champion(config.tracking, layout, trained.registered_version, trained.mlflow_run_id,
                                  *_contest(layout, train, real))
    summary = PipelineSummary(dataset=data, train=train,
                              export={**bundle.model_dump(), "cached": cached} if bundle else None,
                              export_skipped=None if bundle else ATTN_REFUSED,
                              easyocr=check.model_dump() if check else None, real=real or None, champion=decision)
    publish_artifacts(summary)
    return summary.model_dump(mode="json")


def found_pages(config: PipelineConfig, layout: Layout, data: DatasetSummary, find):
    """The EasyOCR check's pages (of the test split, else validation) and the boxes its detector finds on them;
    None when there will be no check. Not beside training: on a few cores the two would slow each other down
    (measured on 2 cores: training 4.5x slower, the detector 2.2x), and every later model of the same split reads
    these boxes from the cache."""
    if config.train.model.prediction != "CTC" or not config.easyocr_check or easyocr_available():
        return None
    split = "test" if "test" in data.splits else "val"
    lmdb = data.splits[split].lmdb
    return find(PagesInput(layout=layout, split=split, data=lmdb, digest=lmdb_digest(lmdb), settings=config.train))


def _contest(layout: Layout, train: TrainingSummary, real: dict[str, RealScore]) -> tuple[dict, dict | None]:
    """What the champion rule compares: each real test split and the print regression split, with the model's
    accuracy and its start's."""
    sources = {n: {"lmdb": r.lmdb, "accuracy": r.hwocr.accuracy, "start": r.start.accuracy if r.start else None}
               for n, r in real.items() if r.hwocr is not None}
    reg = train.evaluation.get("regression")
    start = (train.start or {}).get("regression")
    regression = {"lmdb": layout.lmdb("regression"), "accuracy": reg.accuracy,
                  "start": start.accuracy if start else None} if reg else None
    return sources, regression


def easyocr_real(layout: Layout, bundle, trained: TrainResult, name: str, r: RealScore, config: PipelineConfig,
                 check_) -> dict | None:
    """A real source's test split read by EasyOCR itself with the bundle: float, int8 and, for a source of pages,
    its pages through readtext."""
    if r.hwocr is None:
        return None
    check = check_(CheckInput(layout=layout, bundle=bundle, trained=trained, split=real_split(name), data=r.lmdb,
                              digest=r.hwocr.digest, real_pages=r.pages), config.tracking, r.hwocr.accuracy)
    return {"float": check.float, "int8": check.int8, "pages": check.pages}


def publish_artifacts(summary: PipelineSummary) -> None:
    """What a run produced, on the flow run's page in the Prefect UI: summary, evaluation table, MLflow link."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    create_table_artifact(summary.rows(), key="hwocr-evaluation",
                          description="Word accuracy, norm_ED and CER per split and font")
    create_markdown_artifact("\n".join(["# hwocr pipeline", *(f"- {line}" for line in summary.lines())]),
                             key="hwocr-summary", description="What this pipeline run produced")
    t = summary.train
    if not t.mlflow_run_id:
        return
    from tracking.runs import connect
    from tracking.settings import TrackingSettings

    uri, run_id = t.tracking_uri, t.mlflow_run_id
    experiment = connect(TrackingSettings(tracking_uri=uri)).get_run(run_id).info.experiment_id
    web = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    local = web == "http://127.0.0.1:5000"
    text = f"MLflow run {run_id}" + (f" (after: mlflow ui --backend-store-uri {uri})" if local else "")
    run_page = f"{web}/#/experiments/{experiment}/runs/{run_id}"
    create_link_artifact(run_page, link_text=text, key="hwocr-mlflow-run")
    create_markdown_artifact("\n".join(["# Pictures", *(f"- [{name}]({run_page}/artifactPath/{path})"
                                                          for name, path in pictures(summary))]),
                             key="hwocr-pictures", description="The run's pictures, in MLflow's artifact view")


def pictures(summary: PipelineSummary) -> list[tuple[str, str]]:
    """(what, artifact path in the MLflow run) of the pictures a run logs: the data, the worst failures per split."""
    found = [(f"{what} ({os.path.basename(url)})", f"dataset/{os.path.basename(url)}")
             for what, url in (("contact sheet", summary.dataset.contact_sheet),
                               ("fonts and effects", summary.dataset.fonts_effects_sheet)) if url]
    found += [("learning curves", CURVES)] if storage.exists(storage.join(summary.train.run_dir, CURVES)) else []
    found += [(f"{what}, {split}", f"evaluation/{split}/{name}")
              for split, score in summary.train.evaluation.items()
              for what, name in (("worst failures", "worst_failures.png"), ("jamo confusions", "confusions.png"),
                                 ("confidence calibration", "calibration.png"))
              if storage.exists(storage.join(score.predictions.rsplit("/", 1)[0], name))]
    return found
