"""Bad input at the command line: exit status 2, a message naming the problem, nothing written."""

import subprocess
import sys


def hwocr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hwocr.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_unknown_setting_key(tmp_path):
    p = hwocr("data", "--out", str(tmp_path / "o"), "--set", "render.cont=5")
    assert p.returncode == 2
    assert "unknown setting 'render.cont' (did you mean render.count?)" in p.stderr
    assert not (tmp_path / "o").exists()


def test_zero_count(tmp_path):
    p = hwocr("data", "--out", str(tmp_path / "o"), "--set", "render.val_count=0")
    assert p.returncode == 2 and "render.val_count: Input should be greater than 0 (got 0)" in p.stderr
    assert not (tmp_path / "o").exists()


def test_pack_gt_errors_exit_2(tmp_path):
    (tmp_path / "gt.txt").write_text("a.png label with no tab\n", encoding="utf-8")
    p = hwocr("pack", "--gt", str(tmp_path / "gt.txt"), "--images", str(tmp_path), "--out", str(tmp_path / "db"))
    assert p.returncode == 2 and "gt.txt line 1: expected 'path<TAB>label', found no tab" in p.stderr
    assert not (tmp_path / "db").exists()
