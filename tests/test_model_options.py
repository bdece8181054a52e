"""train.model: the benchmark's 24 module combinations (None|TPS, VGG|RCNN|ResNet, None|BiLSTM, CTC|Attn).

tests/data/dtrb_layout.json is the state_dict layout (keys in order, shapes) of the benchmark's OWN model.py for all
24 combinations at its train.py defaults (imgH 32, imgW 100, input_channel 1, output_channel 512, hidden_size 256,
num_fiducial 20, the 36-character alphanumeric set: 37 classes for CTC, 38 for Attn), written once by a throwaway
script that imported clovaai/deep-text-recognition-benchmark at commit e2117f2fb882b3c6085030500a260c113be27a63
(`model.Model(opt)` on CPU, `{k: list(v.shape) for k, v in state_dict().items()}`), stored per stage ("parts",
each checked identical wherever it occurs) with each combination's list of parts and parameter count. Nothing in it
comes from hwocr's model. The same script also loaded the benchmark's weights into models/crnn.py for every
combination and found the outputs equal (max difference 0.0).
"""

import itertools
import json
import os

import pytest
import torch

from hwocr.errors import HwocrError
from models.codec import AttnCodec
from models.crnn import Model
from models.pretrained import build_network, load_pretrained, network_params, save_checkpoint_state
from models.train_settings import ModelSettings
from models.trainer import train
from tests.tiny import WORDS, make_tiny_lmdb, settings

HERE = os.path.dirname(os.path.abspath(__file__))
COMBOS = list(itertools.product(["None", "TPS"], ["VGG", "RCNN", "ResNet"], ["None", "BiLSTM"], ["CTC", "Attn"]))
CTC = [c for c in COMBOS if c[3] == "CTC"]
TINY = dict(output_channel=32, hidden_size=16)
EASYOCR_PYTHON = os.environ.get("HWOCR_EASYOCR_PYTHON",
                                os.path.join(os.path.dirname(HERE), ".venv-easyocr", "bin", "python"))


def model_settings(combo, **sizes) -> ModelSettings:
    t, f, s, p = combo
    return ModelSettings(transformation=t, feature_extraction=f, sequence_modeling=s, prediction=p,
                         **{**TINY, **sizes})


@pytest.fixture(scope="module")
def benchmark():
    with open(os.path.join(HERE, "data", "dtrb_layout.json"), encoding="utf-8") as f:
        return json.load(f)


def test_layout_is_the_benchmarks_for_every_combination(benchmark):
    opt = benchmark["opt"]
    assert len(benchmark["combinations"]) == 24
    for combo in COMBOS:
        name = "-".join(combo)
        want = benchmark["combinations"][name]
        layout = [(k, shape) for part in want["parts"] for k, shape in benchmark["parts"][part].items()]
        with torch.device("meta"):  # shapes only: no memory, no time
            m = build_network(model_settings(combo, output_channel=opt["output_channel"],
                                             hidden_size=opt["hidden_size"]),
                              want["num_class"], opt["imgH"], opt["imgW"], opt["batch_max_length"])
        ours = [(k, list(v.shape)) for k, v in m.state_dict().items()]
        assert ours == layout, name
        assert sum(p.numel() for p in m.parameters()) == want["parameters"], name


def test_default_is_the_easyocr_generation_2_network():
    assert ModelSettings().name == "None-VGG-BiLSTM-CTC"
    # EasyOCR's own generation-2 yaml holds the three sizes only: the default combination exports the same
    assert network_params(ModelSettings(), 64, 100, 25) == {"input_channel": 1, "output_channel": 256,
                                                            "hidden_size": 256}
    tps = network_params(model_settings(("TPS", "ResNet", "None", "CTC")), 32, 100, 25)
    assert tps == {"input_channel": 1, "output_channel": 32, "hidden_size": 16, "transformation": "TPS",
                   "feature_extraction": "ResNet", "sequence_modeling": "None", "num_fiducial": 20, "img_h": 32,
                   "img_w": 100}


def test_attn_codec_is_the_benchmarks_converter():
    codec = AttnCodec("abc", batch_max_length=4)
    assert codec.num_class == 5
    text, length = codec.encode(["ab", "c"])
    # [GO]=0 first and as padding, [s]=1 after the text, character i at i+2; batch_max_length + 2 columns
    assert text.tolist() == [[0, 2, 3, 1, 0, 0], [0, 4, 1, 0, 0, 0]] and length.tolist() == [3, 2]
    probs = torch.zeros(1, 5, 5)
    for t, (i, p) in enumerate([(4, 0.9), (2, 0.5), (1, 0.8), (3, 1.0), (3, 1.0)]):
        probs[0, t, i] = p
    assert codec.decode_with_confidence(probs) == [("ca", pytest.approx(0.45))]  # cut at [s], its step excluded
    with pytest.raises(HwocrError, match="more than batch_max_length"):
        codec.encode(["abcab"])


@pytest.fixture(scope="module")
def tiny_lmdb(tmp_path_factory):
    return make_tiny_lmdb(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_combination_trains_validates_and_resumes_exactly(tiny_lmdb, tmp_path, combo):
    s = settings(model=model_settings(combo), num_iter=2, val_interval=1, batch_max_length=8)
    straight = train(s, [tiny_lmdb], tiny_lmdb, str(tmp_path / "a"), log=lambda m: None)
    assert straight["iterations"] == 2 and len(straight["history"]) == 2
    entry = straight["history"][-1]
    assert torch.isfinite(torch.tensor([entry["train_loss"], entry["valid_loss"]])).all()
    # 1 iteration, then a second run resumes from its last.pth: weight for weight the straight run's
    train(s.model_copy(update={"num_iter": 1}), [tiny_lmdb], tiny_lmdb, str(tmp_path / "b"), log=lambda m: None)
    said = []
    resumed = train(s, [tiny_lmdb], tiny_lmdb, str(tmp_path / "b"), log=said.append)
    assert any(m.startswith("resumed from ") and m.endswith("at iteration 1") for m in said), said
    assert resumed["history"][-1]["train_loss"] == entry["train_loss"]
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(tmp_path / "a" / "best_accuracy.pth", weights_only=True)
    m = build_network(s.model, len(state[[k for k in state if "generator.weight" in k or k.endswith(
        "Prediction.weight")][0]]), 32, 100, 8)
    m.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})


def test_a_checkpoint_of_another_layout_is_refused_naming_keys(tmp_path):
    vgg = build_network(ModelSettings(**TINY), len(WORDS) + 1)
    path = tmp_path / "vgg.pth"
    torch.save(save_checkpoint_state(vgg), path)
    m = build_network(model_settings(("TPS", "ResNet", "BiLSTM", "CTC")), len(WORDS) + 1)
    with pytest.raises(HwocrError) as e:
        load_pretrained(m, str(path), "abcd")
    msg = str(e.value)
    assert "does not fit train.model (TPS-ResNet-BiLSTM-CTC" in msg
    assert "Transformation.LocalizationNetwork.conv.0.weight (missing in checkpoint)" in msg
    assert "train.pretrained=none" in msg


def test_the_train_stage_names_the_misfit_before_training(tmp_path):
    from models.pretrained import check_layout

    path = tmp_path / "vgg.pth"
    torch.save(save_checkpoint_state(build_network(ModelSettings(), 1009)), path)
    check_layout(settings(pretrained=str(path)))
    with pytest.raises(HwocrError) as e:
        check_layout(settings(pretrained=str(path), model=model_settings(("None", "VGG", "None", "Attn"),
                                                                         output_channel=256, hidden_size=256)))
    msg = str(e.value)
    assert msg.startswith(f"pretrained {path} does not fit train.model (None-VGG-None-Attn, output_channel 256")
    assert "Prediction.attention_cell.i2h.weight (missing in checkpoint)" in msg and "train.pretrained=none" in msg


def test_builtin_pretrained_fits_only_its_own_network():
    from models.pretrained import check_fits

    check_fits("korean_g2", ModelSettings())
    check_fits("none", model_settings(("TPS", "ResNet", "BiLSTM", "Attn")))
    with pytest.raises(HwocrError, match=r"pretrained korean_g2 does not fit train.model \(None-ResNet-BiLSTM-CTC"):
        check_fits("korean_g2", ModelSettings(feature_extraction="ResNet"))
    with pytest.raises(HwocrError, match="output_channel 256"):
        check_fits("english_g2", ModelSettings(output_channel=512))


def test_the_model_is_part_of_the_training_key():
    from hwocr.layout import Layout
    from tasks.train import TrainInput

    def reads(s):
        return TrainInput(settings=s, train_lmdbs=["t"], val_lmdb="v", digests={"t": "d1", "v": "d2"},
                          layout=Layout.at("out")).reads()

    assert reads(settings()) != reads(settings(model=ModelSettings(feature_extraction="RCNN")))
    assert reads(settings()) == reads(settings())


def test_attn_export_is_refused(tmp_path):
    from models.bundle import ExportSettings, export_easyocr_fn
    from models.charset import load_charset
    from models.reading import Reading

    reading = Reading(network=ModelSettings(prediction="Attn"), img_h=32, charset=load_charset("korean_g2"))
    m = build_network(reading.network, reading.codec().num_class)
    torch.save(save_checkpoint_state(m, reading), tmp_path / "attn.pth")
    with pytest.raises(HwocrError, match="EasyOCR cannot run an attention decoder"):
        export_easyocr_fn(str(tmp_path / "attn.pth"), str(tmp_path / "b"), ExportSettings(name="x"))
    assert not (tmp_path / "b").exists()


def test_model_class_refuses_unknown_names():
    with pytest.raises(ValueError, match="feature_extraction 'VGG16': expected one of VGG, RCNN, ResNet"):
        Model(1, 32, 16, 5, feature_extraction="VGG16")


READ_ALL = """
import json, sys, cv2, easyocr
root, n, images = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = {"float": [], "int8": []}
for i in range(n):  # one process for every bundle: each EasyOCR start-up costs seconds
    bundle = f"{root}/b{i}"
    for kind, quantize in (("float", False), ("int8", True)):  # int8: what EasyOCR runs on a CPU by default
        reader = easyocr.Reader(["ko"], gpu=False, detector=False, recog_network=f"hwocr_m{i}", quantize=quantize,
                                user_network_directory=bundle, model_storage_directory=bundle,
                                download_enabled=False, verbose=False)
        out[kind].append([[r[1], float(r[2])] for r in (reader.recognize(cv2.imread(p, cv2.IMREAD_GRAYSCALE))[0]
                                                        for p in images)])
print(json.dumps(out, ensure_ascii=False))
"""


@pytest.mark.slow
def test_every_ctc_combination_reads_in_easyocr_as_in_hwocr(tiny_lmdb, tmp_path):
    """The 12 CTC combinations, tiny and randomly initialized (BatchNorm statistics too), exported and read by the
    real easyocr: the same strings as hwocr's own inference, confidences within 1e-3; int8 reads them too."""
    import subprocess

    import cv2

    from models.bundle import ExportSettings, export_easyocr_fn
    from models.charset import load_charset
    from models.codec import CTCCodec
    from models.easyocr_compat import recognize
    from models.reading import Reading
    from models.trainer import init_weights

    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it (torch 2.14.1, easyocr 1.7.2)")
    codec = CTCCodec(load_charset("korean_g2"))
    images = [os.path.join(os.path.dirname(tiny_lmdb), "img", f"{i}.png") for i in range(len(WORDS))]
    ours = []
    for i, combo in enumerate(CTC):
        torch.manual_seed(i)
        m = build_network(model_settings(combo), codec.num_class, 32, 100)
        init_weights(m)
        with torch.no_grad():
            for k, t in m.state_dict().items():
                if "running_" in k:
                    t.copy_(torch.rand_like(t) * 0.5 + (0.75 if "var" in k else -0.25))
        path = tmp_path / f"m{i}.pth"
        reading = Reading(network=model_settings(combo), img_h=32, charset=codec.charset)
        torch.save(save_checkpoint_state(m, reading), path)
        export_easyocr_fn(str(path), str(tmp_path / "bundles" / f"b{i}"), ExportSettings(name=f"hwocr_m{i}"))
        ours.append([recognize(m, codec, cv2.imread(p, cv2.IMREAD_GRAYSCALE), 32) for p in images])
    proc = subprocess.run([EASYOCR_PYTHON, "-c", READ_ALL, str(tmp_path / "bundles"), str(len(CTC)), *images],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = json.loads(proc.stdout.strip().splitlines()[-1])
    theirs = read["float"]
    assert sum(bool(t) for row in ours for t, _ in row) > len(CTC)  # random networks that read something
    # int8 (dynamic quantization of the LSTMs and Linears) loads and reads every combination. Random networks read
    # long strings of near-equal scores, where it flips characters here and there: most still match float's
    from models.metrics import cer

    int8 = [x[0] for row in read["int8"] for x in row]
    assert len(int8) == len(CTC) * len(images)
    floats = [y[0] for row in theirs for y in row]
    same = sum(map(str.__eq__, int8, floats))
    print(f"int8 against float, CER {cer(int8, floats):.3f}, same string {same} of {len(int8)}")
    assert cer(int8, floats) < 0.25, list(zip(int8, floats))
    for combo, a, b in zip(CTC, theirs, ours):
        assert [t for t, _ in a] == [t for t, _ in b], combo
        for (_, x), (_, y) in zip(a, b):
            assert x == pytest.approx(y, rel=1e-3, abs=1e-5), combo
