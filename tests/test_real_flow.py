"""The user's own handwriting in the pipeline: stand-in scans (synth/scans.py; no real Korean handwriting set can be
installed here), reviewed as a user leaves them, then a real `pages` source: mixed into training, scored first,
re-packed alone when a label changes."""

import json
import os

import pytest

from hwocr.errors import HwocrError

pytestmark = [pytest.mark.usefixtures("prefect"), pytest.mark.slow]

TRAIN = ["train.pretrained=none", "train.img_h=32", "train.batch_size=8", "train.num_iter=4", "train.val_interval=2",
         "train.threads=1", "train.optimizer=adam", "train.lr=0.001", "tracking.registered_model=''"]
BRUSH = "/usr/share/fonts/truetype/nanum/NanumBrush.ttf"  # a hand the synthetic data (pen, pilgi) never renders
PEN = "/usr/share/fonts/truetype/nanum/NanumPen.ttf"


@pytest.fixture
def scans(tmp_path):
    from synth.scans import make_scans

    words = ["한글", "손글씨", "안녕하세요", "가나다", "학교", "사랑", "바다", "하늘", "서울", "친구", "가족", "나무"]
    make_scans(str(tmp_path / "standin"), [BRUSH], words * 3, pages=10, words_per_page=(4, 6), page_size=(640, 900),
               seed=5)
    return tmp_path / "standin"


def reviewed(pages) -> dict:
    """The stand-in pages as a person leaves them in the review page (models/review.py's statuses in Label.txt,
    as `hwocr prelabel` writes them: tests/test_prelabel.py prelabels and reviews for real): the first word left
    unreviewed, the second marked unreadable, every other one reviewed. Returns the statuses counted."""
    label = pages / "Label.txt"
    counts, lines, k = {"reviewed": 0, "rejected": 0, "predicted": 0}, [], 0
    for line in label.read_text(encoding="utf-8").splitlines():
        image, words = line.split("\t")
        words = json.loads(words)
        for w in words:
            w["status"] = "predicted" if k == 0 else "rejected" if k == 1 else "reviewed"
            w["confidence"] = 0.5
            counts[w["status"]] += 1
            k += 1
        lines.append(f"{image}\t{json.dumps(words, ensure_ascii=False)}")
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return counts


def test_a_reviewed_folder_is_mixed_in_scored_first_and_repacked_alone(tmp_path, make_config, scans):
    import mlflow

    from flows.finetune import pipeline_flow
    from flows.summary import PipelineSummary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    review = scans / "pages"
    counts = reviewed(review)
    source = f"real.sources=[{{name: mine, url: {review}, ratio: 0.3}}]"
    # Seed 5 splits the ten pages 7 / 1 / 2 (train, val, test): a hash of each page's name, so small sets vary.
    config = make_config(tmp_path / "out", *TRAIN, f"tracking.tracking_uri={uri}", source, "real.seed=5",
                         "real.refine.iterations=2")
    result = pipeline_flow(config=config)
    real = result["real"]["mine"]
    assert real["format"] == "pages" and sum(real["splits"].values()) == counts["reviewed"] and set(
        real["splits"]) == {"train", "val", "test"}
    assert real["dropped"] == {"unreviewed": 1, "rejected": counts["rejected"]}
    assert result["train"]["validated_on"].endswith("real/mine/val")  # the real validation split picks the checkpoint
    assert real["hwocr"]["samples"] == real["splits"]["test"]
    # The same images read by EasyOCR itself with the bundle: within a point of hwocr's figure, and the pages
    # through readtext (its detector finds the words on the photographed pages).
    assert abs(real["easyocr"]["float"]["accuracy"] - real["hwocr"]["accuracy"]) <= 1.0
    assert real["easyocr"]["pages"]["words"] == real["splits"]["test"]
    assert real["easyocr"]["pages"]["detection_recall"] >= 50
    lines = PipelineSummary.model_validate(result).lines()
    assert lines[0].startswith(f"real mine (pages; train {real['splits']['train']}")  # the headline comes first
    assert "read by EasyOCR itself" in lines[1]
    # Mixed by its ratio (the synthetic LMDB keeps the rest of every batch), then refined on the real train split
    # alone from the first stage's best checkpoint: the refined model is the one scored and exported.
    client = mlflow.MlflowClient(uri)
    refined = client.get_run(result["train"]["mlflow_run_id"])
    [mixed] = [r for r in client.search_runs([refined.info.experiment_id]) if r.info.run_id != refined.info.run_id]
    assert json.loads(mixed.data.params["train.batch_ratio"]) == [0.7, 0.3]
    assert json.loads(refined.data.params["train.batch_ratio"]) == [1.0]
    assert refined.data.params["train.num_iter"] == "2" and refined.data.params["train.freeze"] == "[]"
    assert result["train"]["refined_from"].endswith("best_accuracy.pth")
    assert refined.data.params["train.pretrained"] == result["train"]["refined_from"]
    assert refined.data.metrics["real_mine_accuracy"] == real["hwocr"]["accuracy"]
    assert any(line.startswith("refined on the real train splits alone") for line in lines)

    # Nothing changed: every stage is a cache hit.
    again = pipeline_flow(config=config)
    assert again["train"]["cached"] and again["dataset"]["shards"]["rendered"] == 0

    # Ten labels edited: that source is packed again and the model trained again; nothing renders.
    label = review / "Label.txt"
    text, edited = label.read_text(encoding="utf-8"), 0
    for word in ("학교", "사랑", "바다", "하늘", "서울"):
        if edited < 10 and word in text:
            n = min(text.count(f'"{word}"'), 10 - edited)
            text, edited = text.replace(f'"{word}"', '"나무"', n), edited + n
    assert edited == 10
    label.write_text(text, encoding="utf-8")
    # The EasyOCR check proved itself above: skipping it here keys no stage differently.
    third = pipeline_flow(config=config.model_copy(update={"easyocr_check": False}))
    assert not third["train"]["cached"] and third["dataset"]["shards"]["rendered"] == 0
    assert third["train"]["mlflow_run_id"] != result["train"]["mlflow_run_id"]


def test_stand_in_hands_never_render_synthetic_training_images(tmp_path, scans):
    from synth.scans import check_scan_leak

    check_scan_leak([PEN], [str(scans / "pages")])  # another hand: allowed
    with pytest.raises(HwocrError, match=r"pages was drawn in .*Brush.* the synthetic training renders "
                       r".*NanumBrush.ttf of the same family"):
        check_scan_leak([PEN, BRUSH], [str(scans / "pages"), str(scans / "easyocr")])
    assert os.path.exists(scans / "manifest.json")
