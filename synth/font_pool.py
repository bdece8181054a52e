"""Font pool: the catalogue of Korean fonts (synth/data/korean_fonts.yaml), the train/test split by family
group, per-style sampling weights, the checks that refuse a leaky or broken pool, and a deterministic split
of an image count over fonts (largest_remainder).

    settings = FontPoolSettings(print_ratio=0.2, held_out_groups=["un-pen"])
    pool = select_pool(settings)               # {"train": [PoolFont, ...], "test": [PoolFont, ...]}

Entries come from Debian packages (files under /usr/share/fonts) and npm packages (files fetched by synth.npm_fonts
into ~/.cache/hwocr/fonts/npm, pinned by version and sha256). `pool.sources` picks which sources a pool draws from;
by default the catalogue's `default_sources` (the bundled one: the five Debian packages it started with, so
existing presets select the same fonts).
"""

from __future__ import annotations

import difflib
import importlib.resources
import logging
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from fractions import Fraction
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwocr import hashing, memo, storage
from hwocr.errors import HwocrError
from synth.fonts import FONT_EXTS, inspect_font, reserved_family

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str, *args) -> None:
    """The pool is resolved by the CLI's checks and again by the flow: one warning is enough."""
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning(text)

DEFAULT_ROOT = "/usr/share/fonts/truetype"
BUNDLED_CATALOGUE = str(importlib.resources.files(__package__) / "data" / "korean_fonts.yaml")
MODERN_SYLLABLES = 11172
# Common syllables: a font that draws none of them cannot render Korean words.
HANGUL_PROBE = "가나다라마바사아자차카타파하한글국어이는의에를고"
STYLES = ("handwriting", "print")
SPLITS = ("train", "test")
SOURCE_KINDS = ("debian", "npm")
SHA256_PATTERN = r"^[0-9a-f]{64}$"


def npm_font_dir() -> str:
    """Where synth.npm_fonts puts the npm fonts: $HWOCR_NPM_FONTS, else ~/.cache/hwocr/fonts/npm."""
    return os.environ.get("HWOCR_NPM_FONTS") or os.path.join(storage.CACHE_DIR, "fonts", "npm")


class FontPoolError(HwocrError, ValueError):
    """A font catalogue or pool that cannot be used as asked; the message names the file or entry."""


class FontEntry(BaseModel):
    """One font file of the catalogue."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="debian: font path relative to the pool root (/usr/share/fonts/truetype), or "
                                  "absolute; npm: PACKAGE@VERSION/PATH-IN-PACKAGE, relative to the npm font cache")
    package: str = Field(description="the Debian or npm package that installs the file")
    source: Literal["debian", "npm"] = Field(
        "debian", description="debian: installed by apt-get; npm: fetched by synth.npm_fonts (npm pack)")
    version: str | None = Field(None, description="the package version the entry was measured on (npm: the pinned "
                                                  "version fetched)")
    licence: str | None = Field(None, description="the font's licence (SPDX-like)")
    sha256: str | None = Field(None, pattern=SHA256_PATTERN,
                               description="sha256 of the file; required for npm files, checked before use")
    family: str = Field(description="human name of the face")
    style: Literal["handwriting", "print"] = Field(
        description="handwriting: imitates handwriting (pen, brush, marker); print: everything else")
    family_group: str = Field(description="fonts of one design family, held out together")
    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="relative sampling weight within its style")
    hangul: int = Field(ge=0, le=MODERN_SYLLABLES, description="modern Hangul syllables (of 11,172) the font draws")
    ascii: int | None = Field(None, ge=0, le=94, description="printable ASCII characters (of 94) the font draws")
    exclude: bool = Field(False, description="keep this file out of every pool (give reason)")
    reason: str | None = Field(None, description="why the file is excluded")

    @field_validator("file", "package", "family", "family_group")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("file")
    @classmethod
    def _font_file(cls, v: str) -> str:
        if not v.lower().endswith(FONT_EXTS):
            raise ValueError(f"{v!r} is not a .ttf, .otf, .ttc, .woff or .woff2 file")
        return v

    @model_validator(mode="after")
    def _reason_for_exclude(self) -> FontEntry:
        if self.exclude and not (self.reason and self.reason.strip()):
            raise ValueError("exclude: true needs a reason")
        if self.source == "npm":
            if not self.version or not self.sha256:
                raise ValueError("an npm entry needs version (the pinned package version) and sha256")
            prefix = f"{self.package}@{self.version}/"
            if not self.file.startswith(prefix) or len(self.file) == len(prefix) or ".." in self.file.split("/"):
                raise ValueError(f"an npm entry's file is {prefix}PATH-IN-PACKAGE (got {self.file!r})")
        return self

    @property
    def source_key(self) -> str:
        """debian:PACKAGE or npm:PACKAGE, as pool.sources names it."""
        return f"{self.source}:{self.package}"

    @property
    def member(self) -> str:
        """npm: the file's path inside the package (under the tarball's package/ folder)."""
        return self.file.split("/", 2)[2] if self.package.startswith("@") else self.file.split("/", 1)[1]

    def location(self, root: str = DEFAULT_ROOT) -> str:
        """The absolute path of the file: under root (Debian) or the npm font cache (npm)."""
        base = npm_font_dir() if self.source == "npm" else root
        return os.path.normpath(os.path.join(base, self.file))


class PoolFont(FontEntry):
    """A catalogue entry chosen for a split: its absolute path and its share of that split's images."""

    path: str = Field(description="absolute path of the font file")
    effective_weight: float = Field(ge=0, description="share of the split's images; the shares of a split sum to 1")


NonNegativeWeight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FontPoolSettings(BaseModel):
    """Which fonts render the training and the held-out test images, and how often each is drawn."""

    model_config = ConfigDict(extra="forbid")

    catalogue: str | None = Field(
        None, description="font catalogue YAML (format of synth/data/korean_fonts.yaml); None = the bundled "
                          "catalogue of Korean fonts from Debian and npm packages")
    print_ratio: float = Field(
        0.0, ge=0, le=1, allow_inf_nan=False,
        description="fraction of images drawn with print fonts, the rest with handwriting fonts (applies when a "
                    "split holds both kinds); 0 = handwriting only")
    weights: dict[str, NonNegativeWeight] = Field(
        default_factory=dict,
        description="per-font weight overrides, keyed by file (NanumPen.ttf or nanum/NanumPen.ttf), family "
                    "(Nanum Pen Script) or family_group (un-pen); the most specific key wins; 0 drops the font")
    held_out_groups: list[str] = Field(
        default_factory=list,
        description="family_groups kept out of training and used only for the test split")
    sources: list[str] | None = Field(
        None,
        description="which catalogue entries the pool draws from: all, debian, npm, or one package as "
                    "debian:PACKAGE / npm:PACKAGE; None = the catalogue's default_sources (the bundled "
                    "catalogue: the five Debian packages it started with), or every entry when it names none")

    @field_validator("held_out_groups")
    @classmethod
    def _unique_groups(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(g.strip() for g in v))


# ----------------------------------------------------------------------------------------------------------
# catalogue


def _entry_lines(text: str) -> list[int | None]:
    """1-based line of each item of the top-level `fonts` list (best effort, for error messages)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "fonts" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _pydantic_problems(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", msg))
        elif err["type"] != "missing" and "input" in err:
            msg += f" (got {err['input']!r})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_catalogue(path: str | None = None) -> list[FontEntry]:
    """The validated entries of a font catalogue (None = the bundled one), in file order."""
    return read_catalogue(path)[0]


def read_catalogue(path: str | None = None) -> tuple[list[FontEntry], list[str] | None]:
    """(the validated entries of a font catalogue, in file order; its default_sources or None). Parsed once per
    path, size and modification time."""
    path = path or BUNDLED_CATALOGUE
    try:
        entries, defaults = _read_catalogue(path)
    except FileNotFoundError:
        raise FontPoolError(f"font catalogue {path} does not exist") from None
    except OSError as e:
        raise FontPoolError(f"font catalogue {path} cannot be read: {e}") from None
    return list(entries), None if defaults is None else list(defaults)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@memo.by_file(maxsize=16)
def _read_catalogue(path: str) -> tuple[tuple[FontEntry, ...], tuple[str, ...] | None]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FontPoolError(f"font catalogue {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FontPoolError(f"font catalogue {path} cannot be read: {e}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader, C-accelerated where libyaml is there
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise FontPoolError(f"font catalogue {path}{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict) or not isinstance(data.get("fonts"), list):
        raise FontPoolError(f"font catalogue {path}: expected a mapping with a `fonts:` list of entries")
    unknown = sorted(set(data) - {"fonts", "default_sources"})
    if unknown:
        raise FontPoolError(f"font catalogue {path}: unknown top-level key(s) {', '.join(map(str, unknown))}; "
                            "only `fonts:` and `default_sources:` are read")
    defaults = data.get("default_sources")
    if defaults is not None and (not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults)):
        raise FontPoolError(f"font catalogue {path}: default_sources must be a list of sources (debian:PACKAGE, "
                            f"npm:PACKAGE, debian, npm or all); got {defaults!r}")
    if not data["fonts"]:
        raise FontPoolError(f"font catalogue {path}: the `fonts:` list is empty")
    lines: list[int | None] | None = None
    entries: list[FontEntry] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["fonts"], 1):
        ok = isinstance(raw, dict) and isinstance(raw.get("file"), str)
        if ok and raw["file"].strip() not in seen and reserved_family(
                *(raw.get(k) if isinstance(raw.get(k), str) else None for k in ("family", "family_group", "package")),
                os.path.basename(raw["file"])) is None:
            try:
                entry = FontEntry.model_validate(raw)
            except ValidationError:
                pass
            else:
                seen[entry.file] = i
                entries.append(entry)
                continue
        # something is wrong with this entry: say where (the line numbers take a second parse)
        lines = _entry_lines(text) if lines is None else lines
        line = lines[i - 1] if i - 1 < len(lines) else None
        where = f"font catalogue {path}: entry {i}" + (f" (line {line})" if line else "")
        if not isinstance(raw, dict):
            raise FontPoolError(f"{where}: expected a mapping with file, package, family, style, family_group, "
                                f"hangul; got {raw!r}")
        name = raw.get("file")
        if name:
            where += f" file {name}"
        names = [raw.get(k) if isinstance(raw.get(k), str) else None for k in ("family", "family_group", "package")]
        if (family := reserved_family(*names, os.path.basename(str(name or "")))) is not None:
            raise FontPoolError(f"{where}: {family!r} is a reserved font family (kept for an independent evaluation "
                                "that this project never sees): it may not be in the catalogue")
        try:
            entry = FontEntry.model_validate(raw)
        except ValidationError as e:
            raise FontPoolError(f"{where}: {_pydantic_problems(e)}") from None
        if entry.file in seen:
            raise FontPoolError(f"{where}: listed twice (first as entry {seen[entry.file]})")
        seen[entry.file] = i
        entries.append(entry)
    if defaults is not None:
        try:
            _source_filter(defaults, entries)
        except FontPoolError as e:
            raise FontPoolError(f"font catalogue {path}: default_sources: {e}") from None
    return tuple(entries), None if defaults is None else tuple(defaults)


def _source_filter(sources: Sequence[str], entries: list[FontEntry]) -> Callable[[FontEntry], bool]:
    """A predicate for the entries that `sources` (all, debian, npm, debian:PACKAGE, npm:PACKAGE) selects;
    a source naming no entry is refused."""
    keys = sorted({e.source_key for e in entries})
    kinds: set[str] = set()
    packages: set[str] = set()
    for src in sources:
        s = src.strip()
        if s == "all":
            kinds.update(SOURCE_KINDS)
        elif s in SOURCE_KINDS:
            kinds.add(s)
        elif s in keys:
            packages.add(s)
        else:
            raise FontPoolError(f"{src!r} names no source of the catalogue{_suggest(s, keys)} (all, debian, npm, "
                                "or one of its packages as debian:PACKAGE / npm:PACKAGE)")
    return lambda e: e.source in kinds or e.source_key in packages


# ----------------------------------------------------------------------------------------------------------
# selection


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=3, cutoff=0.5)
        close = [c for c in choices if c.lower() in close]
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _catalogue_name(settings: FontPoolSettings) -> str:
    return settings.catalogue or BUNDLED_CATALOGUE


def pool_entries(settings: FontPoolSettings) -> list[FontEntry]:
    """The catalogue's entries that settings.sources (else the catalogue's default_sources) selects."""
    entries, defaults = read_catalogue(settings.catalogue)
    sources = settings.sources if settings.sources is not None else defaults
    if sources is None:
        return entries
    try:
        keep = _source_filter(sources, entries)
    except FontPoolError as e:
        raise FontPoolError(f"pool.sources: {e}") from None
    chosen = [e for e in entries if keep(e)]
    left = {e.family_group: e.source_key for e in entries if not keep(e)}
    for g in settings.held_out_groups:
        if g in left and not any(e.family_group == g for e in chosen):
            raise FontPoolError(f"held_out_groups: family_group {g!r} comes from {left[g]}, which pool.sources "
                                f"{list(sources)} leaves out; add it (or all) to pool.sources")
    if not chosen:
        raise FontPoolError(f"pool.sources {list(sources)} selects no font of {_catalogue_name(settings)}")
    return chosen


def _check_held_out_names(settings: FontPoolSettings, entries: list[FontEntry]) -> None:
    groups = sorted({e.family_group for e in entries})
    usable = {e.family_group for e in entries if not e.exclude}
    for name in settings.held_out_groups:
        if name not in groups:
            raise FontPoolError(
                f"held_out_groups: {name!r} is not a family_group of font catalogue {_catalogue_name(settings)}"
                f"{_suggest(name, groups)} (groups: {', '.join(groups)})")
        if name not in usable:
            raise FontPoolError(f"held_out_groups: every font of family_group {name!r} is marked exclude: true "
                                f"in {_catalogue_name(settings)}")


def _weight_keys(settings: FontPoolSettings, entries: list[FontEntry]) -> dict[str, tuple[int, str]]:
    """Per file: (specificity, key) of the override that applies to it; unknown keys are refused."""
    chosen: dict[str, tuple[int, str]] = {}
    names: list[str] = []
    for e in entries:
        names += [e.file, os.path.basename(e.file), e.family, e.family_group]
    for key in settings.weights:
        k = key.strip().casefold()
        hit = False
        for e in entries:
            if k in (e.file.casefold(), os.path.basename(e.file).casefold()):
                rank = 3
            elif k == e.family.casefold():
                rank = 2
            elif k == e.family_group.casefold():
                rank = 1
            else:
                continue
            hit = True
            if rank > chosen.get(e.file, (0, ""))[0]:
                chosen[e.file] = (rank, key)
        if not hit:
            raise FontPoolError(
                f"weights: {key!r} names no file, family or family_group of font catalogue "
                f"{_catalogue_name(settings)}{_suggest(key, sorted(set(names)))}")
    return chosen


def _normalize(split: str, fonts: list[tuple[FontEntry, float]], print_ratio: float,
               root: str) -> list[PoolFont]:
    target = {"print": print_ratio, "handwriting": 1.0 - print_ratio}
    total = {s: sum(w for e, w in fonts if e.style == s) for s in STYLES}
    present = [s for s in STYLES if total[s] > 0]
    if not present:
        return []
    if len(present) == 1:
        only = present[0]
        if split == "train" and target[only] == 0:
            other = "handwriting" if only == "print" else "print"
            raise FontPoolError(
                f"font pool: print_ratio={print_ratio} gives {other} fonts all the training images, but no {other} "
                f"font with weight > 0 is left for training (held out, weighted 0 or excluded)")
        if target[only] < 1:
            _warn_once("font pool: the %s split has only %s fonts, so they draw all its images (print_ratio=%s)",
                       split, only, print_ratio)
        share = {only: 1.0}
    else:
        share = target
    out = []
    for e, w in fonts:
        eff = w / total[e.style] * share[e.style] if total[e.style] else 0.0
        if eff <= 0:
            continue
        out.append(PoolFont(**e.model_dump(), path=e.location(root), effective_weight=eff))
    return sorted(out, key=lambda p: p.file)


def select_pool(settings: FontPoolSettings, root: str = DEFAULT_ROOT, *,
                check: bool = True) -> dict[str, list[PoolFont]]:
    """{"train": [...], "test": [...]}: the catalogue's usable fonts, held-out family_groups in "test", the rest in
    "train". Each PoolFont has its absolute path and effective_weight, its share of its split's images: print
    fonts together get print_ratio, handwriting fonts 1 - print_ratio (a split with one kind only gives it all;
    a font whose share is 0 is left out). With check=True (the default) the pool then goes through check_pool.
    """
    entries = pool_entries(settings)
    _check_held_out_names(settings, entries)
    overrides = _weight_keys(settings, entries)
    held = set(settings.held_out_groups)
    split_fonts: dict[str, list[tuple[FontEntry, float]]] = {s: [] for s in SPLITS}
    for e in entries:
        if e.exclude:
            continue
        w = settings.weights[overrides[e.file][1]] if e.file in overrides else e.weight
        if w > 0:
            split_fonts["test" if e.family_group in held else "train"].append((e, w))
    pool = {s: _normalize(s, split_fonts[s], settings.print_ratio, root) for s in SPLITS}
    if not pool["train"]:
        raise FontPoolError(f"font pool: no font is left for training in {_catalogue_name(settings)} "
                            "(all held out, weighted 0 or excluded)")
    for g in settings.held_out_groups:
        if not any(p.family_group == g for p in pool["test"]):
            _warn_once("font pool: held-out family_group %r draws no test images (weight 0 or print_ratio)", g)
    if check:
        check_pool(pool, settings, entries)
    return pool


# ----------------------------------------------------------------------------------------------------------
# checks


def font_sha256(path: str) -> str:
    """sha256 of the font file's content (hashed once per path, size, time and inode)."""
    return hashing.sha256_url(path)


@memo.by_file(maxsize=512)
def probe_hangul(path: str, probe: str = HANGUL_PROBE) -> int:
    """How many of the probe syllables the font really draws (render-level, see synth.fonts.inspect_font)."""
    return inspect_font(path, probe)["hangul"]


T = TypeVar("T")


def leak(train: Sequence[T], test: Sequence[T], family: Callable[[T], str | None], content: Callable[[T], str],
         held: Collection[str] = ()) -> tuple[str, T, T | None] | None:
    """The first training font that would leak into the test score, as ("family", train font, a test font of its
    family or None for a group in held) or ("content", train font, test font with the same bytes); None if none.
    family(font) is None for a font of no known family."""
    test_family: dict[str, T] = {}
    for t in test:
        if (g := family(t)) is not None:
            test_family.setdefault(g, t)
    for p in train:
        g = family(p)
        if g is not None and (g in test_family or g in held):
            return "family", p, test_family.get(g)
    test_content: dict[str, T] = {}
    for t in test if train else ():  # hashing only when there is something to compare
        test_content.setdefault(content(t), t)
    for p in train:
        if (twin := test_content.get(content(p))) is not None:
            return "content", p, twin
    return None


def check_pool(pool: Mapping[str, Sequence[PoolFont]], settings: FontPoolSettings | None = None,
               catalogue: list[FontEntry] | None = None, *, probe: str = HANGUL_PROBE) -> None:
    """Refuse a pool that would leak held-out fonts into training or render broken images; FontPoolError names
    the font file. Checks: held_out_groups names exist (with settings), every file exists, no family_group is in
    both splits (nor, with settings, a held-out group in training), no training file has the content (sha256)
    of a test file, and every font draws at least one of the probe syllables.
    """
    unknown = sorted(set(pool) - set(SPLITS))
    if unknown:
        raise FontPoolError(f"font pool: unknown split(s) {', '.join(unknown)}; expected train and test")
    train, test = list(pool.get("train", [])), list(pool.get("test", []))
    if settings is not None:
        _check_held_out_names(settings, catalogue if catalogue is not None else load_catalogue(settings.catalogue))

    for p in train + test:
        if not os.path.isfile(p.path):
            how = (f"fetch it with `python -m synth.npm_fonts` (scripts/bootstrap.sh runs it; npm package "
                   f"{p.package}@{p.version})" if p.source == "npm"
                   else f"install it with `apt-get install {p.package}`")
            raise FontPoolError(
                f"font file {p.path} does not exist (catalogue file {p.file}, family_group {p.family_group}); "
                f"{how} or drop it from the pool")
        if p.sha256 and font_sha256(p.path) != p.sha256:
            raise FontPoolError(
                f"font file {p.path} has sha256 {font_sha256(p.path)}, not the catalogue's {p.sha256} "
                f"(catalogue file {p.file}, {p.source_key}" + (f"@{p.version}" if p.version else "") + "): "
                "another version or a damaged copy; fetch it again (python -m synth.npm_fonts) or fix the catalogue")

    held = set(settings.held_out_groups) if settings is not None else set()
    found = leak(train, test, lambda p: p.family_group, lambda p: font_sha256(p.path), held)
    if found and found[0] == "family":
        p = found[1]
        raise FontPoolError(
            f"held-out family_group {p.family_group!r} is also in training: font file {p.path}; "
            "a held-out group must be kept out of training entirely")
    if found:
        _, p, twin = found
        raise FontPoolError(
            f"training font file {p.path} has the same content (sha256 {font_sha256(p.path)[:12]}) as held-out "
            f"test font file {twin.path} (family_group {twin.family_group!r}); the test font would leak into "
            "training")

    for p in train + test:
        if probe_hangul(p.path, probe) == 0:
            raise FontPoolError(
                f"font file {p.path} is tagged {p.style} but draws none of the Hangul probe syllables "
                f"{probe!r} (it only draws the missing-glyph box): it lacks Hangul")


def check_held_out_families(train: list[dict], test: list[dict], catalogue: str | None = None) -> None:
    """A held-out font whose family (by the font catalogue) or file content is also in training would inflate the
    test score: refuse it."""
    group = {os.path.realpath(e.location()): e.family_group for e in load_catalogue(catalogue)}
    found = leak(train, test, lambda f: group.get(os.path.realpath(f["path"])), lambda f: f["sha256"])
    if found:
        _, twin, f = found
        how = "the same file" if twin["sha256"] == f["sha256"] else "a font of the same family"
        raise HwocrError(f"held-out font {f['url']} ({f['name']}) is {how} as training font {twin['url']} "
                         f"({twin['name']}): its test score would be inflated; hold out the whole family")


# ----------------------------------------------------------------------------------------------------------
# splitting a count over fonts


def largest_remainder(total: int, weights: list[Fraction], names: list[str]) -> list[int]:
    """total over weights by largest remainder: exact sums, ties by name, then by position."""
    wsum = sum(weights)
    if total == 0 or wsum == 0:
        return [0] * len(weights)
    quotas = [total * w / wsum for w in weights]
    counts = [math.floor(q) for q in quotas]
    left = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), names[i], i))
    for i in order[:left]:
        counts[i] += 1
    return counts


__all__ = [
    "BUNDLED_CATALOGUE", "DEFAULT_ROOT", "HANGUL_PROBE", "FontEntry", "FontPoolError", "FontPoolSettings", "PoolFont",
    "check_held_out_families", "check_pool", "font_sha256", "largest_remainder", "leak", "load_catalogue",
    "npm_font_dir", "pool_entries", "probe_hangul", "read_catalogue", "select_pool",
]
