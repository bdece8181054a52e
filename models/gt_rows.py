"""A rendered split's rows: what they are made of (SplitPlan, known before any shard renders) and the rows in gt.txt's
order as its shards arrive (SplitRows), which gt.txt and the LMDB both follow while the last shards still render."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, PositiveInt

from hwocr import storage
from hwocr.errors import HwocrError
from hwocr.layout import Layout
from models.charset import charset_digest, load_charset
from synth.labels import label_problem
from synth.shards import ShardSpec, font_counts


class SplitPlan(BaseModel):
    """What a split's rows are made of, known before any shard renders: its shards (content key and start), the
    images wanted per font and the label rule. assemble_gt and pack_lmdb both key on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str
    gt: str  # the gt.txt whose line numbers name the rows
    image_root: str
    needed: dict[str, int]  # font hash -> images wanted; a longer shard serves
    shards: list[tuple[str, int]]  # (key, start), sorted
    charset: str
    max_length: PositiveInt

    @classmethod
    def of(cls, layout: Layout, split: str, specs: list[ShardSpec], charset: str, max_length: int) -> SplitPlan:
        return cls(split=split, gt=layout.gt(split), image_root=layout.out, needed=font_counts(specs, split),
                   shards=sorted((s.key, s.start) for s in specs if s.split == split), charset=charset,
                   max_length=max_length)

    def reads(self) -> dict:
        return {"split": self.split, "charset": charset_digest(self.charset), "max_length": self.max_length,
                "shards": self.shards, "needed": self.needed}


class SplitRows:
    """A split's gt.txt rows, in order: index j of every font, fonts in hash order. Row group j is final once every
    font that draws a j-th image has the shard covering it, so rows flow while later shards still render.

    Iterating follow(shards) yields (line number, path, label); the counts fill in as it goes.
    """

    def __init__(self, plan: SplitPlan, layout: Layout):
        self.plan, self.layout = plan, layout
        self.allowed = set(load_charset(plan.charset))
        self.fonts = sorted(plan.needed)
        self.names: dict[str, str] = {}
        self.rejected: Counter = Counter()
        self.redrawn: dict[str, Counter] = {}
        self.dropped: Counter = Counter()
        self.per_font: Counter = Counter()
        self.labels: list[str] = []
        self.sample_fonts: list[int] = []
        self.shards = 0

    def follow(self, shards: Iterable) -> Iterator[tuple[int, str, str]]:
        """shards: render results (url, font_sha, font_name, start, stop, counts), as they finish."""
        needed = self.plan.needed
        entries: dict[str, dict[int, tuple[str, str]]] = {sha: {} for sha in self.fonts}
        ranges: dict[str, dict[int, int]] = {sha: {} for sha in self.fonts}
        covered = dict.fromkeys(self.fonts, 0)
        end = max(needed.values(), default=0)
        j = 0
        for shard in shards:
            self._read(shard, entries)
            sha = shard.font_sha
            ranges[sha][shard.start] = max(ranges[sha].get(shard.start, 0), shard.stop)
            while covered[sha] in ranges[sha]:
                stop = ranges[sha].pop(covered[sha])
                if stop <= covered[sha]:
                    break
                covered[sha] = stop
            while j < end and all(covered[f] > j or needed[f] <= j for f in self.fonts):
                yield from self._group(j, entries)
                j += 1
        if j < end:
            short = next(f for f in self.fonts if covered[f] <= j < needed[f])
            raise HwocrError(f"{self.plan.split}: no shard holds image {j} of font {self.names.get(short, short)}")

    def _read(self, shard, entries: dict[str, dict[int, tuple[str, str]]]) -> None:
        self.shards += 1
        rel_dir = self.layout.relative(shard.url)
        self.names[shard.font_sha] = shard.font_name
        want = self.plan.needed[shard.font_sha]
        mine = entries[shard.font_sha]
        for line in storage.read_text(storage.join(shard.url, "labels.tsv")).splitlines():
            rel, label = line.split("\t", 1)
            j = int(rel.rsplit("/", 1)[1].split(".")[0])
            if j < want:
                mine[j] = (f"{rel_dir}/{rel}", label)
        self.rejected.update(shard.counts["rejected"])
        self.redrawn.setdefault(shard.font_sha, Counter()).update(shard.counts["rejected"])
        self.dropped.update(shard.counts["dropped"])

    def _group(self, j: int, entries: dict[str, dict[int, tuple[str, str]]]) -> Iterator[tuple[int, str, str]]:
        for n, sha in enumerate(self.fonts):
            entry = entries[sha].pop(j, None)
            if entry is None:
                continue
            problem = label_problem(entry[1], self.allowed, self.plan.max_length)
            if problem:
                self.dropped[problem] += 1
                continue
            self.labels.append(entry[1])
            self.sample_fonts.append(n)
            self.per_font[sha] += 1
            yield len(self.labels), entry[0], entry[1]

    def font_list(self) -> list[dict[str, str]]:
        return [{"sha256": sha, "name": self.names.get(sha, sha)} for sha in self.fonts]
