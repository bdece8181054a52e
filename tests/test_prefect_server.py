"""Deployments on a real `prefect server`: `hwocr serve` registers them, run_deployment triggers the pipeline."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import stop

pytestmark = pytest.mark.slow  # see pyproject.toml's markers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


TRIGGER = """
import json, os, sys, time
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

NAMES = ["hwocr-dataset/dataset", "hwocr-pipeline/pipeline", "hwocr-finetune/finetune"]
deadline = time.monotonic() + 180
results = {}
with get_client(sync_client=True) as client:
    for name in NAMES:
        while True:  # hwocr serve registers its deployments shortly after it starts
            try:
                deployment = client.read_deployment_by_name(name)
                break
            except Exception:
                os.kill(int(sys.argv[1]), 0)  # hwocr serve died: fail now, not at the deadline
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        run = run_deployment(name, parameters=json.loads(sys.argv[2]), timeout=900)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        schema = deployment.parameter_openapi_schema["properties"]
        results[name] = {"state": run.state.type.value, "artifacts": sorted(a.key for a in artifacts if a.key),
                         "form": list(schema), "presets": schema["preset"]["enum"],
                         "pictures": [a.data for a in artifacts if a.key == "hwocr-pictures"]}
    # Served beside them, not run here (tests/test_prelabel.py runs the flow): its form.
    schema = client.read_deployment_by_name("hwocr-prelabel/prelabel").parameter_openapi_schema
    results["hwocr-prelabel/prelabel"] = {"form": list(schema["properties"]), "required": schema.get("required")}
print(json.dumps(results))
"""


def test_serve_and_run_deployment(tmp_path, prefect):
    """Every deployment's form leads with a preset and the knobs people change: runs of the dataset, the pipeline and
    the finetune deployment given only a preset and an out complete, the later ones reusing the earlier ones' work
    (one training in all); MLflow's store comes from the environment, as on a worker."""
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect, "PREFECT_HOME": str(tmp_path / "client-home"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "HWOCR_EASYOCR_PYTHON": str(tmp_path / "no-easyocr")}  # the EasyOCR check is test_cli's; skipped here
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--config", "smoke"],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        trigger = subprocess.run([sys.executable, "-c", TRIGGER, str(serve.pid),
                                  json.dumps({"preset": "smoke", "out": str(out)})],
                                 env=env, capture_output=True, text=True, timeout=1200)
    finally:
        stop(serve)
        log.close()
    served = (tmp_path / "serve.log").read_text()
    assert trigger.returncode == 0, trigger.stderr[-2000:] + served[-2000:]
    results = json.loads(trigger.stdout.strip().splitlines()[-1])
    assert results.pop("hwocr-prelabel/prelabel") == {
        "form": ["images", "model", "out", "kind", "shard_size", "detector"], "required": ["images", "model", "out"]}
    assert {name: r["state"] for name, r in results.items()} == {
        "hwocr-dataset/dataset": "COMPLETED", "hwocr-pipeline/pipeline": "COMPLETED",
        "hwocr-finetune/finetune": "COMPLETED"}, served[-3000:]
    pipeline = results["hwocr-pipeline/pipeline"]
    assert {"hwocr-summary", "hwocr-evaluation", "hwocr-mlflow-run", "hwocr-pictures"} <= set(pipeline["artifacts"])
    # Each picture the summary links is an artifact of the MLflow run, where MLflow's artifact view shows it.
    [pictures] = pipeline["pictures"]
    links = re.findall(r"/runs/([0-9a-f]+)/artifactPath/([^)]+)\)", pictures)
    assert {path for _, path in links} >= {"dataset/contact_sheet.png", "dataset/fonts_effects.png"}, pictures
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "learning_curves.png" in {path for _, path in links}  # at the run's root
    for run_id, path in links:
        folder, _, name = path.rpartition("/")
        assert name in {os.path.basename(f.path) for f in client.list_artifacts(run_id, folder or None)}, path
    assert pipeline["form"][:8] == ["preset", "out", "pretrained", "fonts", "words", "count", "val_count", "num_iter"]
    assert results["hwocr-dataset/dataset"]["form"][:6] == ["preset", "out", "fonts", "words", "count", "val_count"]
    assert results["hwocr-finetune/finetune"]["form"][:4] == ["preset", "out", "pretrained", "num_iter"]
    for r in results.values():
        assert {"quick", "seed", "cpu-reference", "smoke"} <= set(r["presets"])
    assert (tmp_path / "mlflow.db").exists()
    assert (out / "lmdb" / "train" / "data.mdb").exists() and (out / "lmdb" / "val" / "data.mdb").exists()
    [run_dir] = list((out / "runs").iterdir())
    assert (run_dir / "best_accuracy.pth").exists()
    assert (run_dir / "easyocr" / "hwocr_korean.pth").exists() and (run_dir / "easyocr" / "hwocr_korean.yaml").exists()
    assert serve.returncode is not None
