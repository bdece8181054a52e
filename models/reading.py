"""The reading contract: what a recognizer's weights need besides themselves to be read as they were trained.

Every checkpoint hwocr writes carries its `Reading` in the state_dict's `_metadata` (torch keeps it through
save and load, weights_only included; EasyOCR's loader copies the tensors and ignores it), so the file stays the
flat `module.`-keyed state_dict EasyOCR loads. An exported bundle states the same in its yaml: EasyOCR's own keys
(`network_params`, `imgH`, `character_list`) and an `hwocr:` section for the rest.

Readers (evaluate, export, resume, pre-labelling) take the reading from the model. A setting given on the command
line or in a config that contradicts it is refused, naming both values; a checkpoint without one (EasyOCR's own,
or any other trainer's) is read only with its settings given, except EasyOCR's built-in recognizers, which hwocr
knows by their md5.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from hwocr.errors import HwocrError
from models.train_settings import ModelSettings, TrainSettings

if TYPE_CHECKING:
    from models.data import LmdbDataset

KEY = "hwocr"  # its entry in state_dict._metadata: torch's own entries are module paths, and no module has this name


class Reading(BaseModel):
    """How a recognizer is read: the network its weights fit, the input it expects, the characters its outputs
    stand for, and where its training started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    network: ModelSettings = Field(default_factory=ModelSettings, description="train.model: modules and sizes.")
    img_h: PositiveInt = Field(description="Input height (train.img_h).")
    img_w: PositiveInt = Field(100, description="Input width of pad and stretch, and TPS's grid (train.img_w).")
    preprocess: Literal["easyocr", "pad", "stretch"] = "easyocr"
    max_width: PositiveInt = 800
    batch_max_length: PositiveInt = 25
    charset: str = Field(min_length=1, description="The characters, in the head's order (class i+1 is charset[i]).")
    charset_name: str | None = Field(None, description="What the training called the set: display only.")
    pretrained: str = Field("none", description="Where training started: train.pretrained.")
    pretrained_digest: str | None = Field(None, description="The start's content: md5: or sha256: of its file.")

    @classmethod
    def of(cls, s: TrainSettings, pretrained_digest: str | None = None) -> Reading:
        """The reading of a model trained with s."""
        from models.charset import load_charset

        return cls(network=s.model, img_h=s.img_h, img_w=s.img_w, preprocess=s.preprocess, max_width=s.max_width,
                   batch_max_length=s.batch_max_length, charset=load_charset(s.charset), charset_name=s.charset,
                   pretrained=s.pretrained, pretrained_digest=pretrained_digest)

    def describe(self) -> str:
        return (f"{self.network.name} at height {self.img_h}, preprocess {self.preprocess}, "
                f"{len(self.charset)} characters" + (f" ({self.charset_name})" if self.charset_name else ""))

    def conflicts(self, s: TrainSettings, given: set[str]) -> list[str]:
        """The settings among `given` (dotted train.* keys set by the user) that s holds otherwise than this reading:
        'train.img_h 80 (the model's 64)'."""
        from models.charset import load_charset

        out = []
        for key, mine, theirs in _comparable(self, s):
            if any(g == key or key.startswith(g + ".") for g in given) and mine != theirs:
                out.append(f"{key} {theirs} (the model's {mine})")
        if "train.charset" in given and load_charset(s.charset) != self.charset:
            out.append(f"train.charset {s.charset} (the model's {self.charset_name or 'own set'}: "
                       f"{len(self.charset)} characters, another set or order)")
        return out

    def codec(self):
        from models.codec import make_codec

        return make_codec(self.network.prediction, self.charset, self.batch_max_length)

    def build(self):
        """The network, uninitialized, with this reading's class count."""
        from models.pretrained import build_network

        return build_network(self.network, self.codec().num_class, self.img_h, self.img_w, self.batch_max_length)

    def dataset(self, root: str) -> LmdbDataset:
        from models.data import LmdbDataset

        return LmdbDataset(root, self.charset, self.batch_max_length, self.img_h, self.img_w, self.preprocess,
                           self.max_width)


def _comparable(r: Reading, s: TrainSettings):
    yield from (("train.model." + k, getattr(r.network, k), getattr(s.model, k)) for k in ModelSettings.model_fields)
    for k in ("img_h", "img_w", "preprocess", "max_width", "batch_max_length"):
        yield "train." + k, getattr(r, k), getattr(s, k)


REQUIRED = ("train.img_h", "train.charset")  # what a checkpoint without a contract must be told, at least


# Writing and reading the contract of a checkpoint file.

def attach(state: dict, reading: Reading) -> OrderedDict:
    """state as an OrderedDict carrying reading; what torch.save writes of it loads in EasyOCR unchanged."""
    out = OrderedDict(state)
    out._metadata = {KEY: reading.model_dump(mode="json")}
    return out


def carried(state) -> Reading | None:
    """The reading a loaded state_dict carries, or None."""
    meta = getattr(state, "_metadata", None)
    data = meta.get(KEY) if isinstance(meta, dict) else None
    return None if data is None else _parse(data, "checkpoint")


def _parse(data, where: str) -> Reading:
    try:
        return Reading.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise HwocrError(f"{where}: its reading contract is not one this hwocr reads "
                         f"({'.'.join(map(str, err['loc']))}: {err['msg']})") from None


class _Stub:
    def __init__(self, *args, **kwargs) -> None:
        pass


class _Skim(pickle.Unpickler):
    """Unpickles a torch.save archive's object tree without torch: tensors become stubs, and nothing but
    OrderedDict and torch's own names is looked up, so no code of the file runs."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _Stub
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        return None


def check_state_file(path: str, what: str) -> None:
    """A file torch.load would read as a state_dict of tensors, checked without torch: torch.save's zip archive
    whose object tree is a dict of tensors (or holds one under "model" or "state_dict"), or an older torch's
    pickle. What it is not is said here, in a millisecond, rather than by the training it would start."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except IsADirectoryError:
        raise HwocrError(f"{what}: {path} is a folder, not a checkpoint file") from None
    if head[:1] == b"\x80":
        return  # an older torch's pickle: torch reads it, and says what is wrong with it
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")), None)
            if name is None:
                raise HwocrError(f"{what}: {path} is a zip archive but not one torch.save wrote (no data.pkl)")
            with z.open(name) as f:
                obj = _Skim(f).load()
    except zipfile.BadZipFile:
        raise HwocrError(f"{what}: {path} is not a PyTorch checkpoint (neither the zip archive torch.save writes "
                         "nor a pickle)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise HwocrError(f"{what}: {path} holds something other than tensors ({type(e).__name__}: "
                         f"{str(e)[:80]})") from None
    if isinstance(obj, dict):
        obj = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, _Stub) for v in obj.values()):
        raise HwocrError(f"{what}: {path} holds no state_dict of tensors")


def peek(path: str) -> Reading | None:
    """The reading a checkpoint file carries, read without torch (milliseconds); None when it carries none or is
    not torch.save's zip archive (torch's load then says what it is)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")), None)
            if name is None:
                return None
            with z.open(name) as f:
                obj = _Skim(f).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError):
        return None
    return carried(obj)


def builtin_reading(path: str) -> Reading | None:
    """EasyOCR's own recognizers, known by their md5: korean_g2 and english_g2 read at height 64 with their sets."""
    from models.charset import load_charset
    from models.pretrained import BUILTINS, md5_file

    md5 = md5_file(path)
    for b in BUILTINS.values():
        if b.network is not None and md5 == b.md5:
            return Reading(img_h=b.network.img_h, charset=load_charset(b.charset), charset_name=b.charset,
                           pretrained=b.name, pretrained_digest="md5:" + b.md5)
    return None


def open_model(url: str, s: TrainSettings | None = None, given: set[str] = frozenset(),
               source: str = "the settings") -> tuple[str, Reading]:
    """(a local .pth, how it is read) for a checkpoint or an exported bundle at url (a path or an fsspec URL).

    The reading is the one the model carries (a bundle's yaml, a checkpoint's contract, a built-in's record),
    checked against the settings s the user gave (`given`: the dotted train.* keys they set; `source`: where, for
    the message). A checkpoint without one is read with s, which must then name at least its height and character
    set."""
    from hwocr import storage

    local = storage.local_copy(url, "models")
    if os.path.isdir(local):
        what = f"bundle {url}"
        pth, reading = bundle_reading(local)
    elif not os.path.isfile(local):
        raise HwocrError(f"checkpoint {url}: no such file")
    else:
        what, pth = f"checkpoint {url}", local
        reading = peek(pth) or builtin_reading(pth)
    if reading is None:
        missing = [k for k in REQUIRED if k not in given]
        if s is None or missing:
            raise HwocrError(f"{what} carries no reading contract (hwocr did not write it): say how it is read, "
                             f"{' and '.join(f'--set {k}=...' for k in missing or REQUIRED)} (the height "
                             "it was trained at, its character set) and train.model.* or train.preprocess where they "
                             "are not the defaults, or give --config with the preset it was trained with")
        return pth, Reading.of(s)
    if s is not None and (bad := reading.conflicts(s, given)):
        raise HwocrError(f"{what} says how it is read ({reading.describe()}), but {source} asked for "
                         f"{'; '.join(bad)}: drop them, they cannot change how the model reads")
    return pth, reading


# Bundles: EasyOCR's yaml, and hwocr's section beside its keys.

def bundle_section(r: Reading) -> dict:
    """What a bundle's yaml says under `hwocr:`: the reading less what EasyOCR's own keys already state."""
    return r.model_dump(mode="json", exclude={"network", "img_h", "charset", "preprocess"})


def bundle_reading(folder: str) -> tuple[str, Reading]:
    """(NAME.pth, the reading) of an exported bundle. The reading is EasyOCR's: its yaml's network, height and
    characters, and preprocess easyocr, whatever the model was trained with (EasyOCR reads every crop its way)."""
    import yaml

    from models.easyocr_venv import bundle_name

    name = bundle_name(folder)
    path = os.path.join(folder, name + ".yaml")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise HwocrError(f"{path}: not readable as a bundle's yaml ({type(e).__name__})") from None
    if not isinstance(config, dict) or not {"network_params", "imgH", "character_list"} <= set(config):
        raise HwocrError(f"{path}: not an EasyOCR network yaml (needs network_params, imgH and character_list)")
    params, extra = dict(config["network_params"] or {}), dict(config.get(KEY) or {})
    network = {k: v for k, v in params.items() if k in ModelSettings.model_fields}
    if "img_w" in params:  # TPS's grid
        extra["img_w"] = params["img_w"]
    if "batch_max_length" in params:
        extra["batch_max_length"] = params["batch_max_length"]
    characters = config["character_list"]
    reading = _parse({**extra, "network": network, "img_h": config["imgH"], "preprocess": "easyocr",
                      "charset": "".join(characters) if isinstance(characters, list) else characters}, path)
    return os.path.join(folder, name + ".pth"), reading
