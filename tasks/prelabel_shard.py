"""prelabel_shard: a shard of a scan folder read by a model (models/prelabeling.py), its crops and rows stored under the
review folder, cached on the images' content, the model and the settings."""

from __future__ import annotations

import json
import os
import tempfile

from hwocr import hashing, storage
from models.easyocr_venv import SCRIPT
from models.prelabeling import PrelabelSettings, read_images
from tasks.stage import IO_RETRY, StageInput, StageResult, stage

CODE_VERSION = hashing.code_version(__file__, SCRIPT)
ROWS = "rows.json"


def shard_url(out: str, key: str) -> str:
    return storage.join(out, ".shards", key[:16])


class ShardRead(StageResult):
    url: str
    images: int
    words: int

    def rows(self) -> list[dict]:
        return json.loads(storage.read_text(storage.join(self.url, ROWS)))

    def complete(self) -> bool:
        return storage.exists(storage.join(self.url, ROWS))


class PrelabelInput(StageInput):
    images: str  # the folder
    names: list[str]  # this shard's images in it
    digests: list[str]  # their content
    bundle: str
    bundle_digest: str
    settings: PrelabelSettings
    out: str  # the review folder

    def reads(self) -> dict:
        return {"images": list(zip(self.names, self.digests)), "model": self.bundle_digest,
                "settings": self.settings.model_dump(mode="json")}

    def marker(self, key: str) -> str:
        return storage.join(shard_url(self.out, key), "shard.json")


def prelabel_shard_fn(inp: PrelabelInput, *, key: str) -> ShardRead:
    """Read the named images of the folder with the bundle; the crops go to out/crops/, the rows beside this
    stage's marker (written last)."""
    out = inp.out
    with tempfile.TemporaryDirectory(prefix="hwocr-prelabel-") as scratch:
        rows = read_images(inp.bundle, inp.images, inp.names, inp.settings, scratch)
        crops = [w["crop"] for r in rows for w in r["words"]]
        for crop in crops:
            with open(os.path.join(scratch, crop), "rb") as f:
                storage.write_bytes(storage.join(out, crop), f.read())
    url = shard_url(out, key)
    storage.write_text(storage.join(url, ROWS), json.dumps(rows, ensure_ascii=False))
    return ShardRead(url=url, images=len(rows), words=len(crops))


prelabel_shard = stage(name="prelabel_shard", code=CODE_VERSION, result=ShardRead,
                       task_run_name="prelabel {inp.names[0]}", **IO_RETRY)(prelabel_shard_fn)
