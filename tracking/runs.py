"""MLflow tracking of a fine-tune: params, per-validation metrics, dataset lineage, artifacts, the model."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile

from hwocr import storage
from hwocr.errors import HwocrError
from models.metrics import Scores
from tracking.settings import TrackingSettings

log = logging.getLogger(__name__)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, ensure_ascii=False) if isinstance(v, list | tuple) else str(v)
    return out


def connect(settings: TrackingSettings):
    """An MlflowClient that has answered once: an unreachable server fails here, before any training."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient(settings.tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - connection, auth and schema errors all mean "cannot track"
        raise HwocrError(f"MLflow tracking server {settings.tracking_uri} is unreachable: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return client


def start_run(settings: TrackingSettings, out_dir: str, params: dict, datasets: list[tuple[str, dict]]) -> str:
    """Start (or, when out_dir holds one, continue) this fine-tune's MLflow run; returns its id."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    connect(settings)
    mlflow.set_experiment(settings.experiment)
    id_file = os.path.join(out_dir, "mlflow_run_id")
    run_id = None
    if os.path.exists(id_file):
        with open(id_file) as f:
            run_id = f.read().strip()
    run = mlflow.start_run(run_id=run_id)
    if run_id is None:
        with open(id_file, "w") as f:
            f.write(run.info.run_id)
        for key, value in flatten(params).items():
            mlflow.log_param(key, value[:6000])
        for context, info in datasets:
            ds = MetaDataset(resolve_dataset_source(info["url"]), name=f"{context}:{os.path.basename(info['url'])}",
                             digest=info.get("digest", "")[:36] or None)
            mlflow.log_input(ds, context=context)
    return run.info.run_id


def log_eval(step: int, entry: dict) -> None:
    import mlflow

    mlflow.log_metrics({k: float(entry[k]) for k in ("train_loss", "valid_loss", *Scores.names(), "samples_per_s",
                                                       "lr", "raw_valid_loss", "raw_accuracy", "raw_norm_ed")
                        if k in entry}, step=step)
    result = entry.get("result")
    if result:
        rows = ["ground_truth\tprediction\tconfidence\tcorrect"]
        rows += [f"{g}\t{p}\t{c:.4f}\t{g == p}" for g, p, c in
                 zip(result["gts"][:50], result["preds"][:50], result["confidences"][:50])]
        mlflow.log_text("\n".join(rows) + "\n", f"validation/samples_{step:07d}.tsv")


def log_figures(settings: TrackingSettings, run_id: str | None, metrics: dict[str, float], folder: str = "",
                artifacts: tuple[str, ...] = (), tags: dict[str, str] | None = None, once: bool = False) -> None:
    """Metrics, tags and artifact files (those that exist, under `folder`) into a run; once: not again
    when the run holds the first metric already (a cached re-run)."""
    if not run_id:
        return
    client = connect(settings)
    if once and metrics and client.get_metric_history(run_id, next(iter(metrics))):
        return
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    for name, value in (tags or {}).items():
        client.set_tag(run_id, name, value)
    for path in artifacts:
        if storage.exists(path):
            _log_file(client, run_id, path, folder)


def _log_file(client, run_id: str, url: str, folder: str | None) -> None:
    """One file into a run's artifacts; a bucket's through a local copy (MLflow logs local files)."""
    if storage.is_local(url):
        client.log_artifact(run_id, storage.local_path(url), folder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, url.rstrip("/").rsplit("/", 1)[-1])
        with open(local, "wb") as f:
            f.write(storage.read_bytes(url))
        client.log_artifact(run_id, local, folder)


def log_retention(settings: TrackingSettings, run_id: str | None, figures: dict) -> None:
    if figures["retained"] is not None:
        log_figures(settings, run_id, {"regression_retained": figures["retained"]}, once=True)


def log_bundle(settings: TrackingSettings, run_id: str | None, bundle) -> None:
    """Attach an exported bundle to the fine-tune's MLflow run under easyocr/: not the 83 MB detector, EasyOCR's
    own file, into every run."""
    from models.pretrained import CRAFT

    if not run_id:
        return
    client = connect(settings)
    fs, folder = storage.fs_and_path(bundle.dir)
    for fname in sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)):
        if fname != CRAFT.filename and not fname.startswith("."):
            _log_file(client, run_id, storage.join(bundle.dir, fname), "easyocr")


def holds_run(settings: TrackingSettings, run_id: str) -> bool:
    """Whether the tracking store holds run_id: a training cached in the bucket may have been tracked by another
    machine's MLflow."""
    from mlflow.exceptions import MlflowException

    try:
        connect(settings).get_run(run_id)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return False
    return True


def log_dataset(settings: TrackingSettings, run_id: str | None, render, summary: dict) -> None:
    """The render settings and fonts behind a run, with tags to tell runs apart in the MLflow UI.

    Tags, not params: a run is keyed by its training data, and settings that change only the test split (the
    held-out fonts) reuse it, so these values may change for the same run.
    """
    if not run_id:
        return
    from hwocr.locks import held

    # Two runs of one config at once share the training's run: MLflow's set_tag is a read then an insert, and two
    # at once on one tag fail the second on the tags table's unique key.
    with held(f"mlflow-run-{run_id}"):
        _log_dataset(settings, run_id, render, summary)


def _log_dataset(settings: TrackingSettings, run_id: str, render, summary: dict) -> None:
    client = connect(settings)
    client.log_dict(run_id, {"render": render.model_dump(mode="json"),
                             **{k: summary.get(k) for k in ("fonts", "test_fonts", "regression_fonts", "words")}},
                    "dataset/render.json")
    tags = {"render.effects": ",".join(render.effects.names_on()) or "none",
            "render.glyph_jitter": "on" if render.glyph_jitter.on else "off",
            "render.train_fonts": ", ".join(f["name"] for f in summary.get("fonts") or []),
            "render.test_fonts": ", ".join(f["name"] for f in summary.get("test_fonts") or []) or "none"}
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])
    for key in ("contact_sheet", "fonts_effects_sheet"):  # the pictures of the data, beside the run's figures
        url = summary.get(key)
        if url and storage.is_local(url) and storage.exists(url):
            client.log_artifact(run_id, storage.local_path(url), "dataset")


def finish_run(settings: TrackingSettings, out_dir: str, model, summary: dict) -> dict:
    """Log checkpoints and the best model (pickle format, explicit requirements), register it, end the run."""
    import mlflow
    import mlflow.pytorch

    for name in ("best_accuracy.pth", "best_norm_ED.pth"):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            mlflow.log_artifact(path, "checkpoints")
    mlflow.log_dict({k: v for k, v in summary.items() if k != "history"}, "summary.json")
    import torch

    # The console is the run's: MLflow's warning about pickle (a choice made here, knowingly) and its registry
    # lines on stderr go to the log file instead.
    said = io.StringIO()
    with _quiet("mlflow.pytorch"), contextlib.redirect_stderr(said):
        info = mlflow.pytorch.log_model(
            model, name="model", serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            registered_model_name=settings.registered_model or None,
        )
    for line in said.getvalue().splitlines():
        log.info("mlflow: %s", line)
    version = None
    if settings.registered_model:
        client = mlflow.MlflowClient(settings.tracking_uri)
        versions = client.search_model_versions(f"name='{settings.registered_model}'")
        version = max(int(v.version) for v in versions if v.run_id == mlflow.active_run().info.run_id)
    mlflow.end_run()
    return {"model_uri": info.model_uri, "registered_version": version}


@contextlib.contextmanager
def _quiet(name: str):
    """A logger's lines to the log files only (MLflow's loggers print to stderr, and propagate no further)."""
    logger = logging.getLogger(name)
    propagate, handlers = logger.propagate, logger.handlers[:]
    logger.propagate = False
    logger.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    try:
        yield
    finally:
        logger.handlers, logger.propagate = handlers, propagate


def end_failed() -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run(status="FAILED")

