"""Two runs of one config on one output at once: both succeed, each stage's output is written once (the other run
waits for it and takes it as a cache hit), and the output is a single run's.

The runs are real `hwocr` processes sharing one Prefect home (two temporary servers on one database). So that
they provably overlap, a gate process takes the locks of the stages they meet first and is SIGKILLed once both runs
say they wait for it: a lock dies with its process, and no lock file left behind blocks anyone.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import FONTS, WORDS, read_lmdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAITING = "another run is writing"
DATA = ["render.count=48", "render.val_count=12", "render.shards=3", "render.min_shard_images=1", "render.workers=2",
        f"render.fonts=[{FONTS['pen']}, {FONTS['pilgi']}]"]

GATE = """
import sys
from hwocr.locks import LOCKS
for record in sys.argv[1:]:
    LOCKS.acquire_lock(record, "gate")
print("held", flush=True)
sys.stdin.read()
"""


def _env(prefect_home, **extra) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home),
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    env.pop("PREFECT_API_URL", None)
    return {**env, **extra}


def _hold(records, **env) -> subprocess.Popen:
    """A process holding the locks of records until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", GATE, *records], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT, **env})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _start(tmp_path, name, args, env, cwd=None) -> subprocess.Popen:
    out, err = open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args, "--json"], stdout=out, stderr=err, env=env,
                            cwd=cwd or ROOT)
    out.close()
    err.close()
    proc.name = name
    return proc


def _wait_until_both_wait(logs, runs, gate, what=WAITING, limit=300.0) -> None:
    """Until each run's log says it waits for a lock: the runs overlap."""
    deadline = time.monotonic() + limit
    while True:
        waiting = [p for p in glob.glob(os.path.join(logs, "*.log")) if what in open(p, encoding="utf-8").read()]
        if len(waiting) == len(runs):
            return
        ended = [p for p in runs if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            gate.kill()
            for p in runs:
                p.kill()
            pytest.fail(f"runs {[p.name for p in ended]} ended, or the runs never both waited")
        time.sleep(0.05)


def _finish(tmp_path, runs) -> list[dict]:
    results = []
    for p in runs:
        assert p.wait(timeout=600) == 0, (tmp_path / f"{p.name}.err").read_text()[-3000:]
        results.append(json.loads((tmp_path / f"{p.name}.out").read_text().strip().splitlines()[-1]))
    return results


def _shard_records(single_out: str, out: str) -> list[str]:
    """The lock records of out's shards, from the content keys a single run's shards name (they leave out where the
    output is)."""
    from hwocr.layout import Layout
    from tasks.stage import record_key

    layout, records = Layout.at(out), []
    for manifest in glob.glob(os.path.join(single_out, "shards", "*", "*", "manifest.json")):
        with open(manifest, encoding="utf-8") as f:
            done = json.load(f)
        records.append(record_key(done["key"], layout.shard(done["split"], done["key"]) + "/manifest.json"))
    return records


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    p = tmp_path_factory.mktemp("words") / "words.txt"
    p.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return str(p)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    """The runs' Prefect home, with no database yet: the two runs' temporary servers create it, one at a time
    (flows/interrupt.py; at once, one server's migration can fail on a column added twice)."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="module")
def single(words, tmp_path_factory, prefect):
    """One run alone: the dataset two runs at once must equal."""
    from flows.config import load_config
    from flows.dataset import dataset_flow

    out = str(tmp_path_factory.mktemp("single") / "out")
    return dataset_flow(config=load_config(None, [f"render.words={words}", *DATA], out=out))


def _data_args(words, out) -> list[str]:
    return ["data", "--out", out, *[a for s in (f"render.words={words}", *DATA) for a in ("--set", s)]]


def _one_of_each(results) -> None:
    """Every shard rendered once between the two runs, every other stage ran in one of them."""
    total = results[0]["shards"]["total"]
    assert [r["shards"]["total"] for r in results] == [total, total]
    assert sum(r["shards"]["rendered"] for r in results) == total
    assert sum(r["shards"]["cached"] for r in results) == total
    for split in results[0]["stages"]:
        for name in ("assemble_gt", "pack_lmdb"):
            assert sorted(r["stages"][split][name] for r in results) == ["cached", "ran"], (split, name)


def _same_dataset(read, single: dict, out: str) -> None:
    """Shards, gt.txt and the LMDBs' records as a single run's; markers alike but for where they live."""
    base = single["out"]
    mine = sorted(os.path.relpath(p, base) for p in glob.glob(os.path.join(base, "shards", "*", "*", "*")))
    assert sorted(read.names("shards")) == mine
    for rel in mine:
        with open(os.path.join(base, rel), "rb") as f:
            expected = f.read()
        if rel.endswith("manifest.json"):
            expected = expected.replace(base.encode(), out.encode())
        assert read.bytes(rel) == expected, rel
    for split in ("train", "val"):
        with open(os.path.join(base, split, "gt.txt"), "rb") as f:
            assert read.bytes(f"{split}/gt.txt") == f.read()
        # LMDB leaves its pages' padding unset: two single runs' data.mdb differ there, so records are compared.
        assert read_lmdb(read.local(f"lmdb/{split}")) == read_lmdb(os.path.join(base, "lmdb", split))


class _Local:
    def __init__(self, out):
        self.out = out

    def names(self, rel):
        return [os.path.relpath(p, self.out) for p in glob.glob(os.path.join(self.out, rel, "**"), recursive=True)
                if os.path.isfile(p)]

    def bytes(self, rel):
        with open(os.path.join(self.out, rel), "rb") as f:
            return f.read()

    def local(self, rel):
        return os.path.join(self.out, rel)


@pytest.mark.slow
def test_two_data_runs_at_once_share_the_work(single, words, prefect_home, tmp_path):
    out = str(tmp_path / "out")
    gate = _hold(_shard_records(single["out"], out))
    runs = [_start(tmp_path, name, _data_args(words, out), _env(prefect_home)) for name in ("a", "b")]
    _wait_until_both_wait(os.path.join(out, "logs"), runs, gate)
    os.kill(gate.pid, signal.SIGKILL)  # its locks go with it
    gate.wait()
    results = _finish(tmp_path, runs)
    _one_of_each(results)
    _same_dataset(_Local(out), single, out)
    assert not [p for p in glob.glob(os.path.join(out, "**", ".*"), recursive=True)], "a staging folder was left"
    assert results[0]["splits"] == results[1]["splits"]


class _S3:
    def __init__(self, fs, out, tmp):
        self.fs, self.path, self.tmp = fs, out.removeprefix("s3://"), tmp

    def names(self, rel):
        return [p[len(self.path) + 1:] for p in self.fs.find(f"{self.path}/{rel}")]

    def bytes(self, rel):
        return self.fs.cat_file(f"{self.path}/{rel}")

    def local(self, rel):
        dest = os.path.join(self.tmp, rel)
        self.fs.get(f"{self.path}/{rel}/", dest, recursive=True)
        return dest


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tests.test_s3 import moto_s3

    with moto_s3(tmp_path_factory) as fs:
        yield fs


@pytest.mark.slow
def test_two_data_runs_at_once_on_s3(s3, single, words, prefect_home, tmp_path, prefect_api):
    out = "s3://hwocr-test/concurrent"
    gate = _hold(_shard_records(single["out"], out))
    # The session's served Prefect: two temporary servers at once are the local test's (above).
    env = _env(prefect_home, **prefect_api)
    runs = [_start(tmp_path, name, _data_args(words, out), env, cwd=tmp_path) for name in ("a", "b")]
    _wait_until_both_wait(str(tmp_path / "hwocr-out" / "logs"), runs, gate)
    os.kill(gate.pid, signal.SIGKILL)
    gate.wait()
    results = _finish(tmp_path, runs)
    _one_of_each(results)
    _same_dataset(_S3(s3, out, str(tmp_path / "fetched")), single, out)
    assert not [p for p in s3.find("hwocr-test/concurrent") if ".tmp-" in p]
    assert results[0]["splits"] == results[1]["splits"]


def test_a_lock_dies_with_its_process(tmp_path):
    """Exclusive between holders, in one process or two; gone with a SIGKILLed holder, file and all."""
    from hwocr.locks import FileLocks

    locks = FileLocks(str(tmp_path / "locks"))
    gate = _hold(["k1"], HWOCR_LOCK_DIR=str(tmp_path / "locks"))
    assert locks.is_locked("k1") and not locks.acquire_lock("k1", "me", acquire_timeout=0)
    assert not locks.wait_for_lock("k1", timeout=0)
    gate.kill()
    gate.wait()
    assert not locks.is_locked("k1") and locks.wait_for_lock("k1")
    assert locks.acquire_lock("k1", "me", acquire_timeout=0) and locks.is_lock_holder("k1", "me")
    assert locks.acquire_lock("k1", "me")  # its holder again: at once
    assert not locks.acquire_lock("k1", "other", acquire_timeout=0) and not locks.is_lock_holder("k1", "other")
    with pytest.raises(ValueError):
        locks.release_lock("k1", "other")
    locks.release_lock("k1", "me")
    assert not locks.is_locked("k1") and os.listdir(tmp_path / "locks") == []


PIPELINE = ["render.count=16", "render.val_count=8", "render.min_shard_images=1", f"render.fonts=[{FONTS['pen']}]",
            "train.pretrained=none", "train.img_h=32", "train.batch_size=8", "train.num_iter=4", "train.val_interval=2",
            "train.threads=1", "tracking.registered_model=''"]


@pytest.mark.slow
def test_two_pipeline_runs_at_once_train_once(prefect_api, words, prefect_home, tmp_path):
    """hwocr run twice at once: one training (one MLflow run), and its checkpoints are a single run's."""
    import mlflow

    from flows.config import load_config
    from flows.finetune import pipeline_flow
    from hwocr.layout import Layout
    from tasks.stage import record_key

    settings = [f"render.words={words}", *PIPELINE]
    # The EasyOCR check is skipped (test_cli's): only training's key and bytes are compared with the runs below.
    alone = pipeline_flow(config=load_config("quick", [*settings, f"tracking.tracking_uri=sqlite:///{tmp_path}/alone.db",
                                                       "easyocr_check=false"], out=str(tmp_path / "alone")))
    key = json.loads(open(os.path.join(alone["train"]["run_dir"], "done.json"), encoding="utf-8").read())["key"]
    out, uri = Layout.at(str(tmp_path / "out")), f"sqlite:///{tmp_path}/mlflow.db"
    # Both runs meet the training's lock held: the one that takes it trains, the other waits and is cached.
    gate = _hold([record_key(key, out.run(key) + "/done.json")])
    args = ["run", "--config", "quick", "--out", out.out,
            *[a for s in (*settings, f"tracking.tracking_uri={uri}") for a in ("--set", s)]]
    # The EasyOCR check is skipped; both report to the session's server (two temporary ones: the data tests above).
    env = _env(prefect_home, HWOCR_EASYOCR_PYTHON=str(tmp_path / "no-easyocr"), **prefect_api)
    runs = [_start(tmp_path, name, args, env) for name in ("a", "b")]
    _wait_until_both_wait(os.path.join(out.out, "logs"), runs, gate, what=f"{WAITING} {out.run(key)}")
    os.kill(gate.pid, signal.SIGKILL)
    gate.wait()
    results = _finish(tmp_path, runs)
    trains = [r["train"] for r in results]
    assert sorted(t["cached"] for t in trains) == [False, True]
    assert trains[0]["checkpoint"] == trains[1]["checkpoint"] == out.run(key) + "/best_accuracy.pth"
    for name in ("best_accuracy.pth", "best_norm_ED.pth"):
        with open(os.path.join(alone["train"]["run_dir"], name), "rb") as f, open(out.run(key) + "/" + name,
                                                                                  "rb") as g:
            assert f.read() == g.read(), name
    assert trains[0]["evaluation"] == trains[1]["evaluation"]
    assert results[0]["export"]["pth"] == results[1]["export"]["pth"]
    client = mlflow.MlflowClient(uri)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert trains[0]["mlflow_run_id"] == trains[1]["mlflow_run_id"] == run.info.run_id
    _one_of_each([r["dataset"] for r in results])


def test_a_staging_folder_in_use_is_not_taken_for_stale(tmp_path):
    """Another run's folder, being filled, stays; a killed run's (no one holds it) goes."""
    from hwocr import storage

    dest = tmp_path / "shard"
    dead = tmp_path / f".shard{storage.TMP_MARK}deadbeef"
    dead.mkdir()
    with storage.staged_dir(str(dest)) as first:
        (tmp_path / first / "a").write_text("first")
        assert not dead.exists()
        with storage.staged_dir(str(dest)) as second:  # the other run, same output
            (tmp_path / second / "a").write_text("second")
        assert (tmp_path / first / "a").read_text() == "first"
    assert (dest / "a").read_text() == "first"
    assert os.listdir(tmp_path) == ["shard"]
