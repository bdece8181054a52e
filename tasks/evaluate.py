"""evaluate: a checkpoint on an LMDB (or a folder with gt.txt): metrics overall, per font and per label length,
predictions as TSV, and an image grid of the worst failures."""

from __future__ import annotations

from hwocr import hashing, storage
from hwocr.errors import HwocrError
from hwocr.layout import Layout
from models.easyocr_venv import SCRIPT, easyocr_python
from models.evaluation import PAGE_WORDS, evaluate_checkpoint, find_split_pages
from models.metrics import Scores
from models.pages import PAGES_FILE
from models.pretrained import CRAFT
from models.reading import Reading
from tasks.export import BundleResult
from tasks.stage import StageResult, stage
from tasks.train import TrainResult

# The scripts run in EasyOCR's venv are part of what an evaluation is.
CODE_VERSION = hashing.code_version(__file__, SCRIPT)


class EvalResult(StageResult, Scores):
    """One model scored on one split: overall (its Scores' fields), per length and per font, with its predictions."""

    model: str
    data: str
    predictions: str
    worst_failures: str | None
    dropped: dict
    by_length: dict[int, Scores]
    by_font: dict[str, Scores] | None
    easyocr: dict | None = None
    reading: str | None = None  # how the model was read (its reading contract)

    def complete(self) -> bool:
        return storage.exists(self.predictions)


def evaluate_split_fn(layout: Layout, trained: TrainResult, split: str, data: str, digest: str, tracking,
                      start: bool = False) -> EvalResult:
    """Score the fine-tuned checkpoint (or, with start, the pretrained start with its head remapped) on a split
    and add its figures to the fine-tune's MLflow run, named <split>_<metric> (start_<split>_<metric>)."""
    out_url, prefix = layout.eval(trained.key, split, start), "start_" if start else ""
    report = EvalResult(**evaluate_checkpoint(trained.start_checkpoint if start else trained.checkpoint, data,
                                              out_url))
    if trained.mlflow_run_id:
        from tasks.track import connect

        client, run_id = connect(tracking), trained.mlflow_run_id
        for name, value in report.metrics(f"{prefix}{split}_").items():
            client.log_metric(run_id, name, value)
        for font, row in (report.by_font or {}).items():
            client.log_metric(run_id, f"{prefix}{split}_accuracy_font_{_metric_name(font)}", row.accuracy)
        for name in ("predictions.tsv", "evaluation.json", "worst_failures.png"):
            path = storage.join(out_url, name)
            if storage.is_local(path) and storage.exists(path):
                client.log_artifact(run_id, storage.local_path(path), f"evaluation/{prefix}{split}")
    return report


evaluate_split = stage(
    name="evaluate", code=CODE_VERSION, result=EvalResult,
    key=lambda layout, trained, split, data, digest, tracking, start=False: {
        "train": trained.key, "data": digest, "start": start},
    marker=lambda key, layout, trained, split, start=False, **_: storage.join(layout.eval(trained.key, split, start),
                                                                              "evaluation.json"),
    task_run_name="evaluate {split}",
)(evaluate_split_fn)


def log_retention(tracking, run_id: str | None, figures: dict) -> None:
    if run_id and figures["retained"] is not None:
        from tasks.track import connect

        client = connect(tracking)
        if not client.get_metric_history(run_id, "regression_retained"):  # a cached re-run logs nothing again
            client.log_metric(run_id, "regression_retained", figures["retained"])


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


MISMATCH_POINTS = 1.0  # EasyOCR's float reading may differ from hwocr's own figure by this much before a warning


class PagesResult(StageResult):
    """A split's first words composed into pages, with the boxes EasyOCR's detector finds on them."""

    url: str
    pages: int
    words: int

    def complete(self) -> bool:
        return storage.exists(storage.join(self.url, PAGES_FILE))


def find_pages_fn(layout: Layout, split: str, data: str, digest: str, settings, page_words: int = PAGE_WORDS, *,
                  key: str) -> PagesResult:
    """The words the EasyOCR check reads on pages, composed and run through the detector once: neither depends on
    the model, so this runs beside training and any later model of the same settings reads the same boxes."""
    url = layout.pages(split, key)
    pages, words = find_split_pages(data, Reading.of(settings), page_words, url)
    return PagesResult(url=url, pages=pages, words=words)


def _kept(settings) -> list:
    """What decides which samples of a split a model of these settings keeps (LmdbDataset's filter)."""
    r = Reading.of(settings)
    return [r.charset, r.batch_max_length, r.img_h, r.img_w, r.preprocess, r.max_width]


find_pages = stage(
    name="find_pages", code=CODE_VERSION, result=PagesResult,
    key=lambda layout, split, data, digest, settings, page_words=PAGE_WORDS: {
        "data": digest, "page_words": page_words, "kept": _kept(settings), "detector": CRAFT.md5},
    marker=lambda key, layout, split, **_: storage.join(layout.pages(split, key), "found.json"),
    task_run_name="find pages {split}",
)(find_pages_fn)


class CheckResult(StageResult):
    """The bundle read by the real easyocr on a split, beside hwocr's own figure."""

    split: str
    samples: int
    hwocr_accuracy: float
    float: dict
    int8: dict
    int8_agreement: float
    pages: dict | None
    batch: dict | None
    gap: float
    mismatch: bool
    predictions: str


def easyocr_check_fn(layout: Layout, bundle: BundleResult, trained: TrainResult, split: str, data: str, digest: str,
                     tracking, hwocr_accuracy: float, pages: PagesResult | None = None,
                     real_pages: list[dict] | None = None) -> CheckResult:
    """Read a split with the exported bundle in the real easyocr, float and int8, beside hwocr's own figure, and
    the pages find_pages composed of its first words with readtext (in the boxes found there).

    The result says whether EasyOCR's float accuracy is within MISMATCH_POINTS of hwocr's; the MLflow run gets
    the figures and the tags hwocr.easyocr_gap and hwocr.easyocr_mismatch."""
    out_url = layout.easyocr_check(trained.key, split)
    report = evaluate_checkpoint(bundle.dir, data, out_url, engine="easyocr", page_words=pages.words if pages else 0,
                                 real_pages=real_pages, found_pages=pages.url if pages else None)
    e = report["easyocr"]
    gap = e["float"]["accuracy"] - hwocr_accuracy
    check = CheckResult(split=split, samples=report["samples"], hwocr_accuracy=hwocr_accuracy, float=e["float"],
                        int8=e["int8"], int8_agreement=e["int8_agreement"], pages=e["pages"], batch=e["batch"],
                        gap=gap, mismatch=abs(gap) > MISMATCH_POINTS, predictions=report["predictions"])
    run_id = trained.mlflow_run_id
    if run_id:
        from tasks.track import connect

        client = connect(tracking)
        for kind in ("float", "int8"):
            for name in Scores.names():
                client.log_metric(run_id, f"{split}_easyocr_{kind}_{name}", float(e[kind][name]))
        for name in ("word_accuracy", "detection_recall", "cer") if e["pages"] else ():
            client.log_metric(run_id, f"{split}_easyocr_pages_{name}", float(e["pages"][name]))
        for name in ("accuracy", "agreement") if e["batch"] else ():
            client.log_metric(run_id, f"{split}_easyocr_batch_{name}", float(e["batch"][name]))
        client.set_tag(run_id, "hwocr.easyocr_gap", f"{gap:+.2f}")
        client.set_tag(run_id, "hwocr.easyocr_mismatch", str(check.mismatch).lower())
        for name in ("predictions.tsv", "evaluation.json"):
            path = storage.join(out_url, name)
            if storage.is_local(path):
                client.log_artifact(run_id, storage.local_path(path), f"evaluation/{split}/easyocr")
    return check


def easyocr_available() -> str | None:
    """None when the EasyOCR venv is there, else why not (the pipeline then skips its EasyOCR check)."""
    try:
        easyocr_python()
    except HwocrError as e:
        return str(e)
    return None


easyocr_check = stage(
    name="easyocr_check", code=CODE_VERSION, result=CheckResult,
    key=lambda layout, bundle, trained, split, data, digest, tracking, hwocr_accuracy, pages=None,
    real_pages=None: {"bundle": bundle.key, "data": digest, "pages": pages.key if pages else None,
                      "real_pages": real_pages},
    marker=lambda key, layout, trained, split, **_: storage.join(layout.easyocr_check(trained.key, split),
                                                                 "check.json"),
    task_run_name="easyocr {split}",
)(easyocr_check_fn)
