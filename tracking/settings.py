"""Where a run is tracked: plain pydantic with no Prefect, torch or MLflow, so that the CLI checks a config in about
a second. The other libraries keep their own: RenderSettings in synth/render_settings.py, PackSettings in
models/lmdb_format.py, TrainSettings in models/train_settings.py, ExportSettings in models/bundle.py."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class TrackingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        description="MLflow tracking URI (a server, or a local store); defaults to $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db.",
    )
    experiment: str = Field("hwocr", description="MLflow experiment name.")
    registered_model: str = Field("hwocr-korean", description="Registry name of the best model; empty: don't register.")
