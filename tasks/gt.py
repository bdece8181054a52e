"""assemble_gt: one benchmark-style gt.txt per split ("relative/path<TAB>label"), validated, with a report
(models/gt_rows.py makes the rows)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prefect.futures import PrefectFuture

from hwocr import hashing, storage
from hwocr.errors import HwocrError
from hwocr.layout import Layout
from models.gt_rows import SplitPlan, SplitRows
from synth.coverage import hangul, syllable_coverage
from tasks.render import ShardResult
from tasks.stage import IO_RETRY, StageInput, StageResult, stage

CODE_VERSION = hashing.code_version(__file__)


class ShardFailed(HwocrError):
    """A shard the rows wait for failed; its own task reports why."""


def finished(split: str, shards: Iterable[ShardResult | PrefectFuture]) -> Iterator[ShardResult]:
    """The shards' results in order, each as soon as it is done: they may be futures still running."""
    for shard in shards:
        if isinstance(shard, PrefectFuture):
            shard.wait()
            state = shard.state
            if not state.is_completed():
                raise ShardFailed(f"{split}: a shard failed ({state.name}); no rows after it")
            shard = shard.result()
        yield shard


class GtResult(StageResult):
    """One split's gt.txt and what went into it; `sample_fonts[i]` indexes `fonts` for line i of gt.txt."""

    split: str
    gt: str
    samples: int
    dropped: dict[str, int]
    rejected_and_redrawn: dict[str, int]
    per_font: dict[str, int]  # font hash -> samples
    redrawn_per_font: dict[str, dict[str, int]] = {}  # font hash -> why images were redrawn with another word -> count
    syllables: dict = {}  # synth.coverage.syllable_coverage of the split's labels
    image_root: str
    shards: int
    fonts: list[dict[str, str]]  # {"sha256", "name"}, in hash order
    sample_fonts: list[int]

    def complete(self) -> bool:
        return storage.exists(self.gt)


class GtInput(StageInput):
    plan: SplitPlan
    layout: Layout

    def reads(self) -> dict:
        return self.plan.reads()

    def marker(self, key: str) -> str:
        return self.layout.gt_result(self.plan.split)


def assemble_gt_fn(inp: GtInput, shards: list[ShardResult]) -> GtResult:
    """Write the split's rows (SplitRows) as its gt.txt."""
    plan, rows = inp.plan, SplitRows(inp.plan, inp.layout)
    lines = [f"{path}\t{label}\n" for _, path, label in rows.follow(finished(plan.split, shards))]
    storage.write_text(plan.gt, "".join(lines))
    return GtResult(split=plan.split, gt=plan.gt, samples=len(lines), dropped=dict(rows.dropped),
                    rejected_and_redrawn=dict(rows.rejected), per_font=dict(rows.per_font),
                    redrawn_per_font={sha: dict(c) for sha, c in rows.redrawn.items() if c},
                    syllables=syllable_coverage(rows.labels, hangul(rows.allowed)),
                    image_root=plan.image_root, shards=rows.shards, fonts=rows.font_list(),
                    sample_fonts=rows.sample_fonts)


assemble_gt = stage(
    name="assemble_gt", code=CODE_VERSION, result=GtResult,
    task_run_name="assemble_gt {inp.plan.split}",
    **IO_RETRY,
)(assemble_gt_fn)
