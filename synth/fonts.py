"""Font discovery and render-level coverage: a glyph counts as present only if it draws something other
than the font's missing-glyph box."""

from __future__ import annotations

import functools
import os

from PIL import Image, ImageDraw, ImageFont

from hwocr import hashing, storage
from hwocr.errors import HwocrError

FONT_EXTS = (".ttf", ".otf", ".ttc")
HANDWRITING_DIRS = "/usr/share/fonts/truetype"
# Debian's handwriting faces (fonts-nanum-extra, fonts-unfonts-core/extra, fonts-alee).
DEFAULT_FONTS = [
    f"{HANDWRITING_DIRS}/nanum/NanumPen.ttf",
    f"{HANDWRITING_DIRS}/nanum/NanumBrush.ttf",
    f"{HANDWRITING_DIRS}/unfonts-core/UnPilgi.ttf",
    f"{HANDWRITING_DIRS}/unfonts-extra/UnPen.ttf",
    f"{HANDWRITING_DIRS}/unfonts-extra/UnPenheulim.ttf",
    f"{HANDWRITING_DIRS}/alee/EunjinNakseo.ttf",
]
# Plain print faces of the same packages: the regression split, which shows what fine-tuning forgot.
PRINT_FONTS = [
    f"{HANDWRITING_DIRS}/nanum/NanumGothic.ttf",
    f"{HANDWRITING_DIRS}/nanum/NanumMyeongjo.ttf",
    f"{HANDWRITING_DIRS}/nanum/NanumBarunGothic.ttf",
    f"{HANDWRITING_DIRS}/nanum/NanumSquareR.ttf",
    f"{HANDWRITING_DIRS}/unfonts-core/UnDotum.ttf",
    f"{HANDWRITING_DIRS}/unfonts-core/UnBatang.ttf",
]
_PROBE_SIZE = 32
_NOT_A_CHAR = "\U0010fffd"


def _is_font(path: str) -> bool:
    return path.lower().endswith(FONT_EXTS)


def discover_fonts(spec: str | list[str]) -> list[str]:
    """Font URLs from a folder, a glob, a file, or a list of those; sorted, unique."""
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise HwocrError("render.fonts is empty: give a folder, a glob or a list of font files")
    found: list[str] = []
    for item in items:
        fs, path = storage.fs_and_path(item)
        proto = "" if storage.is_local(item) else item.split("://", 1)[0] + "://"
        if any(ch in path for ch in "*?["):
            hits = [p for p in fs.glob(path) if _is_font(p)]
            if not hits:
                raise HwocrError(f"render.fonts: glob {item!r} matches no .ttf/.otf/.ttc file")
        elif fs.isdir(path):
            hits = [p for p in fs.find(path) if _is_font(p)]
            if not hits:
                raise HwocrError(f"render.fonts: folder {item!r} holds no .ttf/.otf/.ttc file")
        elif fs.exists(path):
            if not _is_font(path):
                raise HwocrError(f"render.fonts: {item!r} is not a .ttf, .otf or .ttc file")
            hits = [path]
        else:
            raise HwocrError(f"render.fonts: font file {item!r} does not exist")
        found += [proto + p for p in hits]
    return sorted(set(found))


def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError as e:
        raise HwocrError(f"font {path}: cannot be read as a font ({e})") from None


def _bitmap(font: ImageFont.FreeTypeFont, ch: str) -> tuple:
    left, top, right, bottom = font.getbbox(ch)
    if right <= left or bottom <= top:
        return ()
    img = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(img).text((-left, -top), ch, font=font, fill=255)
    if img.getbbox() is None:
        return ()
    return img.size, img.tobytes()


def inspect_font(path: str, charset: str) -> dict:
    """Which characters of charset the font really draws, with its name; raises for unreadable files."""
    font = load_font(path, _PROBE_SIZE)
    notdef = _bitmap(font, _NOT_A_CHAR)
    covered, missing = [], []
    for ch in charset:
        if ch == " ":
            covered.append(ch)
            continue
        bm = _bitmap(font, ch)
        (covered if bm and bm != notdef else missing).append(ch)
    family, style = font.getname()
    hangul = [c for c in covered if "\uac00" <= c <= "\ud7a3"]
    return {
        "name": f"{family} {style}".strip(),
        "covered": "".join(covered),
        "missing": "".join(missing),
        "hangul": len(hangul),
    }


@functools.lru_cache(maxsize=256)
def _inspect(path: str, sha: str, charset: str) -> dict:
    return inspect_font(path, charset)


def survey(urls: list[str], font_missing: str, charset: str, used: set[str], what: str) -> tuple[list, list]:
    """(kept, skipped): every font hashed once, what it really draws checked against the words used, and
    font_missing applied (error, skip_font, skip_words); a font file twice is kept once."""
    kept, skipped, seen = [], [], set()
    for url in urls:
        try:
            sha = hashing.sha256_url(url)
        except OSError as e:
            raise HwocrError(f"font {url}: cannot be read ({e})") from None
        if sha in seen:
            skipped.append({"url": url, "reason": "same file as another font"})
            continue
        seen.add(sha)
        # A remote font is fetched once into the cache, named by its content.
        path = storage.local_copy(url, "fonts", sha + os.path.splitext(url)[1].lower())
        info = _inspect(path, sha, charset)
        missing = "".join(sorted(used - set(info["covered"])))
        problem = None
        if info["hangul"] == 0:
            problem = f"font {url} ({info['name']}) draws no Hangul"
        elif missing and font_missing != "skip_words":
            problem = (f"font {url} ({info['name']}) cannot draw {len(missing)} characters of the word list: "
                       f"{missing[:40]!r}")
        if problem:
            if font_missing == "error" or info["hangul"] == 0 and font_missing == "skip_words":
                raise HwocrError(problem + " (render.font_missing decides: error, skip_font, skip_words)")
            skipped.append({"url": url, "name": info["name"], "reason": problem})
            continue
        covered = "".join(sorted(used & set(info["covered"])))
        kept.append({"url": url, "path": path, "sha256": sha, "name": info["name"],
                     "covered": covered, "missing": missing})
    if not kept:
        raise HwocrError(f"no usable font among {what}: " + "; ".join(s["reason"] for s in skipped))
    return kept, skipped
