"""Crash safety: a killed run or a killed render worker never leaves a shard or LMDB taken for complete."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from conftest import FONTS, read_lmdb

pytestmark = pytest.mark.slow  # see pyproject.toml's markers


def _args(words_file, out, count=1500):
    return [sys.executable, "-m", "flows.cli", "data", "--out", str(out), "--json",
            "--set", f"render.words={words_file}", "--set", f"render.count={count}", "--set", "render.val_count=30",
            "--set", "render.shards=3", "--set", "render.workers=2", "--set", "render.min_shard_images=1",
            "--set", f"render.fonts=[{FONTS['pen']}, {FONTS['pilgi']}]"]


def _partial_shard(out) -> bool:
    root = os.path.join(out, "shards", "train")
    if not os.path.isdir(root):
        return False
    for name in os.listdir(root):
        images = os.path.join(root, name, "images")
        if name.startswith(".") and os.path.isdir(images) and os.listdir(images):
            return True
    return False


def _wait_for(predicate, proc=None, limit=180.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"run ended (rc={proc.returncode}) before the condition held")
        if time.monotonic() > deadline:
            pytest.fail("condition never held")
        time.sleep(0.002)


def descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run_json(args, env) -> dict:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_killed_run_resumes_to_the_same_dataset(tmp_path, words_file, prefect_api):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    out = tmp_path / "crash"
    proc = subprocess.Popen(_args(words_file, out), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _partial_shard(out), proc)
        below = descendants(proc.pid)  # the render workers, and the temporary Prefect server in a group of its own
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert any("server start" in _cmdline(pid) for pid in below)
    _wait_for(lambda: not [pid for pid in below if _alive(pid)], limit=30)  # nothing outlives the killed run
    # Packing follows rendering, so a staging folder may be there: never an LMDB or a gt.txt.
    lmdbs = os.listdir(out / "lmdb") if (out / "lmdb").exists() else []
    assert not [n for n in lmdbs if not n.startswith(".")] and not (out / "train" / "gt.txt").exists()

    # The killed run had its temporary server; the two compared here need none of their own.
    resumed = _run_json(_args(words_file, out), {**env, **prefect_api})
    clean = _run_json(_args(words_file, tmp_path / "clean"), {**env, **prefect_api})
    assert resumed["shards"]["rendered"] >= 1
    sh = resumed["shards"]
    assert sh["rendered"] + sh["cached"] == sh["total"]
    for split in ("train", "val"):
        assert read_lmdb(resumed["splits"][split]["lmdb"]) == read_lmdb(clean["splits"][split]["lmdb"])
    # The --json contract.
    train = resumed["splits"]["train"]
    assert set(train) >= {"lmdb", "gt", "samples", "dropped"} and train["samples"] == 1500
    assert set(resumed["shards"]) == {"total", "rendered", "cached"}
    assert not [n for n in os.listdir(out / "shards" / "train") if n.startswith(".")]
    assert not [n for n in os.listdir(out / "lmdb") if n.startswith(".")]


@pytest.mark.usefixtures("prefect")
def test_killed_render_worker_is_retried(tmp_path, make_config):
    from flows.dataset import dataset_flow
    from synth.pool import POOL

    out = tmp_path / "out"
    killed = []

    def killer():
        _wait_for(lambda: _partial_shard(out))
        pid = next(iter(POOL.executor._processes))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result = dataset_flow(config=make_config(out, "render.count=1200"))
    t.join(timeout=10)
    assert killed, "no worker was killed"
    dataset_flow(config=make_config(tmp_path / "clean", "render.count=1200"))
    assert result["splits"]["train"]["samples"] == 1200
    assert read_lmdb(out / "lmdb" / "train") == read_lmdb(tmp_path / "clean" / "lmdb" / "train")


def test_a_cli_killed_alone_takes_its_render_workers_with_it(tmp_path, words_file, prefect_api):
    """SIGKILL to the CLI's process alone (a supervisor's kill -9), not its group: its render workers see their
    parent gone and end within a second or so, rather than render on as orphans."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), **prefect_api}
    out = tmp_path / "crash"
    proc = subprocess.Popen(_args(words_file, out, count=20000), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _partial_shard(out), proc)
        workers = [pid for pid in descendants(proc.pid) if "multiprocessing" in _cmdline(pid)]
        assert workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_for(lambda: not [pid for pid in workers if _alive(pid)], limit=30)  # about a second when idle
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def small_disk(tmp_path):
    """A 70 MB tmpfs of its own: a disk that fills up (mount needs root, as CI and the dev machines have)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=70m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("no permission to mount a tmpfs here: the full-disk test needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_disk_that_fills_during_rendering_ends_in_one_line_and_keeps_nothing_half_written(small_disk, words_file,
                                                                                              tmp_path, prefect_api):
    """The plan fits when it is checked; then something else takes the disk. One `hwocr: error:` line names the
    path, the bytes free and those the plan still needs; exit 2; no staging folder is left."""
    import shutil

    out = small_disk / "out"
    args = _args(words_file, out, count=4000)
    args[args.index("render.shards=3")] = "render.shards=8"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), **prefect_api}
    proc = subprocess.Popen(args[:args.index("--json")] + args[args.index("--json") + 1:], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "shards").exists(), proc, limit=120)
        free = shutil.disk_usage(small_disk).free
        subprocess.run(["fallocate", "-l", str(free - 200_000), str(small_disk / "filler")], check=True)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    errors = [line for line in err.splitlines() if line.startswith("hwocr: error")]
    assert proc.returncode == 2, err[-3000:]
    # Where it ran out (a shard's staging, the LMDB being packed behind it, Prefect's records, the log) depends on
    # the race with the filler; the run's end names it.
    assert len(errors) == 1 and errors[0].startswith(f"hwocr: error: no space left writing {out}"), err[-3000:]
    assert "--- Logging error ---" not in err
    left = [os.path.join(root, d) for root, dirs, _ in os.walk(out) for d in dirs if d.startswith(".")]
    assert not left and not (out / "lmdb" / "train" / "data.mdb").exists()
