"""The registry's `champion` alias, moved by the rule of models/promotion.py: the champion's figures read now, on the
same images as the candidate's (tasks/champion.py is the stage)."""

from __future__ import annotations

import os

from hwocr import storage
from hwocr.layout import Layout
from models.promotion import Decision, rule
from tracking.runs import connect
from tracking.settings import TrackingSettings

ALIAS = "champion"


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _champion_scores(client, champion, layout: Layout, lmdbs: dict[str, str]) -> dict[str, float]:
    """The champion's accuracy on the given LMDBs now: its checkpoint, from its MLflow run, read as its contract
    says."""
    from models.evaluation import evaluate_checkpoint

    folder = layout.join("champion", f"v{champion.version}")
    local = storage.local_path(folder) if storage.is_local(folder) else os.path.join(storage.CACHE_DIR, "champion")
    os.makedirs(local, exist_ok=True)
    ckpt = client.download_artifacts(champion.run_id, "checkpoints/best_accuracy.pth", local)
    return {name: evaluate_checkpoint(ckpt, url, storage.join(folder, "eval", name))["accuracy"]
            for name, url in lmdbs.items()}


def judge(tracking: TrackingSettings, layout: Layout, version: int | None, run_id: str | None,
                   real: dict[str, dict], regression: dict | None) -> Decision:
    """Move the alias to `version` when the rule holds. real: per source, {"lmdb", "accuracy", "start"} of its test
    split; regression: {"lmdb", "accuracy", "start"} of the print split, or None."""
    client = connect(tracking)
    name = tracking.registered_model
    current = _champion(client, name)
    if version is None:
        return Decision(moved=False, version=None, champion=current and int(current.version), against="nothing",
                        reasons=["the model was not registered"])
    if current is not None and int(current.version) == version:
        return Decision(moved=False, version=version, champion=version, against=f"champion version {version}",
                        reasons=["it is the champion already (a cached run)"])
    candidate = {n: r["accuracy"] for n, r in real.items()}
    if current is not None:
        against = f"champion version {current.version}"
        lmdbs = {n: r["lmdb"] for n, r in real.items()} | ({"regression": regression["lmdb"]} if regression else {})
        scores = _champion_scores(client, current, layout, lmdbs)
        incumbent = {n: scores[n] for n in real}
        reg = (regression["accuracy"], scores["regression"]) if regression else None
    else:
        against = "the start (no champion yet)"
        incumbent = {n: r["start"] for n, r in real.items() if r.get("start") is not None}
        reg = (regression["accuracy"], regression["start"]) if regression and regression.get("start") is not None \
            else None
    moved, reasons = rule(candidate, incumbent, reg)
    if moved:
        client.set_registered_model_alias(name, ALIAS, str(version))
    if run_id:
        client.set_tag(run_id, "hwocr.champion", "moved" if moved else "kept")
        client.set_tag(run_id, "hwocr.champion_rule", "; ".join(reasons)[:5000])
    return Decision(moved=moved, version=version, champion=version if moved else current and int(current.version),
                    against=against, reasons=reasons)
