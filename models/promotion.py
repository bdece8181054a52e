"""The rule that moves the registry's `champion` alias (tracking/registry.py applies it): a newly trained model takes it
only when it reads every real test source better than the champion does (both read the same images, now) and loses
at most REGRESSION_POINTS on the print regression split. Without a champion, the model it started from is the one
to beat."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

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
