"""judge_champion: the stage that moves the registry's `champion` alias by its rule (tracking/registry.py)."""

from __future__ import annotations

from prefect import task

from tracking.registry import judge

judge_champion = task(judge, name="judge_champion")
