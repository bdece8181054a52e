"""Fetch the catalogue's npm fonts: `npm pack PACKAGE@VERSION` (pinned), only the files the catalogue names taken
out of the tarball, each checked against its sha256 and renamed into place, so a file in the cache is always whole
and the pinned one. A font that cannot be fetched is skipped with a warning; a pool that then asks for it fails
with a message naming it (synth.font_pool.check_pool), so the pool never silently changes.

    python -m synth.npm_fonts                       # every npm entry of the bundled catalogue
    python -m synth.npm_fonts --dest DIR --catalogue my_fonts.yaml

The cache is $HWOCR_NPM_FONTS, else ~/.cache/hwocr/fonts/npm; each file lands at DIR/PACKAGE@VERSION/PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from synth.font_pool import FontEntry, FontPoolError, load_catalogue, npm_font_dir

log = logging.getLogger(__name__)

# packer(spec, folder) -> path of the package tarball it wrote into folder
Packer = Callable[[str, str], str]
PACK_TIMEOUT_S = 600


def npm_pack(spec: str, folder: str) -> str:
    """`npm pack spec` into folder (npm keeps its own download cache); the tarball's path."""
    try:
        done = subprocess.run(["npm", "pack", "--silent", "--pack-destination", folder, spec], capture_output=True,
                              text=True, timeout=PACK_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise OSError("npm is not installed") from None
    except subprocess.TimeoutExpired:
        raise OSError(f"npm pack {spec} took more than {PACK_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise OSError(f"npm pack {spec} failed: {last}")
    names = [n for n in done.stdout.split() if n.endswith(".tgz")]
    if not names or not os.path.isfile(os.path.join(folder, names[-1])):
        raise OSError(f"npm pack {spec} wrote no tarball (stdout {done.stdout.strip()!r})")
    return os.path.join(folder, names[-1])


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_fetched(entry: FontEntry, dest: str) -> bool:
    path = os.path.join(dest, entry.file)
    return os.path.isfile(path) and _sha256(path) == entry.sha256


@dataclass
class FetchReport:
    """What fetch() did: files already cached, fetched now, and failed (file: reason)."""

    cached: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"npm fonts: {len(self.fetched)} fetched, {len(self.cached)} already cached, "
                f"{len(self.failed)} failed ({self.seconds:.0f} s)")


def _extract(tgz: str, entries: list[FontEntry], dest: str, report: FetchReport) -> None:
    with tarfile.open(tgz, "r:gz") as tar:
        for e in entries:
            target = os.path.join(dest, e.file)
            try:
                member = tar.getmember(f"package/{e.member}")
                src = tar.extractfile(member) if member.isfile() else None
                if src is None:
                    raise KeyError(e.member)
            except KeyError:
                report.failed[e.file] = f"{e.package}@{e.version} has no file {e.member}"
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd, part = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".part-")
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, src:
                    for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023 - used at once
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != e.sha256:
                    report.failed[e.file] = (f"sha256 {h.hexdigest()} of {e.package}@{e.version}'s {e.member} is not "
                                             f"the catalogue's {e.sha256}")
                    continue
                os.replace(part, target)
                part = ""
                report.fetched.append(e.file)
            finally:
                if part and os.path.exists(part):
                    os.remove(part)


def fetch(entries: list[FontEntry], dest: str | None = None, packer: Packer | None = None) -> FetchReport:
    """Fetch the npm entries (others are ignored) into dest (default npm_font_dir()) with packer (default npm_pack);
    a package or file that fails is logged as a warning and recorded in report.failed, never raised."""
    dest = dest or npm_font_dir()
    packer = packer or npm_pack
    start = time.monotonic()
    report = FetchReport()
    by_spec: dict[str, list[FontEntry]] = {}
    for e in entries:
        if e.source != "npm":
            continue
        if is_fetched(e, dest):
            report.cached.append(e.file)
        else:
            by_spec.setdefault(f"{e.package}@{e.version}", []).append(e)
    for spec, wanted in by_spec.items():
        try:
            os.makedirs(dest, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=dest, prefix=".pack-") as tmp:
                _extract(packer(spec, tmp), wanted, dest, report)
        except (OSError, tarfile.TarError) as e:
            for w in wanted:
                report.failed.setdefault(w.file, f"{spec}: {e}")
    for file, reason in report.failed.items():
        log.warning("npm font %s skipped: %s", file, reason)
    report.seconds = time.monotonic() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synth.npm_fonts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", help="font catalogue YAML (default: the bundled one)")
    parser.add_argument("--dest", help="cache folder (default: $HWOCR_NPM_FONTS or ~/.cache/hwocr/fonts/npm)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a font could not be fetched")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        entries = load_catalogue(args.catalogue)
    except FontPoolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = fetch(entries, args.dest)
    print(report.summary())
    return 1 if args.strict and report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
