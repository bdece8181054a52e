"""render_shard: trdg images for one font and one index range (synth/shards.py plans them), rendered on the pool
(synth/pool.py) and written atomically as a shard folder."""

from __future__ import annotations

import concurrent.futures
import math

from pydantic import NonNegativeInt, PositiveInt

from hwocr import interrupt, storage
from hwocr.errors import TransientError
from synth import trdg_driver
from synth.pool import PIECE_IMAGES, POOL, in_dask_worker
from synth.shards import CODE_VERSION, ShardSpec, read_words
from tasks.stage import IO_RETRY, StageInput, StageResult, stage


class ShardResult(StageResult):
    """A rendered shard: the manifest written last in its folder."""

    url: str = ""
    split: str
    font_sha: str
    font_name: str = ""
    start: NonNegativeInt
    stop: PositiveInt
    counts: dict
    files: dict[str, str]

    def complete(self) -> bool:
        return bool(self.url) and storage.exists(storage.join(self.url, trdg_driver.ARCHIVE))


class RenderInput(StageInput):
    spec: ShardSpec

    def reads(self) -> dict:
        return self.spec.reads

    def marker(self, key: str) -> str:
        return storage.join(self.spec.url, "manifest.json")

    def covers(self, done: ShardResult) -> bool:
        # Image j of a font does not depend on where its shard stops: a longer shard serves a shorter request.
        return done.stop >= self.spec.stop


def render_shard_fn(inp: RenderInput, workers: int) -> ShardResult:
    spec = inp.spec
    with storage.staged_dir(spec.url) as tmp:
        job = trdg_driver.RenderJob(
            settings=spec.settings, words=read_words(spec.words_url), first=spec.first, covered=spec.covered,
            split=spec.split,
            font_sha=spec.font_sha, font_path=spec.font_path, start=spec.start, stop=spec.stop, key=spec.key,
            dir=tmp, staged=True,
        )
        if in_dask_worker():  # the cluster is the process pool: render here
            manifest = trdg_driver.write_manifest(job, [trdg_driver.render_range(job)])
            return ShardResult(url=spec.url, font_name=spec.font_name, **manifest)
        POOL.on_total(spec.stop - spec.start)
        # Pieces of a few hundred images keep every core busy to the end, whatever each font costs.
        step = max(PIECE_IMAGES, math.ceil((spec.stop - spec.start) / 4))
        try:
            parts = [POOL.submit(workers, trdg_driver.render_range,
                                 job.model_copy(update={"start": a, "stop": min(a + step, spec.stop)}))
                     for a in range(spec.start, spec.stop, step)]
            manifest = trdg_driver.write_manifest(job, [p.result() for p in parts])
        except (concurrent.futures.process.BrokenProcessPool, concurrent.futures.CancelledError) as e:
            if POOL.stopped:  # the run is being interrupted: fail now, no retry
                raise interrupt.Stopped(f"rendering {spec.url} stopped: the run is being interrupted") from None
            raise TransientError(f"render worker died while rendering {spec.url}: {e}") from e
    return ShardResult(url=spec.url, font_name=spec.font_name, **manifest)


render_shard = stage(
    name="render_shard", code=CODE_VERSION, result=ShardResult,
    task_run_name="render {inp.spec.split} {inp.spec.font_name} [{inp.spec.start}:{inp.spec.stop}]",
    retry_jitter_factor=0.5,
    **IO_RETRY,
)(render_shard_fn)
