"""Fine-tuning the benchmark's recognizers (train.model; None-VGG-BiLSTM-CTC by default): one readable loop, every
knob in TrainSettings. CTC trains with CTCLoss, Attn as the benchmark's train.py does: teacher forcing,
CrossEntropyLoss ignoring [GO], greedy decoding to batch_max_length + 1 steps when it reads.

Checkpoints in out_dir: best_accuracy.pth and best_norm_ED.pth (EasyOCR-loadable state_dicts, `module.` keys; the
weights' moving average when train.ema_decay is set; each carries its reading contract, models/reading.py) and
last.pth (model, its average, optimizer, scaler, RNG and
data-loader state, iteration, best scores), from which a re-run resumes exactly. Every file is written under a
temp name and renamed.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from hwocr import storage
from hwocr.errors import HwocrError, machine_memory
from models import distributed, easyocr_compat, metrics
from models.charset import load_charset
from models.codec import AttnCodec, CTCCodec, make_codec
from models.crnn import Model, init_weights
from models.data import LmdbDataset, MixedLoader, collate
from models.distributed import GlobalBatchNorm2d, World, all_sum, global_batchnorm, world_from_env
from models.pretrained import (
    build_for,
    builtin_charset,
    check_fits,
    load_pretrained,
    pretrained_digest,
    resolve_pretrained,
    save_checkpoint_state,
)
from models.reading import Reading
from models.train_settings import ModelSettings, TrainSettings

START = "start.pth"  # the pretrained weights as training began, in this run's character set
GFLOP_PER_SAMPLE = 2.75  # forward+backward at 80x100 for None-VGG-BiLSTM-CTC at 256/256; scales with the input area


def gflop_per_sample(s: TrainSettings) -> float:
    """What GFLOP/s counts: measured for the default network only; NaN for the others, whose GFLOP/s is then left
    out rather than wrong."""
    return GFLOP_PER_SAMPLE if s.model == ModelSettings() else math.nan


def _gflops_text(gflops: float) -> str:
    return "" if math.isnan(gflops) else f", {gflops:.0f} GFLOP/s"
Augment = Callable[[Image.Image, int], Image.Image]  # (image, seed) -> the altered image
Codec = CTCCodec | AttnCodec


def pick_device(name: str, world: World = World()) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise HwocrError("train.device is cuda but no CUDA device is available")
    kind = "cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name)
    if kind == "cuda":
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return torch.device(kind)


def cpu_has_bf16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":  # bench/train.py: bf16 2.7x fp32 on AMX, about 20x slower where oneDNN emulates it
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def build_model(s: TrainSettings, codec: Codec, log: Callable[[str], None]) -> tuple[Model, dict]:
    check_fits(s.pretrained, s.model)
    torch.manual_seed(s.seed)
    model = build_for(s)
    if s.init == "kaiming":
        init_weights(model)  # also the head rows of characters a pretrained checkpoint lacks
    report: dict = {"pretrained": s.pretrained}
    path = resolve_pretrained(s.pretrained)
    if path is not None:
        # A built-in checkpoint knows its own characters, so its head remaps without source_charset.
        source_name = s.source_charset or builtin_charset(s.pretrained)
        source = load_charset(source_name) if source_name else None
        report.update(load_pretrained(model, path, codec.charset, source))
        log(f"loaded {path}: {report}")
    return model, report


def lr_factor(schedule: str, progress: float) -> float:
    """The multiplier of the base lr at a run's progress in [0, 1]."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return 1.0


FREEZABLE = {"feature_extraction": "FeatureExtraction", "sequence_modeling": "SequenceModeling"}


def set_frozen(model: nn.Module, parts, frozen: bool) -> None:
    """Freeze (or free) whole stages: no gradients, and BatchNorm's running statistics kept as they are."""
    for part in parts:
        module = getattr(model, FREEZABLE[part])
        for p in module.parameters():
            p.requires_grad_(not frozen)
        module.train(not frozen)


def stale_validations(history: list[dict], metric: str) -> int:
    """Validations since the first one that reached the best value of metric."""
    if not history:
        return 0
    best_at = max(range(len(history)), key=lambda i: (history[i][metric], -i))
    return len(history) - 1 - best_at


def make_optimizer(s: TrainSettings, params) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, 0.999))
    return torch.optim.Adadelta(params, lr=s.lr, rho=s.rho, eps=s.eps)


def _width_batches(widths: list[int], indices: list[int], batch_size: int) -> list[list[int]]:
    """indices cut into batches of one input width each (stable within a width), so no crop is padded."""
    batches: list[list[int]] = []
    for i in sorted(indices, key=widths.__getitem__):
        if not batches or len(batches[-1]) == batch_size or widths[batches[-1][0]] != widths[i]:
            batches.append([])
        batches[-1].append(i)
    return batches


def criterion_for(codec: Codec) -> nn.Module:
    """The validation loss of the benchmark's test.py: CTC, or cross-entropy of the greedy reading, [GO] ignored."""
    return nn.CrossEntropyLoss(ignore_index=AttnCodec.GO) if isinstance(codec, AttnCodec) else nn.CTCLoss(
        zero_infinity=True)


def batch_loss(criterion: nn.Module, codec: Codec, logits: torch.Tensor, labels: list[str]) -> torch.Tensor:
    if isinstance(codec, AttnCodec):
        text, _ = codec.encode(labels)
        target = text[:, 1:].to(logits.device)
        return criterion(logits.reshape(-1, logits.size(-1)), target.reshape(-1))
    targets, lengths = codec.encode(labels)
    log_probs = logits.log_softmax(2).permute(1, 0, 2)
    sizes = torch.full((logits.size(0),), logits.size(1), dtype=torch.int)
    return criterion(log_probs, targets, sizes, lengths)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: LmdbDataset, codec: Codec, device: torch.device, batch_size: int,
             amp_dtype: torch.dtype | None, criterion: nn.Module | None = None) -> dict:
    """Predictions and metrics over a whole dataset, in LMDB order.

    In the easyocr mode every image is read at its own width, and an image read below EasyOCR's contrast_ths is
    read again contrast-stretched, the more confident reading kept: the figures are those of EasyOCR's recognize.
    """
    model.eval()
    n = len(dataset)
    preds, confs, losses = [""] * n, [0.0] * n, []

    def read(batch: list[int], images: torch.Tensor, labels: list[str] | None) -> list[tuple[str, float]]:
        with _autocast(device, amp_dtype):
            logits = model(images.to(device))
        logits = logits.float()
        if criterion is not None and labels is not None:
            losses.append(float(batch_loss(criterion, codec, logits, labels)) * len(labels))
        return codec.decode_with_confidence(logits.softmax(2).cpu())

    for batch in _width_batches(dataset.widths, list(range(n)), batch_size):
        images, labels = collate([dataset[i] for i in batch])
        for i, (text, conf) in zip(batch, read(batch, images, labels)):
            preds[i], confs[i] = text, conf
    if dataset.mode == "easyocr":
        low = [i for i in range(n) if confs[i] < easyocr_compat.CONTRAST_THS]
        for batch in _width_batches(dataset.widths, low, batch_size):
            images = torch.stack([dataset.contrast_retry(i) for i in batch])
            for i, (text, conf) in zip(batch, read(batch, images, None)):
                if conf >= confs[i]:  # EasyOCR keeps the first reading only when it is strictly more confident
                    preds[i], confs[i] = text, conf
    model.train()
    gts = list(dataset.labels)
    return {"preds": preds, "gts": gts, "confidences": confs, "scores": metrics.Scores.of(preds, gts),
            "loss": sum(losses) / n if losses else float("nan")}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def sample_table(result: dict, n: int = 5) -> str:
    line = "-" * 80
    rows = [line, f"{'Ground Truth':25s} | {'Prediction':25s} | Confidence Score & T/F", line]
    for gt, pred, conf in list(zip(result["gts"], result["preds"], result["confidences"]))[:n]:
        rows.append(f"{gt:25s} | {pred:25s} | {conf:0.4f}\t{gt == pred}")
    rows.append(line)
    return "\n".join(rows)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def train(s: TrainSettings, train_roots: list[str], val_root: str, out_dir: str, log: Callable[[str], None] = print,
          on_eval: Callable[[int, dict], None] | None = None, augment: Augment | None = None) -> dict:
    """Train until s.num_iter (or s.max_minutes), resuming from out_dir/last.pth when it exists.

    augment(image, seed), when given, alters each training image as it is drawn (never the validation images).

    Under torchrun (WORLD_SIZE > 1) every rank trains on its share of the same global batch with DDP; rank 0
    validates, logs and writes the checkpoints.
    """
    world = world_from_env()
    if not world.main:
        log = on_eval = None
    os.makedirs(out_dir, exist_ok=True)
    if s.threads or world.size > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
        torch.set_num_threads(s.threads or max(1, (os.cpu_count() or 1) // local))
    device = pick_device(s.device, world)
    distributed.init(world, device)
    try:
        return _train(s, train_roots, val_root, out_dir, log or (lambda m: None), on_eval, world, device, augment)
    finally:
        distributed.shutdown(world)


@dataclass
class TrainState:
    """Where a run is: what last.pth restores besides the weights, the optimizer, the loader and the RNGs."""

    iteration: int = 0
    best: dict = field(default_factory=lambda: {"accuracy": -1.0, "norm_ed": -1.0})
    history: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0  # training seconds before this process: the time budget and the lr span a resume
    saved_at: int | None = None  # the iteration last.pth holds


@dataclass
class Trainer:
    """What a training step touches."""

    s: TrainSettings
    model: Model
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: MixedLoader
    codec: Codec
    world: World
    device: torch.device
    amp_dtype: torch.dtype | None
    out_dir: str
    reading: Reading  # how the checkpoints are read: every one written carries it
    ema: Model | None = None  # the weights' moving average (train.ema_decay): what validates and is kept
    per_sample: nn.Module = field(default_factory=lambda: nn.CTCLoss(zero_infinity=True, reduction="none"))

    @property
    def last_path(self) -> str:
        return os.path.join(self.out_dir, "last.pth")

    @property
    def scored(self) -> Model:
        """The weights validation reads and the best checkpoints keep."""
        return self.ema if self.ema is not None else self.model


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, buffers included; integer buffers (BatchNorm's counts) copied."""
    pairs = list(zip(ema.state_dict().values(), model.state_dict().values()))
    floats = [(e, m) for e, m in pairs if e.is_floating_point()]
    if floats:
        torch._foreach_lerp_([e for e, _ in floats], [m for _, m in floats], 1.0 - decay)
    for e, m in pairs:
        if not e.is_floating_point():
            e.copy_(m)


def ema_decay_at(decay: float, iteration: int) -> float:
    """The decay of the update after `iteration` steps: small at first, so the start's weights fade fast."""
    return min(decay, (1 + iteration) / (10 + iteration))


class Window:
    """Samples, pixels and loss since the last validation. The loss and the first non-finite one stay on the
    device: reading them back syncs a GPU, so the loop reads them only when it logs, validates or saves."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.t, self.n, self.px, self.wait = time.monotonic(), 0, 0, 0.0  # wait: seconds blocked on the loader
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.last = torch.zeros((), device=self.device)
        self.bad_at = torch.zeros((), dtype=torch.long, device=self.device)  # 1-based iteration, 0: none yet
        self.bad_loss = torch.zeros((), device=self.device)

    def add(self, loss: torch.Tensor, n: int, px: int, iteration: int) -> None:
        self.n, self.px, self.last = self.n + n, self.px + px, loss
        self.loss += loss * n
        first = (self.bad_at == 0) & ~torch.isfinite(loss)
        self.bad_at = torch.where(first, iteration, self.bad_at)
        self.bad_loss = torch.where(first, loss, self.bad_loss)


def check_finite(t: Trainer, state: TrainState, window: Window) -> None:
    if bad_at := int(window.bad_at):
        kept = (f"the last good checkpoint is {t.last_path} (iteration {state.saved_at})" if state.saved_at is not None
                else "no checkpoint had been written yet")
        raise HwocrError(f"loss became {float(window.bad_loss)} at iteration {bad_at}; training stopped, {kept}")


def setup(s: TrainSettings, train_roots: list[str], val_root: str, out_dir: str, log: Callable[[str], None],
          world: World, device: torch.device, augment: Augment | None) -> tuple[Trainer, LmdbDataset, dict]:
    """The datasets, the model from its pretrained start (saved as start.pth), its optimizer; what was dropped."""
    s.check_machine(os.cpu_count() or 1, torch.cuda.get_device_properties(device).total_memory
                    if device.type == "cuda" else machine_memory())  # a run from the UI skipped the CLI's check
    amp_dtype = autocast_dtype(s.precision, device)
    if amp_dtype is torch.bfloat16 and device.type == "cpu" and not cpu_has_bf16():
        log("WARNING: train.precision bf16 on a CPU without AVX512-BF16 or AMX: oneDNN emulates it, about 20 times "
            "slower than fp32; set train.precision=fp32")
    charset = load_charset(s.charset)
    codec = make_codec(s.model.prediction, charset, s.batch_max_length)
    if len(s.batch_ratio) != len(train_roots):
        raise HwocrError(f"train.batch_ratio {s.batch_ratio} needs one share per training LMDB ({len(train_roots)})")
    datasets = [LmdbDataset(r, charset, s.batch_max_length, s.img_h, s.img_w, s.preprocess, s.max_width)
                for r in train_roots]
    val = LmdbDataset(val_root, charset, s.batch_max_length, s.img_h, s.img_w, s.preprocess, s.max_width)
    dropped = {r: d.dropped for r, d in zip(train_roots, datasets)} | {val_root: val.dropped}
    for (root, d), data in zip(dropped.items(), [*datasets, val]):
        if any(d.values()):
            log(f"{root}: dropped {d}")
        if sum(d.values()) > len(data):  # most of it cannot be trained on as asked: not what anyone meant
            raise HwocrError(f"{root}: {sum(d.values()):,} of {sum(d.values()) + len(data):,} samples dropped ({d}): "
                             "its labels do not fit train.charset or train.batch_max_length (or its images "
                             "train.max_width); check the charset it was made for")
    loader = MixedLoader(datasets, s.batch_ratio, s.batch_size, seed=s.seed, workers=loader_workers(s, device, world),
                         share=world.share, augment=augment, pin=device.type == "cuda")
    model, report = build_model(s, codec, log)
    reading = Reading.of(s, pretrained_digest(s.pretrained))
    start_path = os.path.join(out_dir, START)
    if s.pretrained != "none" and world.main and not os.path.exists(start_path):
        with storage.atomic_path(start_path) as tmp:  # the start, head remapped: scored beside the result
            torch.save(save_checkpoint_state(model, reading), tmp)
    model.to(device)
    model.FeatureExtraction.recompute = s.recompute_layers
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    if world.ddp:
        model = global_batchnorm(model, device)
    optimizer = make_optimizer(s, filter(lambda p: p.requires_grad, model.parameters()))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    ema = copy.deepcopy(model).requires_grad_(False) if s.ema_decay else None
    t = Trainer(s, model, model, optimizer, scaler, loader, codec, world, device, amp_dtype, out_dir, reading, ema)
    return t, val, {"dropped": dropped, "pretrained": report, "start": start_path}


def resume(t: Trainer, log: Callable[[str], None]) -> TrainState:
    if not os.path.exists(t.last_path):
        return TrainState()
    try:
        state = torch.load(t.last_path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise HwocrError(f"cannot resume from {t.last_path}: {type(e).__name__}: {e}") from None
    if "reading" in state and (was := Reading.model_validate(state["reading"])) != t.reading:
        differ = [f"{k} {getattr(was, k)!r} (now {getattr(t.reading, k)!r})" for k in Reading.model_fields
                  if k != "charset" and getattr(was, k) != getattr(t.reading, k)]
        if was.charset != t.reading.charset:
            differ.append("the character set")
        raise HwocrError(f"cannot resume from {t.last_path}: it was trained to be read otherwise ("
                         f"{'; '.join(differ)}); train into another folder, or delete it to start over")
    t.model.load_state_dict(state["model"])
    if t.ema is not None:  # a run that began without an average starts one from its weights
        t.ema.load_state_dict(state.get("ema") or state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scaler.load_state_dict(state["scaler"])
    t.loader.load_state_dict(state["loader"])
    _set_rng_state(state["rng"])
    log(f"resumed from {t.last_path} at iteration {state['iteration']}")
    return TrainState(state["iteration"], state["best"], state["history"], state.get("elapsed_s", 0.0),
                      saved_at=state["iteration"])


def save(t: Trainer, state: TrainState, elapsed_s: float) -> None:
    state.saved_at = state.iteration
    with storage.atomic_path(t.last_path) as tmp:
        torch.save({"model": t.model.state_dict(), "ema": t.ema.state_dict() if t.ema is not None else None,
                    "optimizer": t.optimizer.state_dict(),
                    "scaler": t.scaler.state_dict(), "loader": t.loader.state_dict(), "rng": _rng_state(),
                    "iteration": state.iteration, "best": state.best, "history": state.history,
                    "elapsed_s": elapsed_s, "charset": t.codec.charset, "settings": t.s.model_dump(),
                    "reading": t.reading.model_dump(mode="json")}, tmp)


def loader_workers(s: TrainSettings, device: torch.device, world: World) -> int:
    if s.loader_workers != "auto":
        return s.loader_workers
    if device.type != "cuda":
        return 0  # bench/loader.py: on CPU the step needs the cores, and one core decodes faster than it trains
    # One worker decodes about 4,800 samples/s here (bench/loader.py, no augmentation): ten times the seed's GPU
    # rate (11,430) is 2.4 of them, so four left no room for augmentation or a slower host; one core stays with
    # the training process and its pin-memory thread.
    cores = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    return min(8, max(1, cores - 1))


def next_batch(t: Trainer) -> tuple[torch.Tensor, list[str]]:
    images, labels = next(t.loader)  # pinned by the loader on CUDA, so the copy below runs asynchronously
    images = images.to(t.device, non_blocking=images.is_pinned())
    if t.s.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def train_step(t: Trainer, images: torch.Tensor, labels: list[str], lr: float) -> torch.Tensor:
    """One update on one global batch; returns its mean loss (CTC, or Attn's cross-entropy per target token) on
    the device, not read back."""
    if isinstance(t.codec, AttnCodec):
        text, _ = t.codec.encode(labels)
        text = text.to(t.device)
        with _autocast(t.device, t.amp_dtype):
            logits = t.net(images, text[:, :-1])  # teacher forcing from [GO]
        target = text[:, 1:].reshape(-1)
        ce = nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target,
                                         ignore_index=AttnCodec.GO, reduction="sum")
        # CrossEntropyLoss's mean over the global batch's tokens, so that DDP's average of the ranks' gradients
        # equals it
        tokens = all_sum((target != AttnCodec.GO).sum().float().reshape(1), t.world)[0]
        loss = ce * t.world.size / tokens.clamp_min(1)
    else:
        targets, lengths = t.codec.encode(labels)
        with _autocast(t.device, t.amp_dtype):
            logits = t.net(images)
        log_probs = logits.float().log_softmax(2).permute(1, 0, 2)
        sizes = torch.full((logits.size(0),), logits.size(1), dtype=torch.int)
        # CTCLoss's mean over the global batch, split so that DDP's average of the ranks' gradients equals it
        losses = t.per_sample(log_probs, targets, sizes, lengths) / lengths.clamp_min(1).to(log_probs.device)
        loss = losses.sum() * (t.world.size / t.loader.batch_samples)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.unscale_(t.optimizer)
    nn.utils.clip_grad_norm_(t.model.parameters(), t.s.grad_clip)  # after DDP's all-reduce: the same on every rank
    t.scaler.step(t.optimizer)
    t.scaler.update()
    return all_sum(loss.detach().reshape(1), t.world)[0] / t.world.size


def validate(t: Trainer, state: TrainState, val: LmdbDataset, window: Window, started: float,
             log: Callable[[str], None], on_eval: Callable[[int, dict], None] | None) -> None:
    """Rank 0 scores the validation set, keeps the best checkpoints and last.pth; every rank waits for it."""
    check_finite(t, state, window)
    s, it = t.s, state.iteration
    if t.world.main:
        dt = time.monotonic() - window.t
        gflops = window.px / dt * gflop_per_sample(s) / (80 * 100)  # compute scales with the input area
        train_loss = float(window.loss) / window.n
        log(f"[{it}/{s.num_iter}] {window.n / dt:.1f} samples/s{_gflops_text(gflops)}")
        result = evaluate(t.scored, val, t.codec, t.device, s.batch_size, t.amp_dtype, criterion_for(t.codec))
        scores = result["scores"]
        entry = {"iteration": it, "train_loss": train_loss, "valid_loss": result["loss"], **scores.metrics(),
                 "samples_per_s": window.n / dt, "loader_wait": window.wait / dt,
                 "lr": t.optimizer.param_groups[0]["lr"]}
        if not math.isnan(gflops):
            entry["gflops"] = gflops
        if t.ema is not None:  # the raw weights too, on the same images: every averaged run measures the average
            raw = evaluate(t.model, val, t.codec, t.device, s.batch_size, t.amp_dtype, criterion_for(t.codec))
            entry.update(raw_valid_loss=raw["loss"], raw_accuracy=raw["scores"].accuracy,
                         raw_norm_ed=raw["scores"].norm_ed)
        state.history.append(entry)
        for name, file in (("accuracy", "best_accuracy.pth"), ("norm_ed", "best_norm_ED.pth")):
            if getattr(scores, name) > state.best[name]:
                state.best[name] = getattr(scores, name)
                with storage.atomic_path(os.path.join(t.out_dir, file)) as tmp:
                    torch.save(save_checkpoint_state(t.scored, t.reading), tmp)
        best = state.best
        log(f"[{it}/{s.num_iter}] Train loss: {train_loss:0.5f}, Valid loss: {result['loss']:0.5f}, "
            f"Elapsed_time: {time.monotonic() - started:0.1f}\n"
            f"Current_accuracy : {scores.accuracy:0.3f}, Current_norm_ED  : {scores.norm_ed:0.4f}\n"
            f"Best_accuracy    : {best['accuracy']:0.3f}, Best_norm_ED     : {best['norm_ed']:0.4f}\n"
            + (f"Raw_accuracy     : {entry['raw_accuracy']:0.3f}, Raw_norm_ED      : {entry['raw_norm_ed']:0.4f} "
               "(the weights the average follows)\n" if t.ema is not None else "")
            + sample_table(result))
        save(t, state, time.monotonic() - started)
        if on_eval:
            on_eval(it, {**entry, "result": result})
    distributed.barrier(t.world)
    window.reset()


def _train(s: TrainSettings, train_roots: list[str], val_root: str, out_dir: str, log: Callable[[str], None],
           on_eval: Callable[[int, dict], None] | None, world: World, device: torch.device,
           augment: Augment | None) -> dict:
    t, val, info = setup(s, train_roots, val_root, out_dir, log, world, device, augment)
    try:
        return _run(t, val, info, log, on_eval)
    finally:
        t.loader.close()  # its worker processes


def _run(t: Trainer, val: LmdbDataset, info: dict, log: Callable[[str], None],
         on_eval: Callable[[int, dict], None] | None) -> dict:
    s, world, device, out_dir = t.s, t.world, t.device, t.out_dir
    state = resume(t, log)
    if world.ddp:
        t.net = nn.parallel.DistributedDataParallel(t.model,
                                                    device_ids=[device.index] if device.type == "cuda" else None)
        norms = sum(isinstance(m, (nn.SyncBatchNorm, GlobalBatchNorm2d)) for m in t.model.modules())
        log(f"data-parallel over {world.size} processes ({torch.distributed.get_backend()}, {norms} global "
            f"BatchNorm layers), {s.batch_size // world.size}+ samples each")
    if s.compile:
        t.net = torch.compile(t.net)  # t.model stays the plain module: checkpoints and validation use it
    log_every = max(1, min(s.val_interval // 10, 50))
    started = time.monotonic() - state.elapsed_s
    window = Window(device)
    validated_at = state.history[-1]["iteration"] if state.history else None
    t.model.train()
    frozen = None  # whether s.freeze applies now; evaluate() returns the whole model to training mode
    while state.iteration < s.num_iter:
        if s.freeze and frozen != (now := not s.freeze_iterations or state.iteration < s.freeze_iterations):
            set_frozen(t.model, s.freeze, now)
            frozen = now
            log(f"iteration {state.iteration}: {', '.join(s.freeze)} " + ("frozen" if now else "unfrozen"))
        progress = state.iteration / s.num_iter
        if s.max_minutes:  # rank 0's clock decides, so every rank stops, and sets its lr, at the same iteration
            elapsed = time.monotonic() - started
            if world.size > 1:
                elapsed = float(all_sum(torch.tensor([elapsed if world.main else 0.0], device=device), world).item())
            if elapsed > s.max_minutes * 60:
                log(f"time budget of {s.max_minutes} minutes reached at iteration {state.iteration}")
                break
            progress = max(progress, elapsed / (s.max_minutes * 60))
        waited = time.monotonic()
        images, labels = next_batch(t)
        window.wait += time.monotonic() - waited
        loss = train_step(t, images, labels, s.lr * lr_factor(s.lr_schedule, progress))
        if t.ema is not None:
            ema_update(t.ema, t.model, ema_decay_at(s.ema_decay, state.iteration))
        state.iteration += 1
        n = t.loader.batch_samples
        window.add(loss, n, n * images.shape[2] * images.shape[3], state.iteration)
        if state.iteration % log_every == 0:
            check_finite(t, state, window)
            dt = time.monotonic() - window.t
            log(f"iter {state.iteration}: loss {float(window.last):.4f}, {window.n / dt:.1f} samples/s"
                + _gflops_text(window.px / dt * gflop_per_sample(s) / (80 * 100))
                + f", loader wait {100 * window.wait / dt:.1f}%")
        if state.iteration % s.val_interval == 0 or state.iteration == s.num_iter:
            validate(t, state, val, window, started, log, on_eval)
            validated_at = state.iteration
            if frozen:
                set_frozen(t.model, s.freeze, True)
            if s.early_stop_patience:  # rank 0 saw the validation: every rank stops with it
                stale = stale_validations(state.history, s.early_stop_metric) if world.main else 0
                stale = int(all_sum(torch.tensor([float(stale)], device=device), world).item())
                if stale >= s.early_stop_patience:
                    log(f"early stop at iteration {state.iteration}: {s.early_stop_metric} has not improved for "
                        f"{stale} validations (patience {s.early_stop_patience})")
                    break
    if state.iteration and validated_at != state.iteration:
        validate(t, state, val, window, started, log, on_eval)  # stopped between validations
    start = info["start"]
    return {"iterations": state.iteration, "best_accuracy": state.best["accuracy"],
            "best_norm_ed": state.best["norm_ed"], "history": state.history,
            "checkpoint": os.path.join(out_dir, "best_accuracy.pth"), "dropped": info["dropped"],
            "start": start if os.path.exists(start) else None, "pretrained": info["pretrained"],
            "device": str(device), "precision": str(t.amp_dtype or "fp32"), "ema_decay": s.ema_decay,
            "gflops": state.history[-1].get("gflops", math.nan) if state.history else math.nan}
