"""The finetune flow on Prefect's engine with a real MLflow store (sqlite), from scratch on a tiny dataset."""

import os
import socket
import time

import pytest

from hwocr.errors import HwocrError

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]  # see pyproject.toml's markers

TRAIN = ["train.pretrained=none", "train.img_h=32", "train.batch_size=8", "train.num_iter=4", "train.val_interval=2",
         "train.threads=1", "train.optimizer=adam", "train.lr=0.001", "tracking.registered_model=hwocr-test"]


def test_finetune_tracks_everything_and_caches(tmp_path, make_config):
    import mlflow

    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = make_config(tmp_path / "out", *TRAIN, f"tracking.tracking_uri={uri}")
    dataset_flow(config=config)
    result = finetune_flow(config=config)
    assert result["iterations"] == 4 and 0 <= result["best_accuracy"] <= 100
    assert result["registered_version"] == 1 and result["cached"] is False

    client = mlflow.MlflowClient(uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.num_iter"] == "4" and run.data.params["train.optimizer"] == "adam"
    history = client.get_metric_history(run.info.run_id, "accuracy")
    assert [m.step for m in history] == [2, 4]
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
    assert contexts == ["training", "validation"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "validation", "summary.json"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} >= {"checkpoints/best_accuracy.pth"}
    model = mlflow.pytorch.load_model("models:/hwocr-test/1")
    assert sum(p.numel() for p in model.parameters()) == 4_015_729

    # The flow scores validation per font (the dataset was built by hwocr) and adds it to the run.
    report = result["evaluation"]["val"]
    assert set(report["by_font"]) == {"Nanum Pen Script Regular", "UnPilgi Regular"}
    assert sum(row["samples"] for row in report["by_font"].values()) == report["samples"] == 12
    assert "test" not in result["evaluation"]
    [val_accuracy] = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert val_accuracy.value == report["accuracy"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/val")} >= {
        "evaluation/val/predictions.tsv", "evaluation/val/evaluation.json"}

    again = finetune_flow(config=config)
    assert again["mlflow_run_id"] == result["mlflow_run_id"] and again["iterations"] == 4
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_unreachable_tracking_server_fails_before_training(tmp_path, make_config):
    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = make_config(tmp_path / "out", *TRAIN, f"tracking.tracking_uri=http://127.0.0.1:{port}")
    dataset_flow(config=config)
    start = time.monotonic()
    with pytest.raises(HwocrError, match=rf"MLflow tracking server http://127.0.0.1:{port} is unreachable"):
        finetune_flow(config=config)
    assert time.monotonic() - start < 60
    assert not list((tmp_path / "out").glob("runs/*/last.pth"))


def test_finetune_in_two_data_parallel_processes(tmp_path, make_config):
    import mlflow

    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = make_config(tmp_path / "out", *TRAIN, "train.processes=2", "tracking.registered_model=''",
                         f"tracking.tracking_uri={uri}")
    dataset_flow(config=config)
    result = finetune_flow(config=config)
    assert result["iterations"] == 4 and result["cached"] is False
    client = mlflow.MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(result["mlflow_run_id"], "train_loss")] == [2, 4]
    assert client.get_run(result["mlflow_run_id"]).data.params["train.processes"] == "2"


def test_a_pretrained_start_is_scored_beside_the_result(tmp_path, make_config):
    """From english_g2 (real EasyOCR weights), the start, its head remapped, is evaluated on the same split."""
    import mlflow

    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Words english_g2 reads (it has no Hangul), at its own height, so that there is something to forget.
    words = tmp_path / "latin.txt"
    words.write_text("Hello\nWorld\n2024\nSeoul\nPython\nMonday\nLondon\n100\n", encoding="utf-8")
    config = make_config(tmp_path / "out", *TRAIN, "train.pretrained=english_g2", "tracking.registered_model=''",
                         f"tracking.tracking_uri={uri}", "render.regression_count=8", "train.img_h=64",
                         f"render.words={words}")
    data = dataset_flow(config=config)
    result = finetune_flow(config=config)
    start, tuned = result["start"]["val"], result["evaluation"]["val"]
    assert start["samples"] == tuned["samples"] == 12 and set(start["by_font"]) == set(tuned["by_font"])
    # The print regression split is scored from both checkpoints, by font name; forgetting is counted image by image.
    reg_start, reg_tuned = result["start"]["regression"], result["evaluation"]["regression"]
    assert reg_start["samples"] == reg_tuned["samples"] == 8
    assert set(reg_tuned["by_font"]) <= {f["name"] for f in data["regression_fonts"]}
    rows = {}
    for which, r in (("start", reg_start), ("tuned", reg_tuned)):
        lines = open(r["predictions"], encoding="utf-8").read().splitlines()[1:]
        rows[which] = {p: label == pred for p, label, pred, _ in (ln.split("\t") for ln in lines)}
    read = [p for p, ok in rows["start"].items() if ok]
    assert read  # english_g2 reads some of these plain print Latin words (2 of the 8, skewed as trdg draws them)
    assert result["forgetting"] == {"start_correct": len(read), "still_correct": sum(rows["tuned"][p] for p in read),
                                    "forgotten": sum(not rows["tuned"][p] for p in read),
                                    "retained": 100.0 * sum(rows["tuned"][p] for p in read) / len(read)}
    [retained] = mlflow.MlflowClient(uri).get_metric_history(result["mlflow_run_id"], "regression_retained")
    assert retained.value == result["forgetting"]["retained"]
    assert result["start_checkpoint"].endswith("start.pth")
    assert start["accuracy"] < 100  # its 913 Korean rows are fresh
    client = mlflow.MlflowClient(uri)
    [logged] = client.get_metric_history(result["mlflow_run_id"], "start_val_accuracy")
    assert logged.value == start["accuracy"]
    assert {a.path for a in client.list_artifacts(result["mlflow_run_id"], "evaluation/start_val")} >= {
        "evaluation/start_val/predictions.tsv"}
    # The start checkpoint is english_g2 remapped: its Latin rows and its whole body are english_g2's.
    import torch

    from models.charset import load_charset
    from models.pretrained import load_state_dict, resolve_pretrained

    en, ko = load_charset("english_g2"), load_charset("korean_g2")
    src, got = load_state_dict(resolve_pretrained("english_g2")), load_state_dict(result["start_checkpoint"])
    assert torch.equal(got["Prediction.weight"][ko.index("A") + 1], src["Prediction.weight"][en.index("A") + 1])
    assert torch.equal(got["FeatureExtraction.ConvNet.0.weight"], src["FeatureExtraction.ConvNet.0.weight"])


def test_an_attn_pipeline_trains_tracks_and_skips_the_export(tmp_path, make_config):
    """TPS-ResNet-BiLSTM-Attn, tiny, through hwocr run's flow: it trains, evaluates and logs to MLflow; EasyOCR cannot
    run an attention decoder, so the export and its check are skipped and the summary says why."""
    import mlflow

    from flows.finetune import pipeline_flow
    from flows.summary import PipelineSummary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = make_config(tmp_path / "out", *TRAIN, f"tracking.tracking_uri={uri}", "tracking.registered_model=''",
                         "train.model.transformation=TPS", "train.model.feature_extraction=ResNet",
                         "train.model.prediction=Attn", "train.model.output_channel=32", "train.model.hidden_size=16")
    result = pipeline_flow(config=config)
    assert result["export"] is None and "EasyOCR cannot run an attention decoder" in result["export_skipped"]
    assert result["easyocr"] is None
    lines = PipelineSummary.model_validate(result).lines()
    assert any(line.startswith("EasyOCR bundle: not written (train.model.prediction is Attn") for line in lines)
    train = result["train"]
    assert train["iterations"] == 4 and train["evaluation"]["val"]["samples"] == 12
    run = mlflow.MlflowClient(uri).get_run(train["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.model.prediction"] == "Attn"
    assert [m.step for m in mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "accuracy")] == [2, 4]
    # The learning curves: beside the checkpoints, and in the run.
    from PIL import Image

    with Image.open(os.path.join(train["run_dir"], "learning_curves.png")) as im:
        assert im.width > im.height > 200
    assert "learning_curves.png" in {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run.info.run_id)}
    again = pipeline_flow(config=config)
    assert again["train"]["cached"] is True and again["export"] is None
