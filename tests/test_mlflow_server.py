"""The finetune flow against a real `mlflow server` on loopback (started and stopped by the test)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]  # see pyproject.toml's markers


@pytest.fixture
def mlflow_server(tmp_path):
    with started_mlflow_server(tmp_path, str(tmp_path / "artifacts"), {}) as url:
        yield url, tmp_path / "artifacts"


@contextlib.contextmanager
def started_mlflow_server(tmp_path, artifacts: str, env: dict, python: str = sys.executable):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = os.path.join(os.path.dirname(python), "mlflow")
    proc = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", artifacts],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, "mlflow server exited"
        assert time.monotonic() < deadline, "mlflow server did not become healthy"
        time.sleep(0.2)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_finetune_against_mlflow_server(tmp_path, make_config, mlflow_server):
    import mlflow

    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow
    from test_finetune import TRAIN

    url, artifacts = mlflow_server
    config = make_config(tmp_path / "out", *TRAIN, f"tracking.tracking_uri={url}")
    dataset_flow(config=config)
    result = finetune_flow(config=config)
    client = mlflow.MlflowClient(url)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.num_iter"] == "4"
    assert result["registered_version"] == 1
    assert client.get_model_version("hwocr-test", "1").run_id == run.info.run_id
    # Artifacts went through the server into its own store.
    stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert "best_accuracy.pth" in stored and "predictions.tsv" in stored
