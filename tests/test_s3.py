"""S3 through s3fs against a real S3 API server on loopback (moto's server mode)."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hwocr.errors import HwocrError
from tests.conftest import read_lmdb

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]  # see pyproject.toml's markers
BIN = os.path.dirname(sys.executable)


def start_moto(log_path, **env):
    """A moto S3 server on a free loopback port: (process, endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **env})
    log.close()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return proc, endpoint
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)


@contextlib.contextmanager
def moto_s3(tmp_path_factory):
    """moto's S3 server on loopback, its credentials and endpoint in the environment, bucket hwocr-test made: an
    s3fs filesystem on it."""
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                             "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="hwocr-key", AWS_SECRET_ACCESS_KEY="hwocr-secret-value",
                      AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("hwocr-test")
    try:
        yield fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_s3(tmp_path_factory) as fs:
        yield fs


def test_dataset_on_s3_equals_local_and_is_cached_here_and_on_a_second_machine(s3, tmp_path, make_config):
    from flows.dataset import dataset_flow

    local = dataset_flow(config=make_config(tmp_path / "local"))
    remote = dataset_flow(config=make_config("s3://hwocr-test/run"))
    assert remote["splits"]["train"]["lmdb"] == "s3://hwocr-test/run/lmdb/train"
    for split in ("train", "val"):
        dest = tmp_path / "fetched" / split
        s3.get(f"hwocr-test/run/lmdb/{split}/", str(dest), recursive=True)
        assert read_lmdb(dest) == read_lmdb(local["splits"][split]["lmdb"])
        assert s3.cat_file(f"hwocr-test/run/{split}/gt.txt") == (tmp_path / "local" / split / "gt.txt").read_bytes()
    assert not [p for p in s3.find("hwocr-test/run") if ".tmp-" in p]
    # Shards travel as archives: three objects a shard, however many images it holds.
    shard_objects = s3.find("hwocr-test/run/shards")
    assert len(shard_objects) == 3 * remote["shards"]["total"]
    assert {p.rsplit("/", 1)[1] for p in shard_objects} == {"images.tar", "labels.tsv", "manifest.json"}
    again = dataset_flow(config=make_config("s3://hwocr-test/run"))
    assert again["shards"]["rendered"] == 0 and again["shards"]["cached"] == remote["shards"]["total"]

    # Credentials come from the environment only: no flow or task run parameter, and no object, holds them.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs() + client.read_task_runs()
    assert runs
    recorded = "".join(str(r.parameters) if hasattr(r, "parameters") else str(r.task_inputs) for r in runs)
    assert "s3://hwocr-test/run" in recorded
    assert "hwocr-secret-value" not in recorded and "hwocr-key" not in recorded
    assert not any(b"hwocr-secret-value" in s3.cat_file(p) for p in s3.find("hwocr-test/run") if p.endswith(".json"))

    # "Machine B": another process with a Prefect home (and so a database) of its own, the same bucket.
    import json

    import yaml

    config = make_config("s3://hwocr-test/run")
    assert s3.find("hwocr-test/run/prefect-results"), "task results belong in the bucket"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "machine-b")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "data", "--config", str(tmp_path / "config.yaml"),
                           "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "machine-b").is_dir()
    # Prefect cache hits: nothing rendered, nothing re-checked.
    assert second["shards"] == {"total": remote["shards"]["total"], "rendered": 0,
                                "cached": remote["shards"]["total"]}
    assert all(stage == "cached" for split in second["stages"].values() for stage in split.values())
    assert second["splits"]["train"]["lmdb"] == remote["splits"]["train"]["lmdb"]

    # The results block Prefect needs for remote storage holds the URL, never a credential.
    with get_client(sync_client=True) as client:
        blocks = [b for b in client.read_block_documents() if b.name.startswith("hwocr-results-")]
    assert "s3://hwocr-test/run/prefect-results" in [b.data.get("basepath") for b in blocks]
    assert all(set(b.data) <= {"basepath", "settings"} and not b.data.get("settings") for b in blocks)
    assert not any("hwocr-secret-value" in str(b.data) or "hwocr-key" in str(b.data) for b in blocks)


def test_missing_bucket_is_a_clear_error(s3, tmp_path, make_config):
    from flows.dataset import dataset_flow

    start = time.monotonic()
    with pytest.raises(HwocrError, match=r"s3://no-such-bucket/run: bucket 'no-such-bucket' does not exist"):
        dataset_flow(config=make_config("s3://no-such-bucket/run"))
    assert time.monotonic() - start < 60


def test_wrong_credentials_are_a_clear_error(tmp_path, make_config, monkeypatch):
    """moto checks credentials against its IAM users once its first few (setup) requests are spent."""
    import json

    import boto3
    import s3fs

    from flows.dataset import dataset_flow
    from hwocr import storage

    proc, endpoint = start_moto(tmp_path / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="4")
    try:
        setup = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                     aws_secret_access_key="setup")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="hwocr")
        iam.put_user_policy(UserName="hwocr", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="hwocr")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket="team")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        s3fs.S3FileSystem.clear_instance_cache()
        storage.ensure_writable("s3://team/run")  # the right key is let in

        for key_id, secret in ((key["AccessKeyId"], "a-wrong-secret-value"), ("AKIANOSUCHKEY", "a-wrong-secret-value")):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
            s3fs.S3FileSystem.clear_instance_cache()
            start = time.monotonic()
            denied = (r"s3://team/run: the object store at http://127.0.0.1:\d+ refused the credentials "
                      r".*AWS_ACCESS_KEY_ID")
            with pytest.raises(HwocrError, match=denied) as err:
                dataset_flow(config=make_config("s3://team/run"))
            assert time.monotonic() - start < 30
            assert "a-wrong-secret-value" not in str(err.value)
        # Nothing was written by the refused runs.
        good = s3fs.S3FileSystem(key=key["AccessKeyId"], secret=key["SecretAccessKey"], skip_instance_cache=True)
        assert good.find("team") == []
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        proc.terminate()
        proc.wait(10)


def test_unreachable_endpoint_is_a_clear_error(s3, tmp_path, make_config, monkeypatch):
    import s3fs

    from flows.dataset import dataset_flow

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    s3fs.S3FileSystem.clear_instance_cache()
    start = time.monotonic()
    try:
        with pytest.raises(HwocrError, match=r"s3://hwocr-test/x: cannot connect to http://127.0.0.1:\d+ .*check the "
                           r"endpoint \(AWS_ENDPOINT_URL"):
            dataset_flow(config=make_config("s3://hwocr-test/x"))
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert time.monotonic() - start < 30


def test_pipeline_on_s3_tracked_by_an_mlflow_server_with_artifacts_in_s3(s3, tmp_path, make_config, plain_python,
                                                                          monkeypatch):
    """The whole pipeline with its outputs in the bucket, tracked as README's team setup tracks it, in small:
    `mlflow server --artifacts-destination s3://...`, the server from a non-dev install as compose.yaml runs it from
    the hwocr image (boto3 must come with hwocr itself). The fine-tune's run, its registered model and its artifacts
    all go through the server."""
    import mlflow

    from flows.finetune import pipeline_flow
    from hwocr import storage
    from test_finetune import TRAIN
    from tests.conftest import started_mlflow_server

    monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HWOCR_EASYOCR_PYTHON", str(tmp_path / "no-easyocr"))  # the EasyOCR check is test_cli's
    s3.mkdir("mlflow-art")
    env = {"MLFLOW_S3_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}
    with started_mlflow_server(tmp_path, "s3://mlflow-art/artifacts", env, python=plain_python) as url:
        config = make_config("s3://hwocr-test/pipe", *TRAIN, f"tracking.tracking_uri={url}")
        result = pipeline_flow(config=config)
        trained = result["train"]
        client = mlflow.MlflowClient(url)
        run = client.get_run(trained["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.params["train.num_iter"] == "4"
        assert "hwocr-secret-value" not in str(run.data.params)
        assert trained["registered_version"] == 1
        assert client.get_model_version("hwocr-test", "1").run_id == run.info.run_id
        again = pipeline_flow(config=config)
    assert again["train"]["cached"] is True and again["export"]["cached"] is True
    assert again["train"]["mlflow_run_id"] == trained["mlflow_run_id"]
    stored = [p for p in s3.find("mlflow-art/artifacts")]
    assert any(p.endswith("checkpoints/best_accuracy.pth") for p in stored)
    assert any(p.endswith("evaluation/val/predictions.tsv") for p in stored)  # copied from the bucket's outputs
    assert any(p.endswith("easyocr/hwocr_korean.pth") for p in stored)
    run_dir = trained["run_dir"]
    assert run_dir.startswith("s3://hwocr-test/pipe/runs/")
    key = run_dir.removeprefix("s3://")
    for name in ("best_accuracy.pth", "last.pth", "done.json", "eval/val/evaluation.json", "eval/val/predictions.tsv",
                 "easyocr/hwocr_korean.pth", "easyocr/hwocr_korean.yaml", "easyocr/hwocr_korean.py"):
        assert s3.exists(f"{key}/{name}"), name
    assert trained["evaluation"]["val"]["samples"] == 12
    # The LMDBs were fetched once into the cache, by content key; the run trained in a local work folder.
    assert len(list((tmp_path / "cache" / "lmdb").iterdir())) == 2


class FlakyProxy:
    """A TCP proxy in front of the S3 server that cuts connections mid-request while `cut` is positive: from the
    client's side, the server went away in the middle of an upload, as when it restarts."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target = ("127.0.0.1", target_port)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.cut = 0
        self.cuts_done = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        import threading

        upstream = socket.create_connection(self.target)

        def pump(src: socket.socket, dst: socket.socket, request_side: bool) -> None:
            seen = 0
            try:
                while data := src.recv(65536):
                    seen += len(data)
                    if request_side and seen > 8192:  # a connection that has been uploading for a while
                        with self.lock:
                            cutting = self.cut > 0
                            if cutting:
                                self.cut -= 1
                                self.cuts_done += 1
                        if cutting:
                            dst.sendall(data[: len(data) // 2])
                            raise ConnectionResetError
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()
        pump(client, upstream, True)

    def close(self) -> None:
        self.server.close()


def test_upload_cut_mid_request_is_retried_and_never_half_visible(s3, tmp_path, make_config, monkeypatch):
    import s3fs

    from flows.dataset import dataset_flow

    endpoint_port = int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    proxy = FlakyProxy(endpoint_port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        proxy.cut = 3  # the next three large requests die halfway
        result = dataset_flow(config=make_config("s3://hwocr-test/flaky"))
    finally:
        proxy.close()
        s3fs.S3FileSystem.clear_instance_cache()
    assert proxy.cuts_done == 3
    local = dataset_flow(config=make_config(tmp_path / "local"))
    for split in ("train", "val"):
        dest = tmp_path / "fetched" / split
        s3.get(f"hwocr-test/flaky/lmdb/{split}/", str(dest), recursive=True)
        assert read_lmdb(dest) == read_lmdb(local["splits"][split]["lmdb"])
    assert result["splits"]["train"]["samples"] == local["splits"]["train"]["samples"]
    assert not [p for p in s3.find("hwocr-test/flaky") if ".tmp-" in p]
