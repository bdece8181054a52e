"""pack_lmdb: the stage that packs a split's rows into deep-text-recognition-benchmark's LMDB
(models/lmdb_format.py), with the font of every sample. It follows the split's shards as they finish, so packing
runs behind rendering instead of after the last shard."""

from __future__ import annotations

from collections.abc import Iterable

from prefect.futures import PrefectFuture

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.gt_rows import SplitPlan, SplitRows
from models.lmdb_format import MARKER, PackSettings, pack_rows
from tasks.gt import finished
from tasks.render import ShardResult
from tasks.stage import IO_RETRY, StageResult, stage

CODE_VERSION = hashing.code_version(__file__)


class PackResult(StageResult):
    """An LMDB folder, with the font of every sample when its rows came from render shards."""

    url: str
    samples: int
    skipped: int
    gt: str
    bytes: int
    fonts: list[dict[str, str]] = []  # {"sha256", "name"}
    sample_fonts: list[int] = []  # index into fonts, per LMDB sample (1-based key i is entry i - 1)

    def complete(self) -> bool:
        return storage.exists(storage.join(self.url, "data.mdb"))


def pack_lmdb_fn(plan: SplitPlan, layout: Layout, shards: Iterable[ShardResult | PrefectFuture], lmdb_url: str,
                 settings: PackSettings) -> PackResult:
    """Pack the split's rows (SplitRows, the lines of the gt.txt that assemble_gt writes) in shard order: shards
    may be futures still running, in wave order (every font's first shard, then the seconds, ...)."""
    rows = SplitRows(plan, layout)
    packed = pack_rows(rows.follow(finished(plan.split, shards)), sum(plan.needed.values()), plan.gt, plan.image_root,
                       lmdb_url, settings)
    return PackResult(url=lmdb_url, samples=packed["samples"], skipped=packed["skipped"], gt=plan.gt,
                      bytes=packed["bytes"], fonts=rows.font_list(),
                      sample_fonts=[rows.sample_fonts[i] for i in packed["kept"]])


pack_lmdb = stage(
    name="pack_lmdb", code=CODE_VERSION, result=PackResult,
    key=lambda plan, layout, shards, lmdb_url, settings: {"rows": plan.reads(), "pack": settings.model_dump()},
    marker=lambda key, plan, layout, shards, lmdb_url, settings: storage.join(lmdb_url, MARKER),
    task_run_name="pack_lmdb {lmdb_url}",
    **IO_RETRY,  # a failed shard (ShardFailed) is not packing's to retry
)(pack_lmdb_fn)
