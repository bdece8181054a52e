"""The training loader alone: samples/s in-process and with 1, 2 and all worker processes, against the demand of a
training step on the same machine (the anchor).

The data are trdg renders of the bundled words at the seed's settings, read as the seed trains (`preprocess: pad`,
80x100, batch 192). Each loader row decodes --batches batches after a warm-up of one batch per worker, whose time
(the workers' start-up) is printed apart. The step row is a bare forward, CTC loss, backward and Adadelta step of
the default network on a batch already in memory, with every core; its samples/s is what the loop asks of the
loader, and the loader's share is that demand over the loader's rate (the step time the loader would take if it ran
in series). The ceiling row runs two in-process loaders in two processes at once, one thread each, with no
hand-off: what two decoding processes get from this machine, so it says how much of the gap from 2x is the
DataLoader's and how much the machine's.

    .venv/bin/python bench/loader.py [--batches 48] [--repeat 3] [--steps 3] [--augment]

With --real DIR (a stand-in set, `hwocr scans --out DIR`): mixing instead. The set's pages are packed as a real
source (models/sources.py) and the in-process loader draws 30% of each batch from it and 70% from the renders,
against the renders alone (the anchor); the row says what mixing adds to a training step (the step's compute from
the same run, plus the loader's time per batch).

    .venv/bin/python bench/loader.py --real /tmp/standin [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _timed(loader, warm: int, batches: int, batch: int, before_clock=lambda: None) -> tuple[float, float]:
    """(samples/s over `batches` batches after `warm` warm-up batches, seconds of the warm-up)."""
    start = time.perf_counter()
    for _ in range(warm):
        next(loader)
    first = time.perf_counter() - start
    before_clock()
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start), first


def loader_rate(data, batch: int, workers: int, batches: int, augment) -> tuple[float, float]:
    """(samples/s over `batches` batches after the warm-up, seconds of the warm-up): the warm-up is one batch from
    each worker, so that every worker has started (imported torch, opened the LMDB) before the clock runs."""
    from models.data import MixedLoader

    loader = MixedLoader([data], [1.0], batch, seed=1, workers=workers, augment=augment)
    try:
        return _timed(loader, max(1, workers), batches, batch)
    finally:
        loader.close()


def _alone(data, batch: int, batches: int, barrier, results) -> None:
    """One of the independent processes: an in-process loader on one thread, as a DataLoader worker runs."""
    import torch

    torch.set_num_threads(1)
    from models.data import MixedLoader

    loader = MixedLoader([data], [1.0], batch, seed=1)
    results.put(_timed(loader, 1, batches, batch, before_clock=barrier.wait)[0])


def independent_rate(data, batch: int, batches: int, procs: int) -> float:
    """Samples/s of `procs` in-process loaders in as many processes at once, started together: what the machine
    gives `procs` decoding processes with no hand-off at all, the ceiling of `procs` workers."""
    import multiprocessing

    from models.data import WORKER_CONTEXT

    ctx = multiprocessing.get_context(WORKER_CONTEXT)
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    children = [ctx.Process(target=_alone, args=(data, batch, batches, barrier, results)) for _ in range(procs)]
    for c in children:
        c.start()
    rates = [results.get(timeout=600) for _ in children]
    for c in children:
        c.join()
    return sum(rates)


def mix_rows(data, real_dir: str, tmp: str, args) -> None:
    """The renders alone against 70% renders and 30% real crops, in-process; what that adds to a training step."""
    import torch

    from bench.train import bare_rate
    from models.charset import load_charset
    from models.data import LmdbDataset, MixedLoader
    from models.lmdb_format import PackSettings
    from models.sources import RealSettings, SourceSettings, import_source

    s = SourceSettings(name="bench", url=os.path.join(real_dir, "pages"), split="train")
    report = import_source(s, RealSettings(sources=[s]), load_charset("korean_g2"), 25, os.path.join(tmp, "real"),
                           PackSettings())
    real = LmdbDataset(report["splits"]["train"]["lmdb"], load_charset("korean_g2"), mode="pad")
    rows: dict[str, list[float]] = {"renders alone (anchor)": [], "70% renders, 30% real crops": []}
    for _ in range(args.repeat):
        for name in rows:
            sets, ratio = ([data], [1.0]) if name.startswith("renders") else ([data, real], [0.7, 0.3])
            loader = MixedLoader(sets, ratio, args.batch, seed=1)
            try:
                rows[name].append(_timed(loader, 1, args.batches, args.batch)[0])
            finally:
                loader.close()
    torch.set_num_threads(os.cpu_count() or 1)
    demand = bare_rate(data, args.batch, args.steps)
    best = {name: max(r) for name, r in rows.items()}
    print(f"mixing, batch {args.batch}, 80x100 (pad), in-process, {args.batches} timed batches, best of "
          f"{args.repeat}; {len(real)} real crops from {real_dir}")
    print("| loader | samples/s | vs anchor | a training step, loader included |\n|---|---:|---:|---:|")
    step = {name: 1 / demand + 1 / rate for name, rate in best.items()}  # seconds a sample: compute, then loading
    anchor = "renders alone (anchor)"
    for name, rate in best.items():
        print(f"| {name} | {rate:.0f} | {rate / best[anchor]:.2f}x | {1000 * step[name]:.2f} ms/sample, "
              f"{100 * (step[name] / step[anchor] - 1):+.1f}% |")
    print(f"| training step, {os.cpu_count()} threads, compute only | {demand:.1f} | | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=192)
    p.add_argument("--batches", type=int, default=48, help="timed batches per loader row")
    p.add_argument("--steps", type=int, default=3, help="timed training steps of the anchor")
    p.add_argument("--images", type=int, default=1152, help="rendered images in the LMDB")
    p.add_argument("--augment", action="store_true", help="every train.augment effect on (default probability)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each row prints its best")
    p.add_argument("--real", help="a stand-in set (hwocr scans): time mixing real crops into the renders instead")
    args = p.parse_args()

    import torch

    from bench.train import bare_rate, make_lmdb
    from models.charset import load_charset
    from models.data import WORKER_CONTEXT, LmdbDataset
    from synth.effects import EffectsSettings, augmenter

    cores = os.cpu_count() or 1
    augment = augmenter(EffectsSettings.all_on()) if args.augment else None
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-loader-", dir=ROOT) as tmp:
        data = LmdbDataset(make_lmdb(tmp, args.images), load_charset("korean_g2"), mode="pad")
        if args.real:
            mix_rows(data, args.real, tmp, args)
            return
        # Interleaved rounds, the best of each row: this machine's speed drifts by tens of percent over minutes,
        # which one round would read as a difference between rows.
        runs: dict[int, list[tuple[float, float]]] = {w: [] for w in sorted({0, 1, 2, cores})}
        ceilings = []
        for _ in range(args.repeat):
            for w in runs:
                runs[w].append(loader_rate(data, args.batch, w, args.batches, augment))
            if not augment:
                ceilings.append(independent_rate(data, args.batch, args.batches, 2))
        rows = {w: max(r) for w, r in runs.items()}
        ceiling = max(ceilings) if ceilings else None
        torch.set_num_threads(cores)
        demand = bare_rate(data, args.batch, args.steps)
    print(f"loader, batch {args.batch}, 80x100 (pad){', augment all on' if augment else ''}, {args.batches} timed "
          f"batches, best of {args.repeat}, {cores} cores, workers by {WORKER_CONTEXT}")
    print("| loader | samples/s | vs 1 worker | start-up | step's demand / loader |\n|---|---:|---:|---:|---:|")
    for w, (rate, first) in rows.items():
        name = "in-process (0 workers)" if w == 0 else f"{w} worker{'s' if w > 1 else ''}"
        print(f"| {name} | {rate:.0f} | {rate / rows[1][0]:.2f}x | {first:.2f} s | {100 * demand / rate:.1f}% |")
    if ceiling:
        print(f"| 2 independent in-process loaders, 2 processes (no hand-off) | {ceiling:.0f} | "
              f"{ceiling / rows[1][0]:.2f}x | | |")
    print(f"| training step, {cores} threads (anchor) | {demand:.1f} | | | |")
    print(f"2 workers vs 1: {rows[2][0] / rows[1][0]:.2f}x"
          + (f"; 2 workers vs 2 independent processes: {rows[2][0] / ceiling:.2f}x" if ceiling else ""))


if __name__ == "__main__":
    main()
