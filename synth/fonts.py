"""Font discovery and render-level coverage: a glyph counts as present only if it draws something other
than the font's missing-glyph box."""

from __future__ import annotations

import functools
import os
import re

from PIL import Image, ImageDraw, ImageFont

from hwocr import hashing, storage
from hwocr.errors import HwocrError

FONT_EXTS = (".ttf", ".otf", ".ttc", ".woff2", ".woff")  # FreeType (Pillow's wheels) reads woff and woff2
# Handwriting families kept for an independent evaluation the project never sees: never fetched, rendered or trained
# with. A catalogue entry or a render.fonts path naming one is refused (case, spaces, dashes and underscores ignored).
RESERVED_FAMILIES = ("Gaegu", "East Sea Dokdo", "Gamja Flower", "Single Day", "Cute Font", "Dokdo", "Poor Story")
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


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-./@]+", "", name).casefold()


def reserved_family(*names: str | None) -> str | None:
    """The reserved family (RESERVED_FAMILIES) that one of names (a family, a file name, a path, a package) names,
    else None: "gamja-flower", "GamjaFlower_400Regular.ttf" and "@fontsource/gamja-flower" all name Gamja Flower."""
    for name in names:
        if not name:
            continue
        squashed = _squash(name)
        for family in RESERVED_FAMILIES:
            if _squash(family) in squashed:
                return family
    return None


def refuse_reserved(what: str, *names: str | None) -> None:
    """Raise HwocrError naming `what` when one of names is a reserved family."""
    family = reserved_family(*names)
    if family is not None:
        raise HwocrError(f"{what}: {family!r} is a reserved font family (kept for an independent evaluation that "
                         "this project never sees): it is never rendered or trained with")


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
                raise HwocrError(f"render.fonts: glob {item!r} matches no .ttf/.otf/.ttc file (nor .woff/.woff2)")
        elif fs.isdir(path):
            hits = [p for p in fs.find(path) if _is_font(p)]
            if not hits:
                raise HwocrError(f"render.fonts: folder {item!r} holds no .ttf/.otf/.ttc file (nor .woff/.woff2)")
        elif fs.exists(path):
            if not _is_font(path):
                raise HwocrError(f"render.fonts: {item!r} is not a .ttf, .otf, .ttc, .woff or .woff2 file")
            hits = [path]
        else:
            raise HwocrError(f"render.fonts: font file {item!r} does not exist")
        for p in hits:
            refuse_reserved(f"render.fonts: font file {proto + p}", os.path.basename(p))
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
    """Which characters of charset the font really draws, with its name; raises for unreadable files.

    A character is drawn when its glyph has ink that is not the font's missing-glyph box, both as the renderer
    shapes it (raqm, where Pillow has it) and laid out plainly, glyph by glyph: raqm assembles a syllable the font
    lacks from conjoining jamo (Orbit draws 2,780 syllables, not 11,172), and an empty glyph draws nothing."""
    font = load_font(path, _PROBE_SIZE)
    plain = ImageFont.truetype(path, _PROBE_SIZE, layout_engine=ImageFont.Layout.BASIC)
    notdef, plain_notdef = _bitmap(font, _NOT_A_CHAR), _bitmap(plain, _NOT_A_CHAR)
    covered, missing = [], []
    for ch in charset:
        if ch == " ":
            covered.append(ch)
            continue
        bm = _bitmap(font, ch)
        drawn = bool(bm) and bm != notdef
        if drawn and font.layout_engine != ImageFont.Layout.BASIC:
            bm = _bitmap(plain, ch)
            drawn = bool(bm) and bm != plain_notdef
        (covered if drawn else missing).append(ch)
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
        refuse_reserved(f"font {url} ({info['name']})", info["name"])
        missing = "".join(sorted(used - set(info["covered"])))
        problem = None
        if info["hangul"] == 0:
            problem = f"font {url} ({info['name']}) draws no Hangul"
        elif missing and font_missing != "skip_words":
            problem = (f"font {url} ({info['name']}) cannot draw {len(missing)} characters of the word list: "
                       f"{missing[:40]!r}")
        if problem:
            if font_missing == "error" or info["hangul"] == 0 and font_missing == "skip_words":
                advice = ("take it out of the fonts, or set render.font_missing=skip_font to leave it out"
                          if info["hangul"] == 0 else "set render.font_missing=skip_font to leave it out, or "
                          "skip_words to draw only the words it can")
                raise HwocrError(f"{problem} (render.font_missing is {font_missing}): {advice}")
            skipped.append({"url": url, "name": info["name"], "reason": problem})
            continue
        covered = "".join(sorted(used & set(info["covered"])))
        kept.append({"url": url, "path": path, "sha256": sha, "name": info["name"],
                     "covered": covered, "missing": missing})
    if not kept:
        raise HwocrError(f"no usable font among {what}: " + "; ".join(s["reason"] for s in skipped))
    return kept, skipped


# Labels on the contact sheets and failure grids: a font that draws Hangul, else the given one, else Pillow's.
LABEL_FONTS = [
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
]


def caption_font(size: int, fallback: str | None):
    for path in LABEL_FONTS + ([fallback] if fallback else []):
        if path and os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()
