"""import_real: one of the user's real sources -> an LMDB per split under <out>/real/<name>/, keyed on the
source's content (models/sources.py), so one edited label re-packs that source alone."""

from __future__ import annotations

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.lmdb_format import MARKER, PackSettings
from models.sources import RealSettings, SourceSettings
from tasks.stage import IO_RETRY, StageResult, stage

CODE_VERSION = hashing.code_version(__file__)
REPORT = "source.json"


class SourceResult(StageResult):
    """A real source packed: samples and groups per split (and its pages, for readtext), drops by reason."""

    name: str
    format: str
    url: str
    samples: int
    dropped: dict[str, int]
    splits: dict[str, dict]  # split -> {"lmdb", "samples", "groups"[, "pages"]}

    def complete(self) -> bool:
        return all(storage.exists(storage.join(s["lmdb"], "data.mdb")) for s in self.splits.values())

    def lmdb(self, split: str) -> str | None:
        return self.splits[split]["lmdb"] if split in self.splits else None


def import_real_fn(layout: Layout, source: SourceSettings, real: RealSettings, charset: str, batch_max_length: int,
                   pack: PackSettings, digest: str, *, key: str) -> SourceResult:
    from models.charset import load_charset
    from models.sources import import_source

    report = import_source(source, real, load_charset(charset), batch_max_length, layout.real(source.name), pack)
    for split, row in report["splits"].items():  # what lmdb_digest reads: training keys on it
        storage.write_json(storage.join(row["lmdb"], MARKER), {"key": hashing.digest([key, split])})
    return SourceResult(**report)


def _reads(layout, source, real, charset, batch_max_length, pack, digest) -> dict:
    from models.charset import charset_digest

    return {"source": digest, "split": real.model_dump(mode="json", include={"seed", "train_fraction",
                                                                             "val_fraction", "max_dropped"}),
            "charset": charset_digest(charset), "batch_max_length": batch_max_length, "pack": pack.model_dump()}


import_real = stage(
    name="import_real", code=CODE_VERSION, result=SourceResult, key=_reads,
    marker=lambda key, layout, source, **_: storage.join(layout.real(source.name), REPORT),
    task_run_name="import_real {source.name}", **IO_RETRY,
)(import_real_fn)
