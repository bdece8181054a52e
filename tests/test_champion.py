"""The retrain loop as users run it: the scheduled `retrain` deployment of deployments/prefect.yaml on a real Prefect
server and a process worker, and the registry's `champion` alias, which moves only by its rule (models/promotion.py)."""

import json
import os
import subprocess
import sys

import pytest

from hwocr.layout import Layout
from models.promotion import rule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def test_the_rule_wants_every_real_source_better_and_the_print_split_kept():
    assert rule({"a": 61.0, "b": 40.0}, {"a": 58.0, "b": 39.5}, (90.0, 90.5)) == (True, [
        "real a 61.00% > 58.00%", "real b 40.00% > 39.50%",
        "regression 90.00% vs 90.50% (-0.50 points; at most -1 allowed)"])
    moved, why = rule({"a": 61.0, "b": 39.5}, {"a": 58.0, "b": 39.5}, None)
    assert not moved and why[1] == "real b 39.50% <= 39.50% (must improve)"
    moved, why = rule({"a": 61.0}, {"a": 58.0}, (88.0, 89.5))
    assert not moved and why[1] == "regression 88.00% vs 89.50% (-1.50 points; at most -1 allowed)"
    assert rule({"a": 10.0}, {}, None) == (True, ["real a 10.00% > -"])  # nothing to beat yet
    assert rule({}, {"a": 1.0}, None) == (False, ["no real test source to judge by (real.sources with a test split)"])


TRIGGER = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name("hwocr-pipeline/retrain")
    schedules = [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
    run = run_deployment("hwocr-pipeline/retrain", parameters=json.loads(sys.argv[1]), timeout=900)
print(json.dumps({"state": run.state.type.value, "schedules": schedules}))
"""


@pytest.mark.slow
def test_the_scheduled_retrain_deployment_moves_champion_only_by_its_rule(tmp_path, prefect):
    import mlflow

    from synth.scans import make_scans
    from tests.conftest import stop

    words = ["한글", "손글씨", "가나다", "학교", "사랑", "바다", "하늘", "서울", "친구", "가족", "나무", "사과"]
    scans = tmp_path / "scans"
    make_scans(str(scans), ["/usr/share/fonts/truetype/nanum/NanumBrush.ttf"], words * 3, pages=10,
               words_per_page=(4, 6), page_size=(640, 900), seed=5)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect, "PREFECT_HOME": str(tmp_path / "client-home"),
           "MLFLOW_TRACKING_URI": uri, "HWOCR_HOME": ROOT, "HWOCR_SCANS": str(scans / "pages"),
           "HWOCR_EASYOCR_PYTHON": str(tmp_path / "no-easyocr")}  # the EasyOCR checks are skipped: not judged here
    cli = os.path.join(BIN, "prefect")
    for cmd in ([cli, "work-pool", "create", "hwocr", "--type", "process"],
                [cli, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "retrain"]):
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([cli, "worker", "start", "--pool", "hwocr"], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    # The deployment's preset (retrain: korean_g2, 2,000 iterations) is what a user schedules; a test run names a
    # tiny one, with the same real source through the same environment variable and a registry name of its own.
    params = {"preset": "smoke", "out": str(tmp_path / "out"),
              "settings": ["real.sources=[{name: scans, url: $HWOCR_SCANS, ratio: 0.3}]", "real.seed=5",
                           "tracking.registered_model=hwocr-test", "train.threads=1"]}
    client = mlflow.MlflowClient(uri)

    def retrain() -> dict:
        proc = subprocess.run([sys.executable, "-c", TRIGGER, json.dumps(params)], env=env, capture_output=True,
                              text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["state"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
        return out

    def champion() -> str:
        return int(client.get_model_version_by_alias("hwocr-test", "champion").version)

    try:
        first = retrain()
        assert first["schedules"] == [["30 2 * * *", "Asia/Seoul", True]]
        [run] = client.search_runs([client.get_experiment_by_name("hwocr").experiment_id])
        assert champion() == 1 and run.data.tags["hwocr.champion"] == "moved"  # nothing to beat yet
        assert run.data.metrics["real_scans_accuracy"] >= 0

        # A new model moves the alias only by beating the champion's figures, read now on the same images: a
        # version 2 that reads as the champion does leaves the alias where it is. The flow's stage, called as the flow
        # calls it (a changed label re-packs and trains again: tests/test_real_flow.py; a deployment run with nothing
        # changed reuses every stage: tests/test_prefect_server.py).
        from tracking.registry import judge
        from tracking.settings import TrackingSettings

        [test_lmdb] = [p.parent for p in (tmp_path / "out" / "real").rglob("data.mdb") if p.parent.name == "test"]
        accuracy = run.data.metrics["real_scans_accuracy"]
        decision = judge(TrackingSettings(tracking_uri=uri, registered_model="hwocr-test"),
                         Layout.at(str(tmp_path / "out")), 2, run.info.run_id,
                         {"scans": {"lmdb": str(test_lmdb), "accuracy": accuracy, "start": None}}, None)
        assert not decision.moved and decision.champion == 1 and decision.against == "champion version 1"
        assert decision.reasons == [f"real scans {accuracy:.2f}% <= {accuracy:.2f}% (must improve)"]
        assert client.get_run(run.info.run_id).data.tags["hwocr.champion"] == "kept"
        assert champion() == 1
    finally:
        stop(worker)
        log.close()
