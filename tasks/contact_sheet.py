"""Contact sheets for people to eyeball a dataset (synth/sheets.py draws them): rendered samples beside their
labels, and every font against every render effect."""

from __future__ import annotations

from hwocr import hashing, storage
from models.lmdb_format import read_gt
from synth import sheets
from synth.effects import CRAFT_MARGINS
from tasks.gt import GtResult
from tasks.stage import IO_RETRY, StageInput, StageResult, stage

CODE_VERSION = hashing.code_version(__file__, libraries=("trdg", "PIL", "cv2", "numpy"), data=(str(CRAFT_MARGINS),))


class SheetResult(StageResult):
    """A picture for people to check by eye."""

    url: str

    def complete(self) -> bool:
        return storage.exists(self.url)


class _Sheet(StageInput):
    out_url: str

    def marker(self, key: str) -> str:
        return self.out_url.removesuffix(".png") + ".json"


class ContactSheetInput(_Sheet):
    gt: GtResult
    samples: int = 48
    columns: int = 3
    label_font: str | None = None

    def reads(self) -> dict:
        return {"gt": self.gt.key, "samples": self.samples, "columns": self.columns, "label_font": self.label_font}


def contact_sheet_fn(inp: ContactSheetInput) -> SheetResult:
    with storage.reader(inp.gt.image_root) as read:
        shown = [(read(path), label) for _, path, label in read_gt(inp.gt.gt)[:inp.samples]]
    storage.write_bytes(inp.out_url, sheets.contact_sheet(shown, inp.columns, inp.label_font))
    return SheetResult(url=inp.out_url)


contact_sheet = stage(name="contact_sheet", code=CODE_VERSION, result=SheetResult, **IO_RETRY)(contact_sheet_fn)


class EffectsSheetInput(_Sheet):
    fonts: list[dict]
    words_url: str
    pixels: dict
    effects: dict
    glyph_jitter: dict
    seed: int = 0

    def reads(self) -> dict:  # the words file is named by its content; fonts by theirs
        return {"fonts": [(f["sha256"], f["name"], f["covered"], bool(f.get("held_out"))) for f in self.fonts],
                **self.model_dump(include={"pixels", "effects", "glyph_jitter", "seed"}), "words": self.words_url}


def effects_sheet_fn(inp: EffectsSheetInput) -> SheetResult:
    words = storage.read_text(inp.words_url).split("\n")[:-1]
    storage.write_bytes(inp.out_url, sheets.effects_sheet(inp.fonts, words, inp.pixels, inp.effects,
                                                          inp.glyph_jitter, inp.seed))
    return SheetResult(url=inp.out_url)


effects_sheet = stage(name="effects_sheet", code=CODE_VERSION, result=SheetResult, **IO_RETRY)(effects_sheet_fn)
