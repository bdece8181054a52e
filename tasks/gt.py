"""assemble_gt: one benchmark-style gt.txt per split ("relative/path<TAB>label"), validated, with a report."""

from __future__ import annotations

from collections import Counter

from prefect.tasks import exponential_backoff

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.charset import charset_digest, load_charset
from synth.coverage import hangul, syllable_coverage
from synth.labels import label_problem
from tasks.render import ShardResult
from tasks.stage import StageResult, retry_transient, stage

CODE_VERSION = hashing.code_version(__file__)


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


def assemble_gt_fn(layout: Layout, split: str, shards: list[ShardResult], needed: dict[str, int], charset: str,
                   max_length: int) -> GtResult:
    """Interleave fonts image by image (index j of every font, fonts in hash order) into the split's gt.txt.

    needed maps font hash -> images wanted from that font; shards may hold more (a longer shard serves).
    """
    allowed = set(load_charset(charset))
    per_font: dict[str, dict[int, tuple[str, str]]] = {}
    names: dict[str, str] = {}
    rejected: Counter = Counter()
    redrawn: dict[str, Counter] = {}
    dropped: Counter = Counter()
    for shard in shards:
        rel_dir = layout.relative(shard.url)
        entries = per_font.setdefault(shard.font_sha, {})
        names[shard.font_sha] = shard.font_name
        want = needed[shard.font_sha]
        for line in storage.read_text(storage.join(shard.url, "labels.tsv")).splitlines():
            rel, label = line.split("\t", 1)
            j = int(rel.rsplit("/", 1)[1].split(".")[0])
            if j < want:
                entries[j] = (f"{rel_dir}/{rel}", label)
        rejected.update(shard.counts["rejected"])
        redrawn.setdefault(shard.font_sha, Counter()).update(shard.counts["rejected"])
        dropped.update(shard.counts["dropped"])
    lines, labels, sample_fonts = [], [], []
    fonts = sorted(per_font)
    per_font_count: Counter = Counter()
    for j in range(max(needed.values(), default=0)):
        for n, sha in enumerate(fonts):
            entry = per_font[sha].get(j)
            if entry is None:
                continue
            problem = label_problem(entry[1], allowed, max_length)
            if problem:
                dropped[problem] += 1
                continue
            lines.append(f"{entry[0]}\t{entry[1]}\n")
            labels.append(entry[1])
            sample_fonts.append(n)
            per_font_count[sha] += 1
    gt_url = layout.gt(split)
    storage.write_text(gt_url, "".join(lines))
    return GtResult(split=split, gt=gt_url, samples=len(lines), dropped=dict(dropped),
                    rejected_and_redrawn=dict(rejected), per_font=dict(per_font_count),
                    redrawn_per_font={sha: dict(c) for sha, c in redrawn.items() if c},
                    syllables=syllable_coverage(labels, hangul(allowed)),
                    image_root=layout.out,
                    shards=len(shards), fonts=[{"sha256": sha, "name": names[sha]} for sha in fonts],
                    sample_fonts=sample_fonts)


assemble_gt = stage(
    name="assemble_gt", code=CODE_VERSION, result=GtResult,
    key=lambda layout, split, shards, needed, charset, max_length: {
        "split": split, "charset": charset_digest(charset), "max_length": max_length,
        "shards": sorted((s.key, s.start) for s in shards), "needed": needed},
    marker=lambda key, layout, split, **_: layout.gt_result(split),
    task_run_name="assemble_gt {split}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)(assemble_gt_fn)
