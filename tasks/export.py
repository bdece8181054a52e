"""export_easyocr: the stage that writes a training's EasyOCR bundle (models/bundle.py) into its run folder, and
the bundle attached to the training's MLflow run."""


from __future__ import annotations

import os

import models
from hwocr import hashing, storage
from hwocr.layout import Layout
from models.bundle import ExportSettings, export_easyocr_fn
from models.pretrained import CRAFT
from tasks.stage import IO_RETRY, StageResult, stage

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


def export_bundle_fn(layout: Layout, trained, settings: ExportSettings,
                     calibration: dict | None = None) -> BundleResult:
    """The bundle of a training, in its run folder: the checkpoint says how it is read; the README gives the
    confidence thresholds of its validation split."""
    return BundleResult(**export_easyocr_fn(trained.checkpoint, layout.bundle(trained.key), settings,
                                            calibration=calibration))


export_easyocr = stage(
    name="export_easyocr", code=CODE_VERSION, result=BundleResult,
    key=lambda layout, trained, settings, calibration=None: {
        "train": trained.key, "settings": settings.model_dump(mode="json"), "calibration": calibration},
    marker=lambda key, layout, trained, **_: storage.join(layout.bundle(trained.key), "export.json"),
    **IO_RETRY,
)(export_bundle_fn)


def log_bundle(tracking, run_id: str | None, bundle: BundleResult) -> None:
    """Attach the bundle to the fine-tune's MLflow run under easyocr/."""
    if not (run_id and storage.is_local(bundle.dir)):
        return
    from tracking.runs import connect

    client, folder = connect(tracking), storage.local_path(bundle.dir)
    for fname in sorted(os.listdir(folder)):  # not the 83 MB detector, EasyOCR's own file, into every run
        if fname != CRAFT.filename and not fname.startswith("."):
            client.log_artifact(run_id, os.path.join(folder, fname), "easyocr")

