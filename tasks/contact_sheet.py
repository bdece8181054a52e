"""Contact sheets for people to eyeball a dataset (synth/sheets.py draws them): rendered samples beside their
labels, and every font against every render effect."""

from __future__ import annotations

from hwocr import hashing, storage
from models.lmdb_format import read_gt
from synth import sheets
from tasks.gt import GtResult
from tasks.stage import IO_RETRY, StageResult, stage

CODE_VERSION = hashing.code_version(__file__, libraries=("trdg", "PIL", "cv2", "numpy"))


class SheetResult(StageResult):
    """A picture for people to check by eye."""

    url: str

    def complete(self) -> bool:
        return storage.exists(self.url)


def contact_sheet_fn(gt: GtResult, out_url: str, samples: int = 48, columns: int = 3,
                     label_font: str | None = None) -> SheetResult:
    with storage.reader(gt.image_root) as read:
        shown = [(read(path), label) for _, path, label in read_gt(gt.gt)[:samples]]
    storage.write_bytes(out_url, sheets.contact_sheet(shown, columns, label_font))
    return SheetResult(url=out_url)


def _marker(key: str, out_url: str, **_) -> str:
    return out_url.removesuffix(".png") + ".json"


contact_sheet = stage(
    name="contact_sheet", code=CODE_VERSION, result=SheetResult,
    key=lambda gt, out_url, samples=48, columns=3, label_font=None: {
        "gt": gt.key, "samples": samples, "columns": columns, "label_font": label_font},
    marker=_marker, **IO_RETRY,
)(contact_sheet_fn)


def effects_sheet_fn(fonts: list[dict], words_url: str, pixels: dict, effects: dict, glyph_jitter: dict,
                     out_url: str, seed: int = 0) -> SheetResult:
    words = storage.read_text(words_url).split("\n")[:-1]
    storage.write_bytes(out_url, sheets.effects_sheet(fonts, words, pixels, effects, glyph_jitter, seed))
    return SheetResult(url=out_url)


effects_sheet = stage(
    name="effects_sheet", code=CODE_VERSION, result=SheetResult,
    # The words file is named by its content; fonts by theirs.
    key=lambda fonts, words_url, pixels, effects, glyph_jitter, out_url, seed=0: {
        "fonts": [(f["sha256"], f["name"], f["covered"], bool(f.get("held_out"))) for f in fonts],
        "words": words_url, "pixels": pixels, "effects": effects, "glyph_jitter": glyph_jitter, "seed": seed},
    marker=_marker, **IO_RETRY,
)(effects_sheet_fn)
