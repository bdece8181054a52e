import os

import pytest

from flows.config import PipelineConfig, load_config
from hwocr.errors import HwocrError


def test_seed_preset_has_the_seed_values():
    c = load_config("seed")
    r = c.render
    assert (r.count, r.val_count, r.height, r.background) == (100_000, 1_000, 80, 1)
    assert r.margins == (0, 0, 0, 0) and r.skew_angle == 15 and r.random_skew and r.language == "ko"
    assert r.batch_max_length == 25


def test_quick_preset_and_overrides():
    c = load_config("quick", ["render.count=2000", "render.margins=[1,2,3,4]", "pack.commit_every=7"], out="/x")
    assert c.render.count == 2000 and c.render.margins == (1, 2, 3, 4) and c.pack.commit_every == 7
    assert c.out == "/x"


def test_unknown_setting_key_suggests():
    with pytest.raises(HwocrError, match=r"unknown setting 'render.cont' \(did you mean render.count\?\)"):
        load_config("quick", ["render.cont=5"])


@pytest.mark.parametrize("value", ["0", "-5"])
def test_counts_must_be_positive(value):
    with pytest.raises(HwocrError,
                       match=rf"render.count: Input should be greater than 0 \(got {value}, from --set render.count="):
        load_config("quick", [f"render.count={value}"])


def test_an_invalid_value_is_blamed_on_where_it_came_from(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("render:\n  count: -3\n", encoding="utf-8")
    with pytest.raises(HwocrError, match=rf"render.count: Input should be greater than 0 \(got -3, from {preset}\)"):
        load_config(str(preset))
    with pytest.raises(HwocrError, match=r"render.count: .* \(got 'abc', from --set render.count=abc\)$"):
        load_config(str(preset), ["render.count=abc"])


def test_override_without_equals():
    with pytest.raises(HwocrError, match="expected KEY=VALUE"):
        load_config(None, ["render.count"])


def test_missing_config_file():
    with pytest.raises(HwocrError, match="config file 'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_every_setting_has_a_description():
    from flows.config import PipelineConfig

    schema = PipelineConfig.model_json_schema()
    for name in ("RenderSettings", "PackSettings"):
        props = schema["$defs"][name]["properties"]
        missing = [k for k, v in props.items() if not v.get("description")]
        assert not missing, f"{name} fields without description: {missing}"


def test_test_split_needs_held_out_fonts():
    with pytest.raises(HwocrError, match="test_count needs test_fonts"):
        load_config("quick", ["render.test_count=10"])


def test_every_preset_validates():
    from flows.config import list_presets

    presets = list_presets()
    assert {"quick", "seed", "cpu-reference"} <= set(presets)
    for name in presets:
        load_config(name)


@pytest.mark.parametrize("override, message", [
    ("render.effects.elastic.alpha=50", r"render\.effects\.elastic\.alpha: Input should be less than or equal to 10"),
    ("render.effects.paper.probability=1.5", r"render\.effects\.paper\.probability"),
    ("render.pool.print_ratio=2", r"render\.pool\.print_ratio"),
])
def test_effect_and_pool_settings_out_of_range(override, message):
    with pytest.raises(HwocrError, match=message):
        load_config(None, [override])


def test_pool_replaces_font_lists():
    with pytest.raises(HwocrError, match="pool replaces fonts and test_fonts"):
        load_config(None, ["render.pool.print_ratio=0.2",
                           "render.fonts=[/usr/share/fonts/truetype/nanum/NanumPen.ttf]"])


@pytest.mark.parametrize("preset", ["quick", "seed", "cpu-reference", "smoke"])
def test_preset_survives_prefects_round_trip(preset):
    # Prefect validates a flow's parameters from their JSON dump, where every field counts as set.
    cfg = load_config(preset)
    assert PipelineConfig.model_validate(cfg.model_dump(mode="json")) == cfg


ABLATION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "ablation.py")


@pytest.fixture(scope="module")
def ablation():
    from tests.conftest import bench_script

    return bench_script("ablation")


def test_ablation_rows_switch_exactly_their_effects_and_the_print_row_is_the_preset(ablation):
    def on(row: str) -> tuple[set, bool, set]:
        cfg = load_config("cpu-reference", ablation.overrides(row))
        return set(cfg.render.effects.names_on()), cfg.render.glyph_jitter.on, set(cfg.train.augment.names_on())

    effects = set(ablation.ORDER)
    kept = {"craft_crop"}  # the preset's own training-time augmentation: every row keeps it
    assert set(load_config("cpu-reference").train.augment.names_on()) == kept
    assert on("all") == (effects, True, kept)
    assert on("baseline") == (set(), False, kept)
    assert load_config("cpu-reference") == load_config("cpu-reference", ablation.overrides("print"))
    assert on("augment") == (set(), False, effects)
    assert on("glyph_jitter") == (set(), True, kept)
    assert on("print") == (set(), False, kept)
    for row in ablation.ROWS:
        ratio = load_config("cpu-reference", ablation.overrides(row)).render.pool.print_ratio
        assert ratio == (ablation.PRINT_RATIO if row == "print" else 0.0), row
    for name in ablation.ORDER:
        assert on(name) == ({name}, False, kept)
    assert on(ablation.START) == (set(), False, kept)
    assert load_config("cpu-reference", ablation.overrides(ablation.START)).render.pool.print_ratio == 1.0
    assert ablation.budget(60, None) == ["train.max_minutes=60"]
    cfg = load_config("cpu-reference", ablation.budget(60, 1500))
    assert (cfg.train.max_minutes, cfg.train.num_iter) == (0, 1500)


def test_ablation_reuses_a_recorded_baseline_only_of_the_same_budget_and_settings(tmp_path, ablation):
    import json

    record = tmp_path / "ablation.json"
    assert ablation.reusable_anchor(str(record), {"minutes": 60, "iterations": None}, []) == []
    rows = [{"row": "baseline", "budget": {"minutes": 60, "iterations": None}},
            {"row": "all", "budget": {"minutes": 60, "iterations": None}}]
    record.write_text(json.dumps(rows))
    assert ablation.reusable_anchor(str(record), {"minutes": 60, "iterations": None}, []) == rows
    assert ablation.reusable_anchor(str(record), {"minutes": 30, "iterations": None}, []) == []
    assert ablation.reusable_anchor(str(record), {"minutes": 60, "iterations": None}, ["render.count=10"]) == []
    record.write_text(json.dumps(rows[1:]))
    assert ablation.reusable_anchor(str(record), {"minutes": 60, "iterations": None}, []) == []


@pytest.mark.parametrize("args, message", [
    (["--set", "train.num_iter=5"], "train.num_iter is set by each row or by --minutes/--iterations"),
    (["--set", "render.effects.elastic.enabled=true"], "render.effects is set by each row"),
    (["--set", "render.pool.print_ratio=0.5"], "render.pool.print_ratio is set by each row"),
    (["--set", "render.count"], "expected KEY=VALUE"),
    (["--start", "100", "--set", "train.pretrained=korean_g2"], "train.pretrained is set by each row or by"),
    (["--iterations", "0"], "must be a positive number of iterations, got 0"),
    (["--start", "0"], "must be a positive number of iterations, got 0"),
    (["--minutes", "-1"], "--minutes must be positive, got -1"),
])
def test_ablation_refuses_settings_the_rows_control_before_running(tmp_path, args, message):
    import subprocess
    import sys

    out = tmp_path / "ablation"
    proc = subprocess.run([sys.executable, ABLATION, "--out", str(out), "--rows", "baseline", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not out.exists()


def test_ablation_table_shows_the_start_row_first_and_names_it_in_the_title(capsys, ablation):
    def row(name: str, val: float, plain: float, test: float) -> dict:
        return {"row": name, "iterations": 250, "val": {"accuracy": val}, "val_plain": {"accuracy": plain},
                "test": {"accuracy": test, "norm_ed": 0.5}}

    results = [row("baseline", 80.0, 80.0, 60.0), row("elastic", 70.0, 78.5, 62.5), row("start", 90.0, 40.0, 30.0)]
    ablation.print_table(results, {"minutes": 60, "iterations": 250, "start": 1000}, ["render.count=40000"])
    lines = capsys.readouterr().out.splitlines()
    assert "250 iterations a row" in lines[0]
    assert "fine-tuned from `start` (1000 iterations on print faces only)" in lines[0]
    assert "every row with render.count=40000" in lines[0]
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| start", "| baseline", "| elastic"]
    assert "| 40.0% | -40.0 points | 30.0% |" in lines[3]
    assert "| 78.5% | -1.5 points | 62.5% | 0.500 | +2.5 points |" in lines[5]


def test_the_prefect_form_builds_the_config():
    from flows.config import PipelineConfig, config_from_form

    c = config_from_form("seed", {"out": "/tmp/o", "train.num_iter": 7, "render.count": None},
                         ["train.batch_size=64"])
    assert (c.out, c.train.num_iter, c.render.count, c.train.batch_size) == ("/tmp/o", 7, 100000, 64)
    assert c.train.pretrained == "korean_g2"  # the rest is the preset's
    given = PipelineConfig(out="/tmp/given")
    assert config_from_form("seed", {"train.num_iter": 3}, [], given).out == "/tmp/given"  # config wins over preset
    with pytest.raises(HwocrError, match=r"invalid settings: render.count: Input should be greater than 0 "
                       r"\(got 0, from the form's render.count\)"):
        config_from_form("quick", {"render.count": 0})
    with pytest.raises(HwocrError, match="unknown setting 'train.num_it'"):
        config_from_form("quick", {}, ["train.num_it=3"])
