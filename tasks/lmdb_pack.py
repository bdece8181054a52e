"""pack_lmdb: the stage that packs a split's gt.txt into deep-text-recognition-benchmark's LMDB
(models/lmdb_format.py), with the font of every sample."""

from __future__ import annotations

from prefect.tasks import exponential_backoff

from hwocr import hashing, storage
from models.lmdb_format import MARKER, PackSettings, pack
from tasks.gt import GtResult
from tasks.stage import StageResult, retry_transient, stage

CODE_VERSION = hashing.code_version(__file__)


class PackResult(StageResult):
    """An LMDB folder, with the font of every sample when gt.txt came from assemble_gt."""

    url: str
    samples: int
    skipped: int
    gt: str
    bytes: int
    fonts: list[dict[str, str]] = []  # {"sha256", "name"}
    sample_fonts: list[int] = []  # index into fonts, per LMDB sample (1-based key i is entry i - 1)

    def complete(self) -> bool:
        return storage.exists(storage.join(self.url, "data.mdb"))


def pack_lmdb_fn(gt: GtResult, lmdb_url: str, settings: PackSettings) -> PackResult:
    packed = pack(gt.gt, gt.image_root, lmdb_url, settings)
    return PackResult(url=lmdb_url, samples=packed["samples"], skipped=packed["skipped"], gt=gt.gt,
                      bytes=packed["bytes"], fonts=gt.fonts,
                      sample_fonts=[gt.sample_fonts[i] for i in packed["kept"]]
                      if len(gt.sample_fonts) == gt.samples else [])


pack_lmdb = stage(
    name="pack_lmdb", code=CODE_VERSION, result=PackResult,
    key=lambda gt, lmdb_url, settings: {"gt": gt.key, "pack": settings.model_dump()},
    marker=lambda key, gt, lmdb_url, settings: storage.join(lmdb_url, MARKER),
    task_run_name="pack_lmdb {lmdb_url}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)(pack_lmdb_fn)
