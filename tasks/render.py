"""render_shard: trdg images for one font and one index range, written atomically as a shard folder.

Shard layout: <out>/shards/<split>/<key>/{images.tar, labels.tsv, manifest.json}; images.tar holds <index>.png
and gt.txt names them as <shard>/images.tar/<index>.png (one object per shard on S3, not thousands). Image j of a font
depends only on (settings, word list, font bytes, split, j), so a shard's key leaves out where it stops:
a longer shard serves any shorter request, and adding a font renders only that font's shards.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
import os
import signal
import threading
from fractions import Fraction

from pydantic import BaseModel, NonNegativeInt, PositiveInt

from hwocr import hashing, interrupt, storage
from hwocr.errors import TransientError
from hwocr.layout import Layout
from models.charset import load_charset
from synth import coverage, trdg_driver
from synth.font_pool import largest_remainder
from synth.render_settings import RenderSettings
from tasks.stage import IO_RETRY, StageResult, stage, stage_key

CODE_VERSION = hashing.code_version(trdg_driver.__file__, libraries=("trdg", "PIL", "cv2", "numpy"))
PIECE_IMAGES = 256


class ShardSpec(BaseModel):
    """One render_shard call: a font, a split and an index range, with its content key and URL."""

    split: str
    font_path: str
    font_sha: str
    font_name: str
    covered: str
    first: tuple[str, ...] = ()  # the font's words for images 0, 1, ... (render.min_syllable_draws)
    start: NonNegativeInt
    stop: PositiveInt
    url: str
    words_url: str
    settings: dict
    reads: dict  # what its images depend on (not where the shard stops)

    @property
    def key(self) -> str:
        return stage_key("render_shard", CODE_VERSION, self.reads)


def split_count(n: int, weights: list[float]) -> list[int]:
    """n images over fonts in proportion to weight: largest remainder, ties to the earlier font (equal weights
    give the first n % k fonts one more)."""
    return largest_remainder(n, [Fraction(w) for w in weights], [""] * len(weights))


def plan_shards(settings: RenderSettings, fonts_by_split: dict[str, list[dict]], words: dict,
                layout: Layout) -> list[ShardSpec]:
    """Split every split's images over its fonts (sorted by content hash) by weight, in chunks of count/shards.

    Each split's shards come in waves, every font's first shard, then every font's second, ...: the order the rows of
    gt.txt need them (index j of every font), so packing can follow rendering."""
    specs = []
    for split, n in settings.splits().items():
        wave_start = len(specs)
        pixels = settings.pixel_settings(split)
        fonts = sorted(fonts_by_split[split], key=lambda f: f["sha256"])
        chunk = max(math.ceil(n / settings.shards), settings.min_shard_images)
        counts = split_count(n, [f.get("weight", 1.0) for f in fonts])
        first = first_words(settings, words, fonts, counts, split)
        for font, n_font in zip(fonts, counts, strict=True):
            for start in range(0, n_font, chunk):
                reads = {"pixels": pixels, "words": words["sha256"], "font": font["sha256"],
                         "covered": hashing.digest(font["covered"]), "split": split, "start": start}
                if first.get(font["sha256"]):  # absent otherwise: keys stay as they were
                    reads["first"] = hashing.digest("\n".join(first[font["sha256"]]))
                key = stage_key("render_shard", CODE_VERSION, reads)
                specs.append(ShardSpec(
                    split=split, font_path=font["path"], font_sha=font["sha256"],
                    font_name=font["name"], covered=font["covered"], first=tuple(first.get(font["sha256"], ())),
                    start=start, stop=min(start + chunk, n_font), reads=reads,
                    url=layout.shard(split, key), words_url=words["url"], settings=pixels,
                ))
        specs[wave_start:] = sorted(specs[wave_start:], key=lambda s: s.start)  # stable: fonts stay in hash order
    return specs


def first_words(settings: RenderSettings, words: dict, fonts: list[dict], counts: list[int],
                split: str) -> dict[str, list[str]]:
    """Per font hash, the words its first images draw so that the split holds every syllable the word list uses
    render.min_syllable_draws times (render.train_syllable_draws in train), as far as the split has room."""
    draws = settings.syllable_draws(split)
    if not draws:
        return {}
    cover = coverage.covering_words(list(_read_words(words["url"])), coverage.hangul(load_charset(settings.charset)),
                                    draws)
    dealt, _ = coverage.deal(cover, [(f["sha256"], f["covered"], n) for f, n in zip(fonts, counts, strict=True)])
    return dealt


def font_counts(specs: list[ShardSpec], split: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in specs:
        if s.split == split:
            counts[s.font_sha] = max(counts.get(s.font_sha, 0), s.stop)
    return counts


# --- worker processes -------------------------------------------------------------------------------
# Prefect tasks run on threads and feed one process pool: the thread runner alone is held by the GIL,
# and process task runners boot a Prefect server per worker in ephemeral mode.

class _Pool:
    def __init__(self):
        self.lock = threading.Lock()
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.size = 0
        self.queue = None
        self.listener: threading.Thread | None = None
        self.on_total = lambda n: None
        self.on_advance = lambda n: None
        self.stopped = False  # stop() ended it: no new pool until the next flow warms one

    def get(self, workers: int) -> concurrent.futures.ProcessPoolExecutor:
        with self.lock:
            if self.stopped:
                raise interrupt.Stopped("the render pool was stopped: the run is being interrupted")
            ex = self.executor
            if ex is None or getattr(ex, "_broken", False) or self.size != workers:
                self._shutdown_locked()
                ctx = multiprocessing.get_context("spawn")
                self.queue = ctx.SimpleQueue()
                self.executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=ctx,
                    initializer=trdg_driver.init_worker, initargs=(self.queue,),
                )
                self.size = workers
                self.listener = threading.Thread(target=self._listen, args=(self.queue,), daemon=True)
                self.listener.start()
            return self.executor

    def submit(self, workers: int, fn, *args) -> concurrent.futures.Future:
        """Workers are spawned inside submit. From the main thread (warm(), the flow's) SIGINT is ignored while they
        are: a disposition survives exec and Python then never turns SIGINT into KeyboardInterrupt, so a terminal's
        Ctrl-C, sent to the whole group, cannot interrupt their start-up with a traceback (a Ctrl-C within those
        milliseconds is lost to the parent too: pressed again, it stops the run). Each worker also ignores SIGINT
        from its first step (trdg_driver.init_worker); the parent ends them itself (stop())."""
        if threading.current_thread() is not threading.main_thread():
            return self.get(workers).submit(fn, *args)
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return self.get(workers).submit(fn, *args)
        finally:
            signal.signal(signal.SIGINT, old)

    def warm(self, workers: int) -> None:
        """Start the worker processes now, so their imports overlap with planning."""
        with self.lock:
            self.stopped = False
        for _ in range(workers):
            self.submit(workers, os.getpid)

    def _listen(self, queue) -> None:
        while True:
            n = queue.get()
            if n is None:
                return
            self.on_advance(n)

    def _shutdown_locked(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        if self.queue is not None:
            self.queue.put(None)
            self.listener.join(timeout=5)
            self.queue = None

    def shutdown(self) -> None:
        with self.lock:
            self._shutdown_locked()

    def stop(self) -> None:
        """End the workers now, shards half rendered and all; the tasks waiting on them fail with Stopped (their
        staging folders are removed) and later ones find no pool.

        shutdown(wait=True) would wait for every running shard: minutes. ProcessPoolExecutor has no public way to
        end running work, so its worker processes are terminated from its private _processes table."""
        interrupt.stopping.set()
        with self.lock:
            self.stopped = True
            ex, self.executor = self.executor, None
            if ex is None:
                return
            procs = list((ex._processes or {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=2)
                if p.exitcode is None:
                    p.kill()
            # The progress queue is dropped, not closed: a worker ended mid-put may hold its lock. Its listener is
            # a daemon thread.
            self.queue = self.listener = None


POOL = _Pool()


# Flows call these rather than touch POOL: Dask ships a flow's function by value, with the globals it names, and
# POOL holds locks; module functions travel by reference.
def warm_pool(workers: int) -> None:
    POOL.warm(workers)


def shutdown_pool() -> None:
    POOL.shutdown()


def stop_pool() -> None:
    POOL.stop()


def resolve_workers(settings: RenderSettings) -> int:
    return settings.workers or os.cpu_count() or 1


@functools.lru_cache(maxsize=4)
def _read_words(url: str) -> tuple[str, ...]:
    return tuple(storage.read_text(url).split("\n")[:-1])


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


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def render_shard_fn(spec: ShardSpec, workers: int) -> ShardResult:
    with storage.staged_dir(spec.url) as tmp:
        job = trdg_driver.RenderJob(
            settings=spec.settings, words=_read_words(spec.words_url), first=spec.first, covered=spec.covered,
            split=spec.split,
            font_sha=spec.font_sha, font_path=spec.font_path, start=spec.start, stop=spec.stop, key=spec.key,
            dir=tmp, staged=True,
        )
        if _in_dask_worker():  # the cluster is the process pool: render here
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
    key=lambda spec, workers: spec.reads,
    marker=lambda key, spec, workers: storage.join(spec.url, "manifest.json"),
    # Image j of a font does not depend on where its shard stops: a longer shard serves a shorter request.
    covers=lambda done, spec, workers: done.stop >= spec.stop,
    task_run_name="render {spec.split} {spec.font_name} [{spec.start}:{spec.stop}]",
    retry_jitter_factor=0.5,
    **IO_RETRY,
)(render_shard_fn)
