"""Fine-tuning None-VGG-BiLSTM-CTC: one readable loop, every knob in TrainSettings.

Checkpoints in out_dir: best_accuracy.pth and best_norm_ED.pth (EasyOCR-loadable state_dicts, `module.` keys) and
last.pth (model, optimizer, scaler, RNG and data-loader state, iteration, best scores), from which a re-run resumes
exactly. Every file is written under a temp name and renamed.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image
from torch import nn

from hwocr.errors import HwocrError
from models import distributed, easyocr_compat, metrics
from models.charset import load_charset
from models.codec import CTCCodec
from models.crnn import Model, init_weights
from models.data import LmdbDataset, MixedLoader, collate
from models.distributed import World, all_sum, global_batchnorm, world_from_env
from models.pretrained import builtin_charset, load_pretrained, resolve_pretrained, save_checkpoint_state

START = "start.pth"  # the pretrained weights as training began, in this run's character set
GFLOP_PER_SAMPLE = 2.75  # forward+backward at 80x100; scales with the input area


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
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def atomic_save(obj, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_model(s, codec: CTCCodec, log: Callable[[str], None]) -> tuple[Model, dict]:
    torch.manual_seed(s.seed)
    model = Model(input_channel=1, output_channel=256, hidden_size=256, num_class=codec.num_class)
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


def make_optimizer(s, params) -> torch.optim.Optimizer:
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


@torch.no_grad()
def evaluate(model: nn.Module, dataset: LmdbDataset, codec: CTCCodec, device: torch.device, batch_size: int,
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
            targets, lengths = codec.encode(labels)
            log_probs = logits.log_softmax(2).permute(1, 0, 2)
            sizes = torch.full((logits.size(0),), logits.size(1), dtype=torch.int)
            losses.append(float(criterion(log_probs, targets, sizes, lengths)) * len(labels))
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
    return {
        "preds": preds, "gts": gts, "confidences": confs,
        "accuracy": metrics.word_accuracy(preds, gts), "norm_ed": metrics.norm_ed(preds, gts),
        "cer": metrics.cer(preds, gts), "loss": sum(losses) / n if losses else float("nan"),
    }


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


def train(s, train_roots: list[str], val_root: str, out_dir: str, log: Callable[[str], None] = print,
          on_eval: Callable[[int, dict], None] | None = None,
          augment: Callable[[Image.Image, int], Image.Image] | None = None) -> dict:
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


def _train(s, train_roots: list[str], val_root: str, out_dir: str, log: Callable[[str], None],
           on_eval: Callable[[int, dict], None] | None, world: World, device: torch.device,
           augment: Callable[[Image.Image, int], Image.Image] | None) -> dict:
    amp_dtype = autocast_dtype(s.precision, device)
    if amp_dtype is torch.bfloat16 and device.type == "cpu" and not cpu_has_bf16():
        log("WARNING: train.precision bf16 on a CPU without AVX512-BF16 or AMX: oneDNN emulates it, about 20 times "
            "slower than fp32; set train.precision=fp32")
    charset = load_charset(s.charset)
    codec = CTCCodec(charset)
    if len(s.batch_ratio) != len(train_roots):
        raise HwocrError(f"train.batch_ratio {s.batch_ratio} needs one share per training LMDB ({len(train_roots)})")

    datasets = [LmdbDataset(r, charset, s.batch_max_length, s.img_h, s.img_w, s.preprocess, s.max_width)
                for r in train_roots]
    val = LmdbDataset(val_root, charset, s.batch_max_length, s.img_h, s.img_w, s.preprocess, s.max_width)
    dropped = {r: d.dropped for r, d in zip(train_roots, datasets)} | {val_root: val.dropped}
    for root, d in dropped.items():
        if any(d.values()):
            log(f"{root}: dropped {d}")
    loader = MixedLoader(datasets, s.batch_ratio, s.batch_size, seed=s.seed, prefetch=2, share=world.share,
                         augment=augment)

    model, pretrained_report = build_model(s, codec, log)
    start_path = os.path.join(out_dir, START)
    if s.pretrained != "none" and world.main and not os.path.exists(start_path):
        atomic_save(save_checkpoint_state(model), start_path)  # the start, head remapped: scored beside the result
    model.to(device)
    model.FeatureExtraction.recompute = s.recompute_layers
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    if world.size > 1:
        model = global_batchnorm(model, device)
    optimizer = make_optimizer(s, filter(lambda p: p.requires_grad, model.parameters()))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    criterion = nn.CTCLoss(zero_infinity=True)
    per_sample = nn.CTCLoss(zero_infinity=True, reduction="none")

    iteration, best = 0, {"accuracy": -1.0, "norm_ed": -1.0}
    resumed_s = 0.0  # training seconds before a resume: the time budget and the lr schedule span the whole run
    history: list[dict] = []
    last_path = os.path.join(out_dir, "last.pth")
    if os.path.exists(last_path):
        try:
            state = torch.load(last_path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise HwocrError(f"cannot resume from {last_path}: {type(e).__name__}: {e}") from None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["loader"])
        _set_rng_state(state["rng"])
        iteration, best, history = state["iteration"], state["best"], state["history"]
        resumed_s = state.get("elapsed_s", 0.0)
        log(f"resumed from {last_path} at iteration {iteration}")
    net: nn.Module = model
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        log(f"data-parallel over {world.size} processes, {s.batch_size // world.size}+ samples each")

    saved_at = iteration if os.path.exists(last_path) else None

    def checkpoint() -> None:
        nonlocal saved_at
        saved_at = iteration
        atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "loader": loader.state_dict(), "rng": _rng_state(), "iteration": iteration, "best": best,
                     "history": history, "elapsed_s": time.monotonic() - started, "charset": charset,
                     "settings": s.model_dump()}, last_path)

    pin = device.type == "cuda"
    gflop_px = GFLOP_PER_SAMPLE / (80 * 100)  # compute scales with the input area, which varies at natural width
    log_every = max(1, min(s.val_interval // 10, 50))
    started = time.monotonic() - resumed_s
    window_t, window_n, window_loss, window_px = time.monotonic(), 0, 0.0, 0

    validated_at = history[-1]["iteration"] if history else None

    def validate() -> None:
        nonlocal window_t, window_n, window_loss, window_px, validated_at
        validated_at = iteration
        if not world.main:
            distributed.barrier(world)
            window_t, window_n, window_loss, window_px = time.monotonic(), 0, 0.0, 0
            return
        dt = time.monotonic() - window_t
        train_loss = window_loss / window_n
        log(f"[{iteration}/{s.num_iter}] {window_n / dt:.1f} samples/s, {window_px / dt * gflop_px:.0f} GFLOP/s")
        result = evaluate(model, val, codec, device, s.batch_size, amp_dtype, criterion)
        entry = {"iteration": iteration, "train_loss": train_loss, "valid_loss": result["loss"],
                 "accuracy": result["accuracy"], "norm_ed": result["norm_ed"], "cer": result["cer"],
                 "samples_per_s": window_n / dt, "gflops": window_px / dt * gflop_px,
                 "lr": optimizer.param_groups[0]["lr"]}
        history.append(entry)
        for name, file in (("accuracy", "best_accuracy.pth"), ("norm_ed", "best_norm_ED.pth")):
            if result[name] > best[name]:
                best[name] = result[name]
                atomic_save(save_checkpoint_state(model), os.path.join(out_dir, file))
        log(f"[{iteration}/{s.num_iter}] Train loss: {train_loss:0.5f}, Valid loss: {result['loss']:0.5f}, "
            f"Elapsed_time: {time.monotonic() - started:0.1f}\n"
            f"Current_accuracy : {result['accuracy']:0.3f}, Current_norm_ED  : {result['norm_ed']:0.4f}\n"
            f"Best_accuracy    : {best['accuracy']:0.3f}, Best_norm_ED     : {best['norm_ed']:0.4f}\n"
            + sample_table(result))
        checkpoint()
        if on_eval:
            on_eval(iteration, {**entry, "result": result})
        distributed.barrier(world)
        window_t, window_n, window_loss, window_px = time.monotonic(), 0, 0.0, 0

    model.train()
    frozen = None  # whether s.freeze applies now; evaluate() returns the whole model to training mode
    while iteration < s.num_iter:
        if s.freeze and frozen != (now := not s.freeze_iterations or iteration < s.freeze_iterations):
            set_frozen(model, s.freeze, now)
            frozen = now
            log(f"iteration {iteration}: {', '.join(s.freeze)} " + ("frozen" if now else "unfrozen"))
        progress = iteration / s.num_iter
        if s.max_minutes:  # rank 0's clock decides, so every rank stops, and sets its lr, at the same iteration
            elapsed = torch.tensor([time.monotonic() - started if world.main else 0.0], device=device)
            elapsed = float(all_sum(elapsed, world).item())
            if elapsed > s.max_minutes * 60:
                log(f"time budget of {s.max_minutes} minutes reached at iteration {iteration}")
                break
            progress = max(progress, elapsed / (s.max_minutes * 60))
        images, labels = collate(next(loader))
        if pin:
            images = images.pin_memory()
        images = images.to(device, non_blocking=pin)
        if s.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets, lengths = codec.encode(labels)
        with _autocast(device, amp_dtype):
            logits = net(images)
        log_probs = logits.float().log_softmax(2).permute(1, 0, 2)
        sizes = torch.full((logits.size(0),), logits.size(1), dtype=torch.int)
        # CTCLoss's mean over the global batch, split so that DDP's average of the ranks' gradients equals it
        losses = per_sample(log_probs, targets, sizes, lengths) / lengths.clamp_min(1).to(log_probs.device)
        global_n = loader.batch_samples
        loss = losses.sum() * (world.size / global_n)
        batch_loss = all_sum(loss.detach().reshape(1), world) / world.size
        if not torch.isfinite(batch_loss).all():
            kept = (f"the last good checkpoint is {last_path} (iteration {saved_at})" if saved_at is not None
                    else "no checkpoint had been written yet")
            raise HwocrError(f"loss became {float(batch_loss)} at iteration {iteration + 1}; training stopped, {kept}")
        for group in optimizer.param_groups:
            group["lr"] = s.lr * lr_factor(s.lr_schedule, progress)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)  # after DDP's all-reduce: the same on every rank
        scaler.step(optimizer)
        scaler.update()
        iteration += 1
        window_n += global_n
        window_px += global_n * images.shape[2] * images.shape[3]
        window_loss += float(batch_loss) * global_n
        if iteration % log_every == 0:
            dt = time.monotonic() - window_t
            log(f"iter {iteration}: loss {float(batch_loss):.4f}, {window_n / dt:.1f} samples/s, "
                f"{window_px / dt * gflop_px:.0f} GFLOP/s")

        if iteration % s.val_interval == 0 or iteration == s.num_iter:
            validate()
            if frozen:
                set_frozen(model, s.freeze, True)
            if s.early_stop_patience:  # rank 0 saw the validation: every rank stops with it
                stale = stale_validations(history, s.early_stop_metric) if world.main else 0
                stale = int(all_sum(torch.tensor([float(stale)], device=device), world).item())
                if stale >= s.early_stop_patience:
                    log(f"early stop at iteration {iteration}: {s.early_stop_metric} has not improved for {stale} "
                        f"validations (patience {s.early_stop_patience})")
                    break
    if iteration and validated_at != iteration:
        validate()  # stopped by the time budget between validations
    return {"iterations": iteration, "best_accuracy": best["accuracy"], "best_norm_ed": best["norm_ed"],
            "history": history, "checkpoint": os.path.join(out_dir, "best_accuracy.pth"), "dropped": dropped,
            "start": start_path if os.path.exists(start_path) else None,
            "pretrained": pretrained_report, "device": str(device), "precision": str(amp_dtype or "fp32"),
            "gflops": math.nan if not history else history[-1]["gflops"]}
