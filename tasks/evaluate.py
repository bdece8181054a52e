"""evaluate: a checkpoint on an LMDB (or a folder with gt.txt): metrics overall, per font and per label length,
predictions as TSV, and an image grid of the worst failures."""

from __future__ import annotations

from hwocr import hashing, storage
from hwocr.layout import Layout
from models import evaluation as ev
from models.bundle import decoder_advice
from models.easyocr_venv import SCRIPT
from models.metrics import Scores
from models.pages import PAGES_FILE
from models.pretrained import CRAFT
from models.reading import Reading
from models.train_settings import TrainSettings
from tasks.export import BundleResult
from tasks.stage import StageInput, StageResult, stage
from tasks.train import TrainResult
from tracking.runs import log_figures

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
    jamo: dict | None = None  # models/jamo.py: error rates per jamo position, per character class
    confusions: list[dict] = []
    confusions_picture: str | None = None
    calibration: dict | None = None  # models/calibration.py: thresholds for 99% and 95% precision
    calibration_picture: str | None = None

    def complete(self) -> bool:
        return storage.exists(self.predictions)


class EvalInput(StageInput):
    layout: Layout
    trained: TrainResult
    split: str
    data: str  # the split's LMDB
    digest: str  # its content
    start: bool = False  # the pretrained start (its head remapped) instead of the fine-tuned checkpoint

    def reads(self) -> dict:
        return {"train": self.trained.key, "data": self.digest, "start": self.start}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.eval(self.trained.key, self.split, self.start), "evaluation.json")


def evaluate_split_fn(inp: EvalInput, tracking) -> EvalResult:
    """Score the checkpoint on a split and add its figures to the fine-tune's MLflow run, named <split>_<metric>
    (start_<split>_<metric>)."""
    trained, split, start = inp.trained, inp.split, inp.start
    out_url, prefix = inp.layout.eval(trained.key, split, start), "start_" if start else ""
    report = EvalResult(**ev.evaluate_checkpoint(trained.start_checkpoint if start else trained.checkpoint, inp.data,
                                                 out_url))
    log_figures(tracking, trained.mlflow_run_id, ev.split_metrics(report, split, prefix), f"evaluation/{prefix}{split}",
                tuple(storage.join(out_url, n) for n in ("predictions.tsv", "evaluation.json", "worst_failures.png",
                                                           "confusions.png", "calibration.png")))
    return report


evaluate_split = stage(name="evaluate", code=CODE_VERSION, result=EvalResult,
                       task_run_name="evaluate {inp.split}")(evaluate_split_fn)


class PagesResult(StageResult):
    """A split's first words composed into pages, with the boxes EasyOCR's detector finds on them."""

    url: str
    pages: int
    words: int

    def complete(self) -> bool:
        return storage.exists(storage.join(self.url, PAGES_FILE))


class PagesInput(StageInput):
    layout: Layout
    split: str
    data: str
    digest: str
    settings: TrainSettings  # which samples a model of these settings keeps
    page_words: int = ev.PAGE_WORDS

    def reads(self) -> dict:
        return {"data": self.digest, "page_words": self.page_words, "kept": ev.kept_by(Reading.of(self.settings)),
                "detector": CRAFT.md5}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.pages(self.split, key), "found.json")


def find_pages_fn(inp: PagesInput, *, key: str) -> PagesResult:
    """The words the EasyOCR check reads on pages, composed and run through the detector once: neither depends on
    the model, so any later model of the same settings reads the same boxes."""
    url = inp.layout.pages(inp.split, key)
    pages, words = ev.find_split_pages(inp.data, Reading.of(inp.settings), inp.page_words, url)
    return PagesResult(url=url, pages=pages, words=words)


find_pages = stage(name="find_pages", code=CODE_VERSION, result=PagesResult,
                   task_run_name="find pages {inp.split}")(find_pages_fn)


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
    decoders: dict | None = None  # EasyOCR's decoders on the first words: {name: scores, seconds_per_image}
    decoder_words: dict | None = None  # the word list wordbeamsearch searched


class CheckInput(StageInput):
    layout: Layout
    bundle: BundleResult
    trained: TrainResult
    split: str
    data: str
    digest: str
    pages: PagesResult | None = None  # find_pages' pages of the split
    real_pages: list[dict] | None = None  # a real source's own pages
    words: str | None = None  # the word list wordbeamsearch searches

    def reads(self) -> dict:
        return {"bundle": self.bundle.key, "data": self.digest, "pages": self.pages.key if self.pages else None,
                "real_pages": self.real_pages, "words": self.words}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.easyocr_check(self.trained.key, self.split), "check.json")


def easyocr_check_fn(inp: CheckInput, tracking, hwocr_accuracy: float) -> CheckResult:
    """Read a split with the exported bundle in the real easyocr, float and int8, beside hwocr's own figure, and
    the pages find_pages composed of its first words with readtext (in the boxes found there); with `words` (the
    run's word list), those first words again with each of EasyOCR's decoders, wordbeamsearch searching the list.

    The result says whether EasyOCR's float accuracy is within MISMATCH_POINTS (models/evaluation.py) of hwocr's;
    the MLflow run gets the figures and the tags hwocr.easyocr_gap and hwocr.easyocr_mismatch."""
    bundle, trained, split, pages, words = inp.bundle, inp.trained, inp.split, inp.pages, inp.words
    out_url = inp.layout.easyocr_check(trained.key, split)
    report = ev.evaluate_checkpoint(bundle.dir, inp.data, out_url, engine="easyocr",
                                    page_words=pages.words if pages else 0, real_pages=inp.real_pages,
                                    found_pages=pages.url if pages else None,
                                    decoders=ev.DECODERS if words else (), words=words, decoder_samples=ev.PAGE_WORDS)
    e = report["easyocr"]
    gap = e["float"]["accuracy"] - hwocr_accuracy
    check = CheckResult(split=split, samples=report["samples"], hwocr_accuracy=hwocr_accuracy, float=e["float"],
                        int8=e["int8"], int8_agreement=e["int8_agreement"], pages=e["pages"], batch=e["batch"],
                        gap=gap, mismatch=abs(gap) > ev.MISMATCH_POINTS, predictions=report["predictions"],
                        decoders=e["decoders"], decoder_words=e["decoder_words"])
    if e["decoders"]:
        decoder_advice(bundle.readme, e["decoders"], split)
        log_figures(tracking, trained.mlflow_run_id, {}, "easyocr", (bundle.readme,))  # the run's copy too
    log_figures(tracking, trained.mlflow_run_id, ev.check_metrics(e, split), f"evaluation/{split}/easyocr",
                tuple(storage.join(out_url, n) for n in ("predictions.tsv", "evaluation.json")),
                {"hwocr.easyocr_gap": f"{gap:+.2f}", "hwocr.easyocr_mismatch": str(check.mismatch).lower()})
    return check


easyocr_check = stage(name="easyocr_check", code=CODE_VERSION, result=CheckResult,
                      task_run_name="easyocr {inp.split}")(easyocr_check_fn)
