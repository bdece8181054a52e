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
from tasks.stage import IO_RETRY, StageInput, StageResult, stage

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


class PackInput(StageInput):
    plan: SplitPlan
    layout: Layout
    lmdb_url: str
    settings: PackSettings

    def reads(self) -> dict:
        return {"rows": self.plan.reads(), "pack": self.settings.model_dump()}

    def marker(self, key: str) -> str:
        return storage.join(self.lmdb_url, MARKER)


def pack_lmdb_fn(inp: PackInput, shards: Iterable[ShardResult | PrefectFuture]) -> PackResult:
    """Pack the split's rows (SplitRows, the lines of the gt.txt that assemble_gt writes) in shard order: shards
    may be futures still running, in wave order (every font's first shard, then the seconds, ...)."""
    plan, rows = inp.plan, SplitRows(inp.plan, inp.layout)
    packed = pack_rows(rows.follow(finished(plan.split, shards)), sum(plan.needed.values()), plan.gt, plan.image_root,
                       inp.lmdb_url, inp.settings)
    return PackResult(url=inp.lmdb_url, samples=packed["samples"], skipped=packed["skipped"], gt=plan.gt,
                      bytes=packed["bytes"], fonts=rows.font_list(),
                      sample_fonts=[rows.sample_fonts[i] for i in packed["kept"]])


pack_lmdb = stage(
    name="pack_lmdb", code=CODE_VERSION, result=PackResult,
    task_run_name="pack_lmdb {inp.lmdb_url}",
    **IO_RETRY,  # a failed shard (ShardFailed) is not packing's to retry
)(pack_lmdb_fn)
