"""The prelabel flow: a folder of scans -> a review folder (Label.txt with every word's box, prediction, confidence
and status, the crops, a summary), read by a model as EasyOCR reads it."""

from __future__ import annotations

import hashlib
import os
from typing import Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import PositiveInt

from flows.records import stages_at
from hwocr import hashing, storage
from models import prelabeling as pl
from models.reading import bundle_reading
from tasks.prelabel_shard import PrelabelInput, prelabel_shard


def bundle_of(model: str, out: str) -> tuple[str, str]:
    """(a local bundle folder, a digest of its network and weights): the model itself when it is a bundle, else the
    checkpoint exported into out/.model."""
    from models.bundle import ExportSettings, export_easyocr_fn
    from models.easyocr_venv import bundle_name

    local = storage.local_copy(model, "models")
    if not os.path.isdir(local):
        local = export_easyocr_fn(model, storage.join(out, ".model"), ExportSettings())["dir"]
        local = storage.local_copy(local, "models")
    name = bundle_name(local)
    h = hashlib.sha256()
    for ext in ("yaml", "pth"):
        h.update(hashing.sha256_url(os.path.join(local, f"{name}.{ext}")).encode())
    return local, h.hexdigest()


def on_shard(images: int) -> None:
    """Called with each shard's image count as it is done (a cached one at once); the CLI puts its progress bar
    here."""


# One shard at a time: each runs EasyOCR's detector and recognizer on every core there is, and two at once on a
# few cores slow each other down (the pipeline's check measured 2.2x).
@flow(name="hwocr-prelabel", validate_parameters=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def prelabel_flow(images: str, model: str, out: str, kind: Literal["auto", "pages", "crops"] = "auto",
                  shard_size: PositiveInt = 25, detector: pl.DetectorSettings | None = None) -> dict:
    """Read every image of a folder with a model as EasyOCR reads it, into a folder a person reviews.

    Args:
        images: The folder of scans (pages, or crops of one word each): local or an fsspec URL.
        model: An exported bundle folder, or a checkpoint (exported first).
        out: The review folder to write (Label.txt, crops/, prelabel.json, the images).
        kind: pages (find the words with EasyOCR's detector), crops (one word an image), or auto.
        shard_size: Images a shard: the unit of caching and retries.
        detector: readtext's box settings (EasyOCR's defaults).
    """
    images, out = storage.normalize(images), storage.normalize(out)
    settings = pl.PrelabelSettings(kind=kind, shard_size=shard_size, detector=detector or pl.DetectorSettings())
    pl.check_out(out)
    names = pl.list_images(images)
    digests = [hashing.sha256_url(storage.join(images, name)) for name in names]
    bundle, bundle_digest = bundle_of(storage.normalize(model), out)
    charset = bundle_reading(bundle)[1].charset
    pl.check_charset(images, charset, model)
    step = settings.shard_size
    shards = [(names[i:i + step], digests[i:i + step]) for i in range(0, len(names), step)]
    [task] = stages_at(storage.join(out, ".prefect-results"), prelabel_shard)
    futures = task.map([PrelabelInput(images=images, names=n, digests=d, bundle=bundle, bundle_digest=bundle_digest,
                                      settings=settings, out=out) for n, d in shards])
    rows = []
    for future in futures:  # in order: shards run one at a time
        shard = future.result()
        rows += shard.rows()
        on_shard(shard.images)
    result = pl.write_folder(out, images, rows, charset, pl.against_truth(images, rows))
    get_run_logger().info("prelabel: %d images, %d words, into %s", result["images"], result["words"], out)
    return result
