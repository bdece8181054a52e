"""fine_tune: LMDBs -> checkpoints in <out>/runs/<key>/, tracked in MLflow, cached on content."""

from __future__ import annotations

import os

from prefect import get_run_logger

from hwocr import hashing, storage
from hwocr.layout import Layout
from models import ddp_train
from models.train_settings import TrainSettings
from synth.effects import CRAFT_MARGINS
from tasks.stage import StageInput, StageResult, stage
from tracking.runs import end_failed, finish_run, log_eval, start_run
from tracking.settings import TrackingSettings

# ddp_train's too (imported here for torchrun's -m), and the crops train.augment's craft_crop draws from
CODE_VERSION = hashing.code_version(__file__, data=(str(CRAFT_MARGINS),))
DONE = "done.json"
WORK_DIRS: list[str] = []  # the run folders trained in by this process, for an interrupted run's last words


class TrainResult(StageResult):
    """A finished training: its run folder, best checkpoint, figures and MLflow run."""

    checkpoint: str
    run_dir: str
    start_checkpoint: str | None
    best_accuracy: float
    best_norm_ed: float
    iterations: int
    mlflow_run_id: str | None
    model_uri: str | None = None
    registered_version: int | None = None
    history: list[dict] = []
    dropped: dict

    def complete(self) -> bool:
        return storage.exists(self.checkpoint)


class TrainInput(StageInput):
    settings: TrainSettings
    train_lmdbs: list[str]
    val_lmdb: str
    digests: dict[str, str]  # LMDB URL -> content digest
    layout: Layout

    def reads(self) -> dict:
        """Settings, data, and the content behind names and paths: the character sets' characters and the
        pretrained checkpoint's bytes (a file edited or replaced in place trains again)."""
        from models.charset import charset_digest
        from models.pretrained import pretrained_digest

        s = self.settings
        return {"settings": s.model_dump(mode="json"), "charset": charset_digest(s.charset),
                "source_charset": s.source_charset and charset_digest(s.source_charset),
                "pretrained": pretrained_digest(s.pretrained),
                "train": [self.digests[u] for u in self.train_lmdbs], "val": self.digests[self.val_lmdb]}

    def marker(self, key: str) -> str:
        return storage.join(self.layout.run(key), DONE)


def fine_tune_fn(inp: TrainInput, tracking: TrackingSettings, *, key: str) -> TrainResult:
    settings, train_lmdbs, val_lmdb, digests = inp.settings, inp.train_lmdbs, inp.val_lmdb, inp.digests
    run_dir = inp.layout.run(key)
    log = get_run_logger()
    from models.pretrained import check_layout

    check_layout(settings)  # a missing, corrupt or misfitting checkpoint fails before an MLflow run exists
    # A remote run folder trains in a local work folder (which also keeps last.pth for resuming on this machine)
    # and receives the checkpoints and, last, done.json.
    local_dir = (storage.local_path(run_dir) if storage.is_local(run_dir)
                 else os.path.join(storage.CACHE_DIR, "runs", key[:16]))
    os.makedirs(local_dir, exist_ok=True)
    WORK_DIRS.append(local_dir)
    # Training reads LMDBs from a local disk: a remote one is fetched once into the cache, by content digest.
    local = [storage.local_copy(u, "lmdb", digests[u]) for u in [*train_lmdbs, val_lmdb]]
    run_id = start_run(tracking, local_dir, {"train": settings.model_dump(mode="json"), "key": key},
                       [("training", {"url": u, "digest": digests[u]}) for u in train_lmdbs]
                       + [("validation", {"url": val_lmdb, "digest": digests[val_lmdb]})])
    try:
        result, model = ddp_train.fit(settings, local[:-1], local[-1], local_dir, log.info, log_eval)
        logged = finish_run(tracking, local_dir, model, result)
    except BaseException:
        end_failed()
        raise
    if not storage.is_local(run_dir):
        storage.upload_files(local_dir, run_dir, ["best_accuracy.pth", "best_norm_ED.pth", "last.pth"]
                             + (["start.pth"] if result.get("start") else []))
    return TrainResult(checkpoint=storage.join(run_dir, "best_accuracy.pth"), run_dir=run_dir,
                       start_checkpoint=storage.join(run_dir, "start.pth") if result.get("start") else None,
                       best_accuracy=result["best_accuracy"], best_norm_ed=result["best_norm_ed"],
                       iterations=result["iterations"], mlflow_run_id=run_id, **logged, history=result["history"],
                       dropped=result["dropped"])


fine_tune = stage(name="fine_tune", code=CODE_VERSION, result=TrainResult)(fine_tune_fn)
