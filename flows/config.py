"""The pipeline config: each stage's settings model, composed; YAML presets plus dotted overrides."""

from __future__ import annotations

import difflib
import os
import re
import typing
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hwocr import remote, storage
from hwocr.errors import HwocrError
from hwocr.remote import RemoteSettings
from models.bundle import ExportSettings
from models.lmdb_format import PackSettings
from models.sources import RealSettings
from models.train_settings import TrainSettings
from synth.render_settings import RenderSettings
from tracking.settings import TrackingSettings

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str = Field("./hwocr-out", description="Where everything is written: a local folder or an fsspec URL.")
    render: RenderSettings = Field(default_factory=RenderSettings)
    pack: PackSettings = Field(default_factory=PackSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    real: RealSettings = Field(
        default_factory=RealSettings, description="Your own handwriting: labeled crops and pages to train on "
        "(mixed into every batch by ratio) and to score the model on (the headline figures)."
    )
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    easyocr_check: bool = Field(
        True, description="Read the exported bundle with EasyOCR itself (float, int8, pages through readtext, "
        "batched): the figures a user of the bundle gets, beside hwocr's own. false skips it (a quicker iteration)."
    )
    remote: RemoteSettings = Field(
        default_factory=RemoteSettings, description="Timeouts of every call to a remote store (S3, HTTP)."
    )
    runner: Literal["local", "dask"] = Field(
        "local", description="Where render shards run: local processes, or a Dask cluster (prefect-dask)."
    )
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); none: a LocalCluster here."
    )
    results: str | None = Field(
        None, description="Where Prefect keeps task results, its cache records (a folder or an fsspec URL); "
        "none: <out>/prefect-results. Machines that share it share cache hits, even with separate Prefect servers.",
    )

    def results_url(self) -> str:
        from hwocr.layout import Layout

        return storage.normalize(self.results) if self.results else Layout.at(self.out).results


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for ann in (field.annotation, *typing.get_args(field.annotation)):  # a section may be optional
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                keys += _known_keys(ann, prefix + name + ".")
    return keys


def _set_dotted(data: dict, key: str, value) -> None:
    known = _known_keys(PipelineConfig)
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise HwocrError(f"unknown setting {key!r}{hint}")
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise HwocrError(f"setting {key!r}: {p!r} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise HwocrError(f"--set {text!r}: expected KEY=VALUE, e.g. render.count=2000")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _config_dirs() -> list[str]:
    # The repository's configs/, or ./configs beside an installed package (as in the Docker image).
    return [CONFIG_DIR, os.path.join(os.getcwd(), "configs")]


def resolve_preset(path: str) -> str:
    if os.path.exists(path):
        return path
    for folder in _config_dirs():
        named = os.path.join(folder, path if path.endswith(".yaml") else path + ".yaml")
        if os.path.exists(named):
            return named
    raise HwocrError(f"config file {path!r} does not exist (presets: {', '.join(sorted(list_presets()))})")


def list_presets() -> list[str]:
    return sorted({f[:-5] for d in _config_dirs() if os.path.isdir(d) for f in os.listdir(d) if f.endswith(".yaml")})


PRESETS = tuple(list_presets())
Preset = Literal[PRESETS]  # the Prefect UI's choice of preset


def config_from_form(preset: str | None, knobs: dict, settings: list[str] = (),
                     config: PipelineConfig | None = None) -> PipelineConfig:
    """The config a Prefect form describes: `config` when given, else the preset; then the knobs (dotted key ->
    value, None for unset) and `settings` (KEY=VALUE, as --set) over it. Its remote timeouts apply to this process
    (a deployment's run, on a worker) from here on."""
    data = config.model_dump(mode="json") if config is not None else _preset_data(preset)
    given = {}
    for key, value in knobs.items():
        if value is not None:
            _set_dotted(data, key, value)
            given[key] = f"the form's {key}"
    config = _validated(data, settings, None, f"preset {preset}" if config is None and preset else None, given)
    remote.configure(config.remote)
    return config


def _preset_data(path: str | None) -> dict:
    if not path:
        return {}
    path = resolve_preset(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise HwocrError(f"config file {path}: not valid YAML ({where}{why})") from None
    if not isinstance(data, dict):
        raise HwocrError(f"config file {path}: expected a mapping of sections")
    return data


def _validated(data: dict, overrides, out: str | None, where: str | None,
               given: dict[str, str] | None = None) -> PipelineConfig:
    """The config of data with the overrides (KEY=VALUE) and out over it; an invalid value is named with where it
    came from: the --set, the form field (given: key -> its name), else the preset (where)."""
    given = dict(given or {})
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        given[key] = f"--set {text}"
    if out is not None:
        data["out"] = out
        given["out"] = "--out"
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            source = next((v for k, v in given.items() if loc == k or loc.startswith(k + ".")), where)
            problems.append(f"{loc}: {err['msg']}{_choice_hint(err)} (got {err.get('input')!r}"
                            f"{', from ' + source if source else ''})")
        raise HwocrError(f"invalid settings: {'; '.join(problems)}") from None


def _choice_hint(err: dict) -> str:
    """For a value outside a choice (a Literal), the nearest option, case first: `resnet` -> ResNet."""
    if err["type"] != "literal_error" or not isinstance(err.get("input"), str):
        return ""
    options = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    given = err["input"]
    close = [o for o in options if o.lower() == given.lower()] or difflib.get_close_matches(given, options, n=1,
                                                                                           cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def given_keys(model: BaseModel, prefix: str = "") -> set[str]:
    """The dotted keys of the settings a preset, a form or --set gave, rather than left at their defaults."""
    keys: set[str] = set()
    for name in model.model_fields_set:
        value = getattr(model, name)
        keys |= given_keys(value, f"{prefix}{name}.") if isinstance(value, BaseModel) else {prefix + name}
    return keys


def load_config(path: str | None = None, overrides: list[str] = (), out: str | None = None) -> PipelineConfig:
    data = _preset_data(path)
    return _validated(data, overrides, out, resolve_preset(path) if path else None)
