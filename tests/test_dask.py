"""Render shards on a Dask cluster (prefect-dask): a 2-worker LocalCluster gives the same LMDB bytes."""

import socket
import time

import pytest

from hwocr.errors import HwocrError
from tests.conftest import read_lmdb

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]  # see pyproject.toml's markers


def test_dask_local_cluster_gives_the_same_lmdb(tmp_path, make_config):
    from flows.dataset import dataset_flow_for

    local_config = make_config(tmp_path / "local")
    local = dataset_flow_for(local_config)(config=local_config)
    config = make_config(tmp_path / "dask", "runner=dask", "render.workers=2")
    on_dask = dataset_flow_for(config)(config=config)
    assert on_dask["shards"]["rendered"] == local["shards"]["total"]
    for split in ("train", "val"):
        assert read_lmdb(on_dask["splits"][split]["lmdb"]) == read_lmdb(local["splits"][split]["lmdb"])


def test_unreachable_dask_scheduler_is_a_clear_error(tmp_path, make_config):
    from flows.dataset import dataset_flow_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = make_config(tmp_path / "o", "runner=dask", f"dask_address=tcp://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(HwocrError, match=rf"Dask scheduler tcp://127.0.0.1:{port} is unreachable"):
        dataset_flow_for(config)(config=config)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "o").exists()


def test_cli_joins_an_existing_cluster(tmp_path, make_config, prefect_api):
    """`hwocr data --runner dask --dask-address tcp://...` against a scheduler and 2 workers started here."""
    import os
    import subprocess
    import sys

    import yaml

    from flows.dataset import dataset_flow_for

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    # Dask drops a comm silent for 30 s; on 2 busy cores (another test beside this one) a starved scheduler can be.
    env = {**os.environ, "PYTHONPATH": root, "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "300s",
           "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "120s"}
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], env=env, cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        config = make_config(tmp_path / "dask")
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True))
        p = subprocess.run([sys.executable, "-m", "flows.cli", "data", "--config", str(tmp_path / "c.yaml"),
                            "--runner", "dask", "--dask-address", address, "--json"], capture_output=True, text=True,
                           timeout=600, env={**env, **prefect_api})
        assert p.returncode == 0, p.stderr[-3000:]
        from distributed import Client

        with Client(address, timeout=30) as client:
            prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
        assert "render_shard_fn" in prefixes  # the shards ran on this cluster, not locally
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
    local_config = make_config(tmp_path / "local")
    local = dataset_flow_for(local_config)(config=local_config)
    for split in ("train", "val"):
        assert read_lmdb(tmp_path / "dask" / "lmdb" / split) == read_lmdb(local["splits"][split]["lmdb"])
