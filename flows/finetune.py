"""The finetune flow (LMDBs -> fine-tuned recognizer, tracked in MLflow) and the whole pipeline."""

from __future__ import annotations

from prefect import flow, get_run_logger

from pydantic import PositiveInt

from flows.config import PipelineConfig, Preset, config_from_form
from flows.dataset import dataset_flow_for
from hwocr import storage
from tasks.evaluate import easyocr_available, easyocr_check, evaluate_split, log_retention, retention
from tasks.export import BundleResult, export_easyocr, log_bundle
from tasks.stage import result_storage, run_stage
from tasks.track import holds_run, log_dataset
from tasks.train import TrainResult, fine_tune, lmdb_digest


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


def fine_tune_and_score(config: PipelineConfig, train_lmdbs: list[str] | None, val_lmdb: str | None) -> dict:
    """The finetune flow's body, on a config already whole."""
    out = storage.normalize(config.out)
    train_lmdbs = [storage.normalize(u) for u in train_lmdbs] if train_lmdbs else [storage.join(out, "lmdb", "train")]
    val_lmdb = storage.normalize(val_lmdb) if val_lmdb else storage.join(out, "lmdb", "val")
    scored = {"val": val_lmdb}
    for split in ("test", "regression"):  # the held-out-font and print splits, when the dataset has them
        url = storage.join(out, "lmdb", split)
        if storage.exists(storage.join(url, "data.mdb")):
            scored[split] = url
    # One read (or hash) per LMDB: keys, MLflow lineage and evaluation all use these.
    digests = {u: lmdb_digest(u) for u in [*train_lmdbs, *scored.values()]}
    results = result_storage(config.results_url())
    train, evaluate = (t.with_options(result_storage=results) for t in (fine_tune, evaluate_split))
    trained, cached = run_stage(train, config.train, config.tracking, train_lmdbs, val_lmdb, digests, out)
    if cached and not holds_run(config.tracking, trained.mlflow_run_id):
        get_run_logger().warning(
            "the cached training's MLflow run %s is not in %s (another store tracked it): this run's evaluation, "
            "bundle and dataset are not logged to MLflow", trained.mlflow_run_id, config.tracking.tracking_uri)
        trained = trained.model_copy(update={"mlflow_run_id": None})
    # Every split overall, per font, per length; from a pretrained start, the start itself (its head remapped to
    # this charset) on the same splits.
    runs = {(split, start): evaluate.submit(trained, split, data, digests[data], config.train, config.tracking, start)
            for split, data in scored.items() for start in (False, True) if not start or trained.start_checkpoint}
    scores = {split: r.result() for (split, start), r in runs.items() if not start}
    starts = {split: r.result() for (split, start), r in runs.items() if start}
    forgetting = None
    if "regression" in starts:
        forgetting = retention(starts["regression"].predictions, scores["regression"].predictions)
        if not cached:
            log_retention(config.tracking, trained.mlflow_run_id, forgetting)
    return {**trained.model_dump(exclude={"history"}), "cached": cached,
            "evaluation": {s: _score(r, digests[scored[s]]) for s, r in scores.items()},
            "start": {s: _score(r, digests[scored[s]]) for s, r in starts.items()} or None, "forgetting": forgetting}


def _score(report, digest: str) -> dict:
    return {"samples": report.samples, "accuracy": report.accuracy, "norm_ed": report.norm_ed, "cer": report.cer,
            "by_font": report.by_font, "predictions": report.predictions, "digest": digest}


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
    data = dataset_flow_for(config)(config=config)
    trained = finetune_flow(config=config, train_lmdbs=[data["splits"]["train"]["lmdb"]],
                            val_lmdb=data["splits"]["val"]["lmdb"])
    results = result_storage(config.results_url())
    model = TrainResult.model_validate({k: v for k, v in trained.items() if k in TrainResult.model_fields})
    bundle, cached = run_stage(export_easyocr.with_options(result_storage=results), model, config.export,
                               config.train.charset, config.train.img_h)
    if not cached:
        log_bundle(config.tracking, trained["mlflow_run_id"], bundle)
    log_dataset(config.tracking, trained["mlflow_run_id"], config.render, data)
    check = check_in_easyocr(config, model.model_copy(update={"mlflow_run_id": trained["mlflow_run_id"]}), trained,
                             bundle)
    bundle = {**bundle.model_dump(), "cached": cached}
    publish_artifacts(config, data, trained, bundle, check)
    return {"dataset": data, "train": trained, "export": bundle, "easyocr": check}


def check_in_easyocr(config: PipelineConfig, model: TrainResult, trained: dict, bundle: BundleResult) -> dict | None:
    """The bundle read by the real easyocr on the test split (else validation), beside hwocr's own figure."""
    log = get_run_logger()
    why = easyocr_available()
    if why:
        log.warning("EasyOCR check skipped: %s", why)
        return None
    split = "test" if "test" in trained["evaluation"] else "val"
    data = storage.join(storage.normalize(config.out), "lmdb", split)
    ours = trained["evaluation"][split]["accuracy"]
    task = easyocr_check.with_options(result_storage=result_storage(config.results_url()))
    check = task(bundle, model, split, data, trained["evaluation"][split]["digest"], config.train, config.tracking,
                 ours).model_dump()
    if check["mismatch"]:
        log.warning("EasyOCR reads %s at %.2f%% (int8 %.2f%%) but hwocr reports %.2f%%: the exported model does "
                    "not read in EasyOCR as hwocr measured it", split, check["float"]["accuracy"],
                    check["int8"]["accuracy"], ours)
    return check


def publish_artifacts(config: PipelineConfig, data: dict, trained: dict, bundle: dict, check: dict | None) -> None:
    """What a run produced, on the flow run's page in the Prefect UI: summary, evaluation table, MLflow link."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    uri, run_id = config.tracking.tracking_uri, trained["mlflow_run_id"]
    rows = []
    for split, r in trained["evaluation"].items():
        rows.append({"split": split, "font": "all", "samples": r["samples"], "accuracy": round(r["accuracy"], 2),
                     "norm_ed": round(r["norm_ed"], 4), "cer": round(r["cer"], 4)})
        for font, f in sorted((r.get("by_font") or {}).items()):
            rows.append({"split": split, "font": font, "samples": f["samples"], "accuracy": round(f["accuracy"], 2),
                         "norm_ed": round(f["norm_ed"], 4), "cer": round(f["cer"], 4)})
    for split, r in (trained.get("start") or {}).items():
        rows.append({"split": split, "font": "all, start (not fine-tuned)", "samples": r["samples"],
                     "accuracy": round(r["accuracy"], 2), "norm_ed": round(r["norm_ed"], 4), "cer": round(r["cer"], 4)})
    for kind in ("float", "int8") if check else ():
        f = check[kind]
        rows.append({"split": check["split"], "font": f"all, EasyOCR {kind}", "samples": check["samples"],
                     "accuracy": round(f["accuracy"], 2), "norm_ed": round(f["norm_ed"], 4), "cer": round(f["cer"], 4)})
    if check and check.get("batch"):
        b = check["batch"]
        rows.append({"split": check["split"], "font": f"first {b['samples']}, EasyOCR recognize(batch_size="
                     f"{b['batch_size']}) ({b['agreement']:.1f}% equal to batch 1)", "samples": b["samples"],
                     "accuracy": round(b["accuracy"], 2), "norm_ed": round(b["norm_ed"], 4), "cer": round(b["cer"], 4)})
    if check and check.get("pages"):
        g = check["pages"]
        rows.append({"split": check["split"], "font": f"pages via readtext (detection recall {g['detection_recall']:.1f}%)",
                     "samples": g["words"], "accuracy": round(g["word_accuracy"], 2), "norm_ed": None,
                     "cer": round(g["cer"], 4)})
    create_table_artifact(rows, key="hwocr-evaluation", description="Word accuracy, norm_ED and CER per split and font")
    images = ", ".join(f"{k} {v['samples']} images" for k, v in data["splits"].items())
    f = trained.get("forgetting")
    forgetting = [f"- forgetting: of the {f['start_correct']} regression (print) images the start read, "
                  f"{f['still_correct']} are still read after fine-tuning ({f['retained']:.2f}%)"] \
        if f and f["start_correct"] else []
    create_markdown_artifact(
        "\n".join([
            "# hwocr pipeline",
            f"- data: {images}; shards {data['shards']['rendered']} rendered, {data['shards']['cached']} cached",
            f"- training: {trained['iterations']} iterations" + (" (cached)" if trained["cached"] else "")
            + f", best validation accuracy {trained['best_accuracy']:.2f}%",
            *[f"- {split}: {trained['start'][split]['accuracy']:.2f}% at the start ({config.train.pretrained}), "
              f"{r['accuracy']:.2f}% fine-tuned" for split, r in trained["evaluation"].items()
              if split in (trained.get("start") or {})],
            *forgetting,
            f"- checkpoint: `{trained['checkpoint']}`",
            f"- EasyOCR bundle: `{bundle['dir']}` (recog_network=`{bundle['name']}`)",
            _check_line(check),
            f"- MLflow run: `{run_id}` at `{uri}`" if run_id
            else f"- MLflow: the cached training was tracked in another store than `{uri}`",
        ]),
        key="hwocr-summary", description="What this pipeline run produced")
    if not run_id:
        return
    from tasks.track import connect

    experiment = connect(config.tracking).get_run(run_id).info.experiment_id
    web = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    text = f"MLflow run {run_id}" + ("" if web != "http://127.0.0.1:5000" else f" (after: mlflow ui --backend-store-uri {uri})")
    create_link_artifact(f"{web}/#/experiments/{experiment}/runs/{run_id}", link_text=text, key="hwocr-mlflow-run")


def _check_line(check: dict | None) -> str:
    if check is None:
        return "- EasyOCR check: skipped (no EasyOCR venv; scripts/bootstrap.sh installs it)"
    line = (f"- read by EasyOCR on {check['split']}: {check['float']['accuracy']:.2f}% float, "
            f"{check['int8']['accuracy']:.2f}% int8 (hwocr: {check['hwocr_accuracy']:.2f}%)")
    return f"- **WARNING: EasyOCR and hwocr disagree by {check['gap']:+.2f} points** " + line[2:] if check["mismatch"] else line
