"""export_easyocr: the stage that writes a training's EasyOCR bundle (models/bundle.py) into its run folder, and
the bundle attached to the training's MLflow run."""


from __future__ import annotations

import os

import models
from hwocr import hashing, storage
from hwocr.layout import Layout
from models.bundle import ExportSettings, export_easyocr_fn
from tasks.stage import IO_RETRY, StageInput, StageResult, stage
from tasks.train import TrainResult

# The bundle's NAME.py is models/crnn.py's text.
CODE_VERSION = hashing.code_version(__file__, os.path.join(os.path.dirname(models.__file__), "crnn.py"))

class BundleResult(StageResult):
    """An EasyOCR custom-network bundle: the files `easyocr.Reader(recog_network=name, ...)` loads."""

    name: str
    dir: str
    pth: str
    yaml: str
    py: str
    readme: str
    detector: str | None

    def complete(self) -> bool:
        return storage.exists(self.pth)


class ExportInput(StageInput):
    layout: Layout
    trained: TrainResult
    settings: ExportSettings
    calibration: dict | None = None  # the validation split's thresholds, for the README

    def reads(self) -> dict:
        return {"train": self.trained.key, "settings": self.settings.model_dump(mode="json"),
                "calibration": self.calibration}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.bundle(self.trained.key), "export.json")


def export_bundle_fn(inp: ExportInput) -> BundleResult:
    """The bundle of a training, in its run folder: the checkpoint says how it is read."""
    return BundleResult(**export_easyocr_fn(inp.trained.checkpoint, inp.layout.bundle(inp.trained.key), inp.settings,
                                            calibration=inp.calibration))


export_easyocr = stage(name="export_easyocr", code=CODE_VERSION, result=BundleResult, **IO_RETRY)(export_bundle_fn)
