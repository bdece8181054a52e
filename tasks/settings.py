"""The settings of the stages that have no library beneath them (export, tracking): plain pydantic with no Prefect,
torch or MLflow, so that the CLI checks a config in about a second. The libraries keep their own: RenderSettings in
synth/settings.py, PackSettings in models/lmdb_format.py, TrainSettings in models/settings.py."""

from __future__ import annotations

import keyword
import os
import sys

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Modules a custom network's name must not shadow: EasyOCR imports NAME with user_network_directory on sys.path.
_TAKEN = {"easyocr", "torch", "torchvision", "cv2", "numpy", "yaml", "PIL", "scipy", "skimage", "bidi", "shapely",
          "pyclipper", "ninja", "model", "modules", "vgg_model", "utils", "recognition", "detection"}


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("hwocr_korean", description="Network name: recog_network=NAME; the files are NAME.pth/.yaml/.py.")
    lang_list: list[str] = Field(default_factory=lambda: ["ko"], description="lang_list written to NAME.yaml.")

    @field_validator("name")
    @classmethod
    def _importable(cls, v: str) -> str:
        if not v.isidentifier() or keyword.iskeyword(v) or not v.isascii():
            why = ("it starts with a digit" if v[:1].isdigit() else "it is a Python keyword" if keyword.iskeyword(v)
                   else "it holds other characters")
            raise ValueError(f"export name {v!r} must be an ASCII Python identifier (letters, digits, _; not "
                             f"starting with a digit), and {why}: EasyOCR imports NAME.py as a module")
        if v in _TAKEN or v in sys.stdlib_module_names:
            raise ValueError(f"export name {v!r} would shadow the module {v!r} that EasyOCR imports; pick another")
        return v


class TrackingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        description="MLflow tracking URI (a server, or a local store); defaults to $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db.",
    )
    experiment: str = Field("hwocr", description="MLflow experiment name.")
    registered_model: str = Field("hwocr-korean", description="Registry name of the best model; empty: don't register.")
