"""The registry's `champion` alias: it moves to a newly trained model only when the model reads every real test
source better than the champion does (both read the same images, now) and loses at most REGRESSION_POINTS on the
print regression split. Without a champion, the model it started from is the one to beat."""

from __future__ import annotations

import os

from prefect import task
from pydantic import BaseModel, ConfigDict

from hwocr import storage
from hwocr.layout import Layout
from tasks.tracking_settings import TrackingSettings

ALIAS = "champion"
REGRESSION_POINTS = 1.0  # the print regression split may lose this much and the model still be promoted


class Decision(BaseModel):
    """What the rule said of a model: whether the alias moved to it, and why, a line a rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    moved: bool
    version: int | None  # the candidate's registered version
    champion: int | None  # the version the alias points at after the decision
    against: str  # what the candidate was compared with: "champion version N", "the start", "nothing"
    reasons: list[str]

    def line(self) -> str:
        head = (f"champion: moved to version {self.version}" if self.moved
                else f"champion: stays {'at version ' + str(self.champion) if self.champion else 'unset'}")
        return f"{head} (against {self.against}: {'; '.join(self.reasons)})"


def rule(candidate: dict[str, float], incumbent: dict[str, float], regression: tuple[float, float] | None,
         points: float = REGRESSION_POINTS) -> tuple[bool, list[str]]:
    """(whether the candidate wins, a reason per source and for the regression split). candidate and incumbent:
    accuracy per real test source; regression: (candidate, incumbent) on the print split, or None without one."""
    if not candidate:
        return False, ["no real test source to judge by (real.sources with a test split)"]
    wins, reasons = True, []
    for name, acc in candidate.items():
        was = incumbent.get(name)
        better = was is None or acc > was
        wins &= better
        reasons.append(f"real {name} {acc:.2f}% {'>' if better else '<='} {'-' if was is None else f'{was:.2f}%'}"
                       + ("" if better else " (must improve)"))
    if regression is not None:
        lost = regression[1] - regression[0]
        ok = lost <= points
        wins &= ok
        reasons.append(f"regression {regression[0]:.2f}% vs {regression[1]:.2f}% ({-lost:+.2f} points; at most "
                       f"-{points:g} allowed)")
    return wins, reasons


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


@task(name="judge_champion")
def judge_champion(tracking: TrackingSettings, layout: Layout, version: int | None, run_id: str | None,
                   real: dict[str, dict], regression: dict | None) -> Decision:
    """Move the alias to `version` when the rule holds. real: per source, {"lmdb", "accuracy", "start"} of its test
    split; regression: {"lmdb", "accuracy", "start"} of the print split, or None."""
    from tasks.track import connect

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
