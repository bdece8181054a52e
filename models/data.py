"""Training data: benchmark-layout LMDBs, the preprocessing modes, and a resumable, width-bucketed mixed-batch loader.

Plain PyTorch + PIL + numpy (no torchvision, no Prefect). The layout is deep-text-recognition-benchmark's:
`image-%09d` (encoded image bytes, from 1), `label-%09d` (UTF-8), `num-samples` (decimal string).
"""

from __future__ import annotations

import collections
import io
import math
import os
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import lmdb
import numpy as np
import torch
from PIL import Image

from hwocr import hashing
from hwocr.errors import HwocrError
from models import easyocr_compat
from models.lmdb_format import READER_OPTIONS, check_lmdb_file
from synth.labels import label_problem

MODES = ("easyocr", "pad", "stretch")
_BICUBIC = Image.Resampling.BICUBIC


def _open_env(root: str) -> lmdb.Environment:
    if not os.path.exists(root):
        raise HwocrError(f"{root}: no such LMDB directory")
    check_lmdb_file(root)  # a truncated file would be mapped, and end the process with SIGBUS on a read
    try:
        return lmdb.open(root, **READER_OPTIONS)
    except lmdb.Error as e:
        raise HwocrError(f"{root}: not an LMDB ({type(e).__name__}: {e})") from None


# One environment per LMDB per process: py-lmdb refuses to open the same files twice in a process, and several
# datasets (or a pickled copy) may read the same LMDB. Entries carry the pid that opened them; one inherited
# through fork is closed in the child and reopened (LMDB handles must not cross processes).
_ENVS: dict[tuple, tuple[int, lmdb.Environment]] = {}
_ENVS_LOCK = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _ENVS_LOCK
    _ENVS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _env_key(root: str) -> tuple:
    path = os.path.realpath(root)
    try:
        st = os.stat(os.path.join(path, "data.mdb"))
    except OSError:
        return (path, None, None)
    return (path, st.st_dev, st.st_ino)


def _cached_env(key: tuple) -> lmdb.Environment | None:
    entry = _ENVS.get(key)
    return entry[1] if entry is not None and entry[0] == os.getpid() else None


def _shared_env(root: str, key: tuple) -> lmdb.Environment:
    env = _cached_env(key)
    if env is not None:
        return env
    with _ENVS_LOCK:
        env = _cached_env(key)
        if env is None:
            stale = _ENVS.pop(key, None)
            if stale is not None:
                try:
                    stale[1].close()
                except lmdb.Error:
                    pass
            env = _open_env(root)
            _ENVS[key] = (os.getpid(), env)
        return env


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """[1, H, W] float32 in [-1, 1]: torchvision's ToTensor (x / 255) then sub_(0.5).div_(0.5)."""
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0)


def _gray(img: Image.Image) -> Image.Image:
    return img if img.mode == "L" else img.convert("L")


def stretch(img: Image.Image, img_h: int, img_w: int) -> torch.Tensor:
    """The benchmark's ResizeNormalize: resize to (img_w, img_h) ignoring the aspect ratio."""
    return _to_tensor(_gray(img).resize((img_w, img_h), _BICUBIC))


def pad_width(w: int, h: int, img_h: int, img_w: int) -> int:
    """Width after the aspect-preserving resize to height img_h, capped at img_w (AlignCollate keep_ratio_with_pad)."""
    resized = math.ceil(img_h * (w / float(h)))
    return img_w if resized > img_w else resized


def pad(img: Image.Image, img_h: int, img_w: int) -> torch.Tensor:
    """EasyOCR's / the benchmark's NormalizePAD: keep the aspect ratio, right-pad by repeating the last column."""
    img = _gray(img)
    w, h = img.size
    resized_w = pad_width(w, h, img_h, img_w)
    x = _to_tensor(img.resize((resized_w, img_h), _BICUBIC))
    out = torch.zeros(1, img_h, img_w, dtype=torch.float32)
    out[:, :, :resized_w] = x
    if resized_w != img_w:
        out[:, :, resized_w:] = x[:, :, resized_w - 1].unsqueeze(2).expand(1, img_h, img_w - resized_w)
    return out


def natural(img: Image.Image, img_h: int, img_w: int = 0) -> torch.Tensor:
    """The word as EasyOCR's recognize feeds it: height img_h, natural width, padded to ceil(ratio) * img_h.

    img_w is unused: this mode's width comes from the image (LmdbDataset caps it with max_width)."""
    return easyocr_compat.crop_tensor(np.asarray(_gray(img)), img_h)[0]


def pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    """[C, H, W] widened to width by repeating the last column: NormalizePAD at a batch's widest crop."""
    w = x.shape[-1]
    if w >= width:
        return x
    return torch.cat([x, x[..., w - 1:w].expand(*x.shape[:-1], width - w)], dim=-1)


PREPROCESS = {"easyocr": natural, "pad": pad, "stretch": stretch}


class LmdbDataset(torch.utils.data.Dataset):
    """One benchmark-layout LMDB, filtered like the benchmark's dataset.py but case-sensitive, with counted drops.

    Labels are NFC-normalized (as CTCCodec.encode does) before the length and character-set checks, and
    returned normalized. The object holds no LMDB handle: environments live in a per-process cache (one per
    LMDB, opened on first use in each process, an inherited one reopened after fork), so it pickles and works
    in DataLoader workers started by fork or spawn.
    """

    def __init__(self, root: str, charset: str, batch_max_length: int = 25, img_h: int = 80, img_w: int = 100,
                 mode: Literal["easyocr", "pad", "stretch"] = "easyocr", max_width: int = 800) -> None:
        if mode not in PREPROCESS:
            raise HwocrError(f"{root}: preprocessing mode {mode!r} is not one of {', '.join(MODES)}")
        self.root = str(root)
        self.charset = charset
        self.batch_max_length = batch_max_length
        self.img_h, self.img_w, self.mode, self.max_width = img_h, img_w, mode, max_width
        self._key = _env_key(self.root) if os.path.exists(self.root) else (self.root, None, None)

        allowed = set(charset)
        self.dropped = {"too_long": 0, "out_of_charset": 0} | ({"too_wide": 0} if mode == "easyocr" else {})
        indices: list[int] = []
        labels: list[str] = []
        widths: list[int] = []
        with _shared_env(self.root, self._key).begin(write=False) as txn:
            raw = txn.get(b"num-samples")
            if raw is None:
                raise HwocrError(f"{self.root}: not a benchmark LMDB (no num-samples)")
            try:
                n = int(raw.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                raise HwocrError(f"{self.root}: num-samples is {raw[:40]!r}, not a number") from None
            if n <= 0:
                raise HwocrError(f"{self.root} is empty (num-samples {n})")
            self.num_samples = n
            for index in range(1, n + 1):
                value = txn.get(b"label-%09d" % index)
                if value is None:
                    raise HwocrError(f"{self.root}: num-samples is {n} but label-{index:09d} is missing")
                try:
                    label = unicodedata.normalize("NFC", value.decode("utf-8"))
                except UnicodeDecodeError:
                    raise HwocrError(f"{self.root}: label-{index:09d} is not UTF-8") from None
                # An empty label stays, as in the benchmark (an all-blank target); the loader counts two kinds of
                # drop, so a control character counts as out of the set.
                problem = label_problem(label, allowed, batch_max_length) if label else None
                if problem:
                    self.dropped["too_long" if problem == "too_long" else "out_of_charset"] += 1
                else:
                    width = self._width(txn, index) if mode == "easyocr" else img_w
                    if width > max_width:
                        self.dropped["too_wide"] += 1
                        continue
                    indices.append(index)
                    labels.append(label)
                    widths.append(width)
        if not indices:
            wide = f", {self.dropped['too_wide']} wider than {max_width} px" if mode == "easyocr" else ""
            raise HwocrError(f"{self.root}: all {n} samples were dropped ({self.dropped['too_long']} longer than "
                             f"{batch_max_length} characters, {self.dropped['out_of_charset']} with characters "
                             f"outside the character set{wide})")
        self.indices = indices
        self.labels = labels
        self.widths = widths  # network input width of each kept sample: the loader buckets batches by it

    def _width(self, txn, index: int) -> int:
        buf = txn.get(b"image-%09d" % index)
        try:
            with Image.open(io.BytesIO(buf or b"")) as im:  # reads the header only
                w, h = im.size
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for corrupt data
            raise HwocrError(f"{self.root}: image {index} (image-{index:09d}) cannot be decoded: "
                             f"{type(e).__name__}: {e}") from None
        return easyocr_compat.input_width(w, h, self.img_h)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return PREPROCESS[self.mode](self.raw_image(i), self.img_h, self.img_w), self.labels[i]

    def sample(self, i: int, augment: Callable[[Image.Image, int], Image.Image], seed: int) -> tuple[torch.Tensor, str]:
        """Sample i with augment(image, seed) applied before preprocessing."""
        return PREPROCESS[self.mode](augment(self.raw_image(i), seed), self.img_h, self.img_w), self.labels[i]

    def contrast_retry(self, i: int) -> torch.Tensor:
        """Sample i as EasyOCR reads a low-confidence crop the second time (contrast stretched)."""
        return easyocr_compat.crop_tensor(np.asarray(self.raw_image(i)), self.img_h, contrast=True)[0]

    def raw_image(self, i: int) -> Image.Image:
        """Sample i as stored (grayscale), before preprocessing."""
        if not -len(self.indices) <= i < len(self.indices):
            raise IndexError(f"{self.root}: sample {i} out of range ({len(self.indices)} kept)")
        index = self.indices[i]
        with _shared_env(self.root, self._key).begin(write=False) as txn:
            buf = txn.get(b"image-%09d" % index)
        if buf is None:
            raise HwocrError(f"{self.root}: image-{index:09d} is missing")
        try:
            with Image.open(io.BytesIO(buf)) as im:
                img = im.convert("L")
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for corrupt data
            raise HwocrError(f"{self.root}: image {index} (image-{index:09d}) cannot be decoded: "
                             f"{type(e).__name__}: {e}") from None
        return img


def collate(batch: Sequence[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    """[(image [1, H, W_i], label), ...] -> (images [B, 1, H, max W_i] float32, labels); narrower images are
    widened by repeating their last column, as EasyOCR pads every crop of a call to the widest."""
    if not batch:
        raise ValueError("collate: empty batch")
    width = max(img.shape[-1] for img, _ in batch)
    # default_collate stacks a loader worker's batch straight into shared memory, so sending it copies nothing.
    images = torch.utils.data.default_collate([pad_to(img, width) for img, _ in batch]).to(torch.float32)
    return images, [label for _, label in batch]


def check_ratios(ratios: Sequence[float], n_datasets: int) -> list[float]:
    """The benchmark's --batch_ratio: one share per dataset, each > 0, summing to 1."""
    values = [float(r) for r in ratios]
    if len(values) != n_datasets:
        raise HwocrError(f"batch ratios {list(ratios)} give {len(values)} shares for {n_datasets} datasets")
    if any(not (r > 0) or math.isinf(r) for r in values):
        raise HwocrError(f"batch ratios {list(ratios)}: every share must be > 0")
    if abs(sum(values) - 1.0) > 1e-6:
        raise HwocrError(f"batch ratios {list(ratios)} sum to {sum(values):.6g}, not 1")
    return values


BUCKET_WINDOW = 32  # batches sorted by width together: wider windows pad less and mix lengths less


def bucketed(perm: list[int], widths: Sequence[int], count: int, g: torch.Generator) -> list[int]:
    """perm reordered so that consecutive runs of `count` samples share a width: each window of BUCKET_WINDOW
    batches is sorted by width (stably), cut into batches, and the full batches shuffled; a short one stays last."""
    out: list[int] = []
    span = count * BUCKET_WINDOW
    for start in range(0, len(perm), span):
        window = sorted(perm[start:start + span], key=widths.__getitem__)
        chunks = [window[k:k + count] for k in range(0, len(window), count)]
        tail = chunks.pop() if len(chunks[-1]) < count else None
        for k in torch.randperm(len(chunks), generator=g).tolist():
            out += chunks[k]
        if tail:
            out += tail
    return out


class _Batches(torch.utils.data.Dataset):
    """What a loader worker runs: (indices, width) -> the collated batch. Picklable (LmdbDataset holds no handle,
    Augmenter is plain settings), so workers start by spawn or forkserver."""

    def __init__(self, datasets: list, augment: Callable | None, seed: int) -> None:
        self.datasets, self.augment, self.seed = datasets, augment, seed

    def __getitem__(self, item: tuple[list[tuple[int, int, int]], int]) -> tuple[torch.Tensor, list[str]]:
        indices, width = item
        if self.augment is None:
            batch = [self.datasets[d][i] for d, i, _ in indices]
        else:
            # Seeded by (seed, dataset, epoch, sample): every epoch sees new variants, and a resumed run the same.
            batch = [self.datasets[d].sample(i, self.augment, hashing.seed("hwocr-augment", self.seed, d, e, i))
                     for d, i, e in indices]
        return collate([(pad_to(x, width), label) for x, label in batch])


WORKER_CONTEXT = "forkserver" if "forkserver" in torch.multiprocessing.get_all_start_methods() else "spawn"


class MixedLoader:
    """Infinite mixed batches, the benchmark's Batch_Balanced_Dataset semantics, deterministic and resumable.

    Each batch takes max(int(batch_size * ratio), 1) samples from every dataset, in that dataset's order for the
    current epoch: a permutation drawn from a torch.Generator seeded from (seed, epoch, dataset index). Each
    dataset runs through its epochs independently; a batch that reaches the end of one continues into the next.
    `next(loader)` returns a collated batch, (images [B, 1, H, W] float32, labels).

    state_dict() records (epoch, position) per dataset as of the last batch returned; a new loader given it
    yields exactly the batches the original would have. Indices are always drawn here, in the main process, in
    order; with workers=k a torch DataLoader decodes, augments and collates them in k processes (pinned memory
    with pin=True), each batch's cursor kept until that batch is handed out. workers=0 decodes in-process.
    """

    def __init__(self, datasets: Sequence[torch.utils.data.Dataset], ratios: Sequence[float], batch_size: int,
                 seed: int = 0, workers: int = 0, share: Callable[[list], list] | None = None,
                 augment: Callable[[Image.Image, int], Image.Image] | None = None, pin: bool = False) -> None:
        if not datasets:
            raise HwocrError("mixed loader: no datasets")
        if batch_size < 1:
            raise HwocrError(f"batch size {batch_size} must be at least 1")
        if workers < 0:
            raise HwocrError(f"loader workers {workers} must be 0 (in-process) or more")
        self.datasets = list(datasets)
        self.ratios = check_ratios(ratios, len(self.datasets))
        for d in self.datasets:
            if len(d) == 0:
                raise HwocrError(f"{getattr(d, 'root', d)}: no samples to draw batches from")
        self.batch_size = batch_size
        self.seed = int(seed)
        self.counts = [max(int(batch_size * r), 1) for r in self.ratios]
        self.batch_samples = sum(self.counts)
        self.share = share or (lambda items: items)  # a data-parallel rank decodes only its part of each batch
        self.lengths = [len(d) for d in self.datasets]
        self._epoch = [0] * len(self.datasets)
        self._pos = [0] * len(self.datasets)
        self._perms: dict[int, tuple[int, list[int]]] = {}
        self.workers, self.pin = int(workers), pin
        self._batches = _Batches(self.datasets, augment, self.seed)
        self._iter: Iterator | None = None
        self._cursors: collections.deque[dict] = collections.deque()  # one per batch drawn but not handed out
        self._consumed = self._cursor()

    # -- order ---------------------------------------------------------------------------------------------
    def _order(self, d: int) -> list[int]:
        epoch = self._epoch[d]
        cached = self._perms.get(d)
        if cached is None or cached[0] != epoch:
            g = torch.Generator().manual_seed(hashing.seed("hwocr-mixed", self.seed, epoch, d))
            order = torch.randperm(self.lengths[d], generator=g).tolist()
            widths = getattr(self.datasets[d], "widths", None)
            if widths and min(widths) != max(widths):  # natural-width inputs: batches of one width, little padding
                order = bucketed(order, widths, self.counts[d], g)
            cached = (epoch, order)
            self._perms[d] = cached
        return cached[1]

    def _cursor(self) -> dict:
        return {"epoch": list(self._epoch), "pos": list(self._pos)}

    def next_indices(self) -> list[tuple[int, int, int]]:
        """The next batch as (dataset index, sample index, epoch) triples; advances the cursor."""
        out: list[tuple[int, int, int]] = []
        for d, count in enumerate(self.counts):
            for _ in range(count):
                if self._pos[d] >= self.lengths[d]:
                    self._epoch[d] += 1
                    self._pos[d] = 0
                out.append((d, self._order(d)[self._pos[d]], self._epoch[d]))
                self._pos[d] += 1
        return out

    def width(self, indices: list[tuple[int, int, int]]) -> int:
        """The widest input of a batch: every rank pads its share to the global batch's width."""
        return max((w[i] for d, i, _ in indices if (w := getattr(self.datasets[d], "widths", None))), default=0)

    def _items(self) -> Iterator[tuple[list, int]]:
        """The DataLoader's sampler: this rank's share of each next batch, drawn in the main process."""
        while True:
            indices = self.next_indices()
            self._cursors.append(self._cursor())
            yield self.share(indices), self.width(indices)

    # -- iteration -----------------------------------------------------------------------------------------
    def __iter__(self) -> MixedLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, list[str]]:
        if self._iter is None:
            # batch_size=None: each sampler item is a whole batch. The sampler is infinite, so one iterator (and
            # one set of workers) lasts the run. Workers start by forkserver or spawn, never fork: Prefect and
            # torch run threads in this process, and a fork after threads can deadlock.
            self._iter = iter(torch.utils.data.DataLoader(
                self._batches, batch_size=None, sampler=self._items(), num_workers=self.workers,
                pin_memory=self.pin, prefetch_factor=2 if self.workers else None,
                multiprocessing_context=WORKER_CONTEXT if self.workers else None))
        batch = next(self._iter)
        self._consumed = self._cursors.popleft()
        return batch

    def close(self) -> None:
        """Stop the workers and drop the batches decoded ahead; the cursor goes back to the last batch handed out,
        so iterating on continues exactly."""
        if self._iter is not None:
            shutdown = getattr(self._iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._iter = None
        self._cursors.clear()
        self._epoch, self._pos = list(self._consumed["epoch"]), list(self._consumed["pos"])

    # -- resume --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"seed": self.seed, "counts": list(self.counts), "lengths": list(self.lengths),
                "epoch": list(self._consumed["epoch"]), "pos": list(self._consumed["pos"])}

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("lengths", self.lengths), ("counts", self.counts), ("seed", self.seed)):
            if state.get(key) != mine:
                raise HwocrError(f"cannot resume the data loader: it was saved with {key} {state.get(key)}, "
                                 f"these datasets and settings give {mine}")
        self.close()
        self._epoch = [int(e) for e in state["epoch"]]
        self._pos = [int(p) for p in state["pos"]]
        self._perms.clear()
        self._consumed = self._cursor()
