"""import_real: one of the user's real sources -> an LMDB per split under <out>/real/<name>/, keyed on the
source's content (models/sources.py), so one edited label re-packs that source alone."""

from __future__ import annotations

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.lmdb_format import MARKER, PackSettings
from models.sources import RealSettings, SourceSettings
from tasks.stage import IO_RETRY, StageInput, StageResult, stage

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


class SourceInput(StageInput):
    layout: Layout
    source: SourceSettings
    real: RealSettings
    charset: str
    batch_max_length: int
    pack: PackSettings
    digest: str  # the source's content (models/sources.py:source_digest)

    def reads(self) -> dict:
        from models.charset import charset_digest

        return {"source": self.digest, "split": self.real.model_dump(mode="json", include={
                    "seed", "train_fraction", "val_fraction", "max_dropped"}),
                "charset": charset_digest(self.charset), "batch_max_length": self.batch_max_length,
                "pack": self.pack.model_dump()}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.real(self.source.name), REPORT)


def import_real_fn(inp: SourceInput, *, key: str) -> SourceResult:
    from models.charset import load_charset
    from models.sources import import_source

    report = import_source(inp.source, inp.real, load_charset(inp.charset), inp.batch_max_length,
                           inp.layout.real(inp.source.name), inp.pack)
    for split, row in report["splits"].items():  # what lmdb_digest reads: training keys on it
        storage.write_json(storage.join(row["lmdb"], MARKER), {"key": hashing.digest([key, split])})
    return SourceResult(**report)


import_real = stage(name="import_real", code=CODE_VERSION, result=SourceResult,
                    task_run_name="import_real {inp.source.name}", **IO_RETRY)(import_real_fn)
