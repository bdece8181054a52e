"""What a run produced, typed once: the flows return it (as JSON), and the CLI's text, its --json output and the
Prefect artifacts all print from it."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.metrics import Scores
from models.promotion import Decision
from tasks.evaluate import CheckResult
from tasks.export import BundleResult
from tasks.train import TrainResult

Outcome = Literal["ran", "cached"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSummary(_Model):
    lmdb: str
    gt: str
    samples: int
    dropped: dict[str, int]
    per_font: dict[str, int]
    # font -> why images were redrawn with another word (missing_glyph: a word the font cannot draw) -> count
    redrawn_per_font: dict[str, dict[str, int]] = {}
    syllables: dict = {}  # how many of the charset's Hangul syllables the split's labels use, the fewest draws of one


class Shards(_Model):
    total: int
    rendered: int
    cached: int


class FontSummary(_Model):
    name: str
    url: str
    sha256: str
    weight: float | None = None


class DatasetSummary(_Model):
    out: str
    splits: dict[str, SplitSummary]
    shards: Shards
    stages: dict[str, dict[str, Outcome]]  # split -> stage -> outcome
    contact_sheet: str
    fonts_effects_sheet: str
    fonts: list[FontSummary]
    test_fonts: list[FontSummary]
    regression_fonts: list[FontSummary]
    fonts_skipped: list[dict]
    words: dict

    def lines(self) -> list[str]:
        out = [f"{split}: {s.samples} samples in LMDB {s.lmdb} (gt {s.gt})"
               + (f"; {s.syllables['covered']}/{s.syllables['syllables']} syllables, the rarest drawn "
                  f"{s.syllables['least_drawn']}x" if s.syllables else "")
               + (f"; dropped {json.dumps(s.dropped)}" if s.dropped else "") for split, s in self.splits.items()]
        out.append(f"shards: {self.shards.total} ({self.shards.rendered} rendered, {self.shards.cached} cached)  "
                   f"fonts: {', '.join(f.name for f in self.fonts)}")
        out += [f"font skipped: {s['reason']}" for s in self.fonts_skipped]
        out.append(f"contact sheet: {self.contact_sheet}")
        return out


class Score(_Model, Scores):
    by_font: dict[str, Scores] | None
    predictions: str
    digest: str
    jamo: dict | None = None  # models/jamo.py's breakdown
    calibration: dict | None = None  # models/calibration.py's table and thresholds

    def row(self, split: str, what: str) -> dict:
        jamo = self.jamo or {}
        return table_row(split, what, self) | {f"{p} jamo errors %": jamo[p]["rate"]
                                               for p in ("initial", "medial", "final") if jamo.get(p)}


def table_row(split: str, what: str, scores: Scores) -> dict:
    """A row of the evaluation table the Prefect artifact shows."""
    return {"split": split, "font": what, **scores.rounded()}


class Forgetting(_Model):
    start_correct: int
    still_correct: int
    forgotten: int
    retained: float | None

    def line(self) -> str:
        if not self.start_correct:
            return "regression: the start read none of the print images, so nothing could be forgotten"
        return (f"regression: of the {self.start_correct} print images the start read, the fine-tuned model still "
                f"reads {self.still_correct} ({self.retained:.2f}%; forgot {self.forgotten})")


class RealScore(_Model):
    """One real source: what it held, and its test split read by the model, by the start, and by EasyOCR."""

    format: str
    dropped: dict[str, int]
    splits: dict[str, int]  # samples per split
    lmdb: str | None  # the test split's LMDB
    hwocr: Score | None  # None: the source has no test split
    start: Score | None
    pages: list[dict] | None = None  # a pages source's test pages, for readtext
    easyocr: dict | None = None  # {"float", "int8", "pages"}: filled in by the pipeline's EasyOCR check

    def lines(self, name: str, pretrained: str) -> list[str]:
        where = f"real {name} ({self.format}; {', '.join(f'{k} {v}' for k, v in self.splits.items())} words"
        where += f"; dropped {json.dumps(self.dropped)})" if self.dropped else ")"
        if self.hwocr is None:
            return [f"{where}: no test split to score"]
        h = self.hwocr
        out = [f"{where}: {h.samples} test words, {h.text('accuracy', 'cer')}"
               + (f"; {pretrained} before fine-tuning {self.start.accuracy:.2f}% "
                  f"({h.accuracy - self.start.accuracy:+.2f} points)" if self.start else "")]
        if self.easyocr:
            e = self.easyocr
            out.append(f"  read by EasyOCR itself: {e['float']['accuracy']:.2f}% (int8 {e['int8']['accuracy']:.2f}%)"
                       + (f"; its pages through readtext: {e['pages']['word_accuracy']:.2f}% of words, detection "
                          f"recall {e['pages']['detection_recall']:.2f}%" if e.get("pages") else ""))
        return out

    def rows(self, name: str) -> list[dict]:
        rows = [self.hwocr.row(f"real {name}", "all")] if self.hwocr else []
        if self.start:
            rows.append(self.start.row(f"real {name}", "all, start (not fine-tuned)"))
        for kind in ("float", "int8") if self.easyocr else ():
            scores = Scores(samples=self.hwocr.samples, **self.easyocr[kind])
            rows.append(table_row(f"real {name}", f"all, EasyOCR {kind}", scores))
        return rows


class TrainingSummary(TrainResult):
    """The training stage's result (its history left out), as this run used it, with its scores."""

    cached: bool
    pretrained: str
    tracking_uri: str
    evaluation: dict[str, Score]
    start: dict[str, Score] | None
    forgetting: Forgetting | None
    real: dict[str, RealScore] | None = None  # the user's own handwriting, by source: the headline
    validated_on: str | None = None  # the real validation LMDB that chose the checkpoint, when not the synthetic one
    refined_from: str | None = None  # real.refine: the first stage's checkpoint this model was refined from

    def mlflow_line(self) -> str:
        if not self.mlflow_run_id:
            return (f"MLflow: the cached training was tracked in another store than {self.tracking_uri}; "
                    "nothing logged there")
        return (f"MLflow run {self.mlflow_run_id}: .venv/bin/mlflow ui --backend-store-uri {self.tracking_uri}  "
                "(then open http://127.0.0.1:5000)")

    def real_lines(self) -> list[str]:
        return [line for name, r in (self.real or {}).items() for line in r.lines(name, self.pretrained)]

    def lines(self, real: bool = True) -> list[str]:
        out = self.real_lines() if real else []
        if self.refined_from:
            out.append(f"refined on the real train splits alone, from {self.refined_from}")
        out.append(f"trained {self.iterations} iterations" + (" (cached)" if self.cached else "")
                   + f"; best validation accuracy {self.best_accuracy:.2f}%"
                   + (f" (on the real {self.validated_on})" if self.validated_on else "")
                   + f", checkpoint {self.checkpoint}")
        for split, r in self.evaluation.items():
            out.append(f"{split}: {r.samples} samples, {r.text()}; predictions {r.predictions}")
            if split in (self.start or {}):
                b = self.start[split]
                out.append(f"  before fine-tuning ({self.pretrained}): {b.text('accuracy', 'cer')}; "
                           f"fine-tuned {r.accuracy - b.accuracy:+.2f} points")
        if self.forgetting:
            out.append(self.forgetting.line())
        return out

    def rows(self) -> list[dict]:
        rows = []
        for split, r in self.evaluation.items():
            rows.append(r.row(split, "all"))
            rows += [table_row(split, font, f) for font, f in sorted((r.by_font or {}).items())]
        rows += [r.row(split, "all, start (not fine-tuned)") for split, r in (self.start or {}).items()]
        return [row for name, r in (self.real or {}).items() for row in r.rows(name)] + rows


class Bundle(BundleResult):
    cached: bool


class Check(CheckResult):
    def line(self) -> str:
        line = (f"read by EasyOCR itself, {self.split}: accuracy {self.float['accuracy']:.2f}% "
                f"(int8, EasyOCR's CPU default: {self.int8['accuracy']:.2f}%); hwocr measured "
                f"{self.hwocr_accuracy:.2f}%")
        if self.pages:
            line += (f"; on pages (readtext) {self.pages['word_accuracy']:.2f}% of words, detection recall "
                     f"{self.pages['detection_recall']:.2f}%")
        if self.batch:
            line += "\n" + batch_line(self.batch)
        if self.decoders:
            first = next(iter(self.decoders.values()))
            line += f"\nEasyOCR's decoders on the first {first['samples']} words: " + ", ".join(
                f"{name} {d['accuracy']:.2f}% ({d['seconds_per_image'] * 1000:.0f} ms an image)"
                for name, d in self.decoders.items())
        if self.mismatch:
            return f"WARNING: EasyOCR and hwocr disagree by {self.gap:+.2f} points. {line}"
        return line

    def rows(self) -> list[dict]:
        rows = [table_row(self.split, f"all, EasyOCR {kind}", Scores(samples=self.samples, **f))
                for kind, f in (("float", self.float), ("int8", self.int8))]
        if self.batch:
            b = self.batch
            rows.append(table_row(self.split, f"first {b['samples']}, EasyOCR recognize(batch_size="
                                  f"{b['batch_size']}) ({b['agreement']:.1f}% equal to batch 1)",
                                  Scores.model_validate(b)))
        for name, d in (self.decoders or {}).items():
            rows.append(table_row(self.split, f"first {d['samples']}, EasyOCR decoder {name}",
                                  Scores(**{k: d[k] for k in ("samples", *Scores.names())})))
        if self.pages:
            g = self.pages
            rows.append({"split": self.split, "font": f"pages via readtext (detection recall "
                         f"{g['detection_recall']:.1f}%)", "samples": g["words"],
                         "accuracy": round(g["word_accuracy"], 2), "norm_ed": None, "cer": round(g["cer"], 4)})
        return rows


NO_EASYOCR = "read by EasyOCR: not checked (.venv-easyocr is missing; scripts/bootstrap.sh installs it)"


def batch_line(b: dict) -> str:
    return (f"recognize(batch_size={b['batch_size']}), as on a GPU, {b['samples']} words: accuracy "
            f"{b['accuracy']:.2f}%; {b['agreement']:.1f}% of readings equal box-by-box reading (EasyOCR #1038)")


class PipelineSummary(_Model):
    dataset: DatasetSummary
    train: TrainingSummary
    export: Bundle | None
    export_skipped: str | None = None  # why there is no bundle (an Attn model)
    easyocr: Check | None
    real: dict[str, RealScore] | None = None  # train.real with EasyOCR's readings: the headline
    champion: Decision | None = None  # whether the registry's champion alias moved to this model, and why

    def lines(self) -> list[str]:
        if self.export is None:
            bundle = [f"EasyOCR bundle: not written ({self.export_skipped})"]
        else:
            bundle = [f"EasyOCR bundle: {self.export.dir} (recog_network='{self.export.name}'; its README.md says "
                      "how to load it)", self.easyocr.line() if self.easyocr else NO_EASYOCR]
        # The user's own handwriting first: that is the figure that counts.
        real = [line for name, r in (self.real or {}).items() for line in r.lines(name, self.train.pretrained)]
        if self.champion:
            real.append(self.champion.line())
        return [*real, *self.dataset.lines(), *self.train.lines(real=False), *bundle, self.train.mlflow_line()]

    def rows(self) -> list[dict]:
        train = self.train.model_copy(update={"real": self.real}) if self.real else self.train
        return train.rows() + (self.easyocr.rows() if self.easyocr else [])
