"""bench/yardstick.py: the fixed-budget protocol's table and the machine it names (its runs are the bench's)."""

import os

import pytest

from tests.conftest import bench_script


@pytest.fixture(scope="module")
def yardstick():
    return bench_script("yardstick")


def _row(name, budget, **figures):
    return {"name": name, "budget": budget, "iterations": budget["iterations"], "cpu": "EPYC, 2 cores, AVX2",
            "precision": "fp32", **{k: figures.get(k) for k in ("val", "regression", "test_easyocr", "photo", "pages")}}


def test_each_row_is_compared_with_the_baseline_of_its_own_budget(yardstick):
    short, long = {"iterations": 2000, "count": 20000}, {"iterations": 4000, "count": 20000}
    rows = [_row("baseline", short, val=90.0, test_easyocr=80.0, photo=70.0, pages=60.0),
            _row("stroke", short, val=89.5, test_easyocr=82.5, photo=71.0, pages=None),
            _row("stroke", long, val=91.0, test_easyocr=84.0, photo=75.0, pages=65.0)]
    lines = yardstick.table(rows).splitlines()
    assert lines[2].startswith("| baseline | 2000 | 90.00% | - | 80.00% | 70.00% | 60.00% |")
    assert lines[3].startswith("| stroke | 2000 | 89.50% (-0.50) | - | 82.50% (+2.50) | 71.00% (+1.00) | - |")
    # No baseline of 4,000 iterations: the figures stand alone, not against another budget's anchor.
    assert lines[4].startswith("| stroke | 4000 | 91.00% | - | 84.00% | 75.00% | 65.00% |")
    assert lines[4].endswith("| EPYC, 2 cores, AVX2, fp32 |")
    # A changed preset is another recipe: its rows compare with its own baseline, never the old one's.
    rows += [{**_row("baseline-craft", short, val=91.0, test_easyocr=81.0, photo=74.0, pages=70.0), "recipe": "b"},
             {**_row("elastic", short, val=90.0, test_easyocr=82.0, photo=74.5, pages=69.0), "recipe": "b"}]
    lines = yardstick.table(rows).splitlines()
    assert lines[3].startswith("| stroke | 2000 | 89.50% (-0.50) |")
    assert lines[6].startswith("| elastic | 2000 | 90.00% (-1.00) | - | 82.00% (+1.00) | 74.50% (+0.50) |")


def test_the_machine_is_named_with_the_precision_auto_trains_in(yardstick):
    from models.trainer import cpu_has_bf16

    cpu, precision = yardstick.cpu_kind()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    kind = "AMX" if "amx_tile" in flags else "AVX512-BF16" if "avx512_bf16" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    assert cpu.endswith(f"{os.cpu_count()} cores, {kind}")
    assert precision == ("bf16" if cpu_has_bf16() else "fp32")


def test_craft_margins_are_measured_on_single_word_boxes_only():
    from models.pages import Word

    margins = bench_script("craft_margins").margins
    words = [Word(label, (x0, 100, x1, 120), 0) for label, x0, x1 in (("가", 100, 140), ("나", 200, 250),
                                                                       ("다", 400, 430))]
    # [x_min, x_max, y_min, y_max]: one box around the first word (4 px above, 2 below, 6 left, 8 right of its
    # ink, 20 px high), one over the second and third (merged).
    found = [[[94, 148, 96, 122], [190, 440, 90, 130]], []]
    rows, counts = margins(words, found)
    assert rows == [[0.2, 0.1, 0.3, 0.4]]
    assert counts == {"merged_boxes": 1, "split_words": 0, "missed_words": 0, "cut_words": 0}
    # A word whose centre two boxes hold (split) gives no row; a free quadrilateral counts by its rectangle; a word
    # under no box is missed.
    found = [[[94, 121, 96, 122], [119, 148, 96, 122]], [[[195, 95], [255, 95], [255, 125], [195, 125]]]]
    rows, counts = margins(words, found)
    assert rows == [[0.25, 0.25, 0.25, 0.25]]
    assert counts == {"merged_boxes": 0, "split_words": 1, "missed_words": 1, "cut_words": 0}
    # A box that holds a word's centre but cuts a third of its height off the left: part of the word is elsewhere.
    rows, counts = margins(words[:1], [[[113, 148, 96, 122]], []])
    assert rows == [] and counts["cut_words"] == 1
