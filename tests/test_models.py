"""The recognizer, its checkpoints and the CTC codec: plain PyTorch, no network, no Prefect."""

import math
from dataclasses import replace

import pytest
import torch

from hwocr.errors import HwocrError
from models.charset import load_charset
from models.codec import CTCCodec
from models.crnn import Model, init_weights
from models.pretrained import (
    GEN2,
    KOREAN_G2,
    load_pretrained,
    load_state_dict,
    md5_file,
    network_for,
    resolve_pretrained,
    save_checkpoint_state,
)

# The state_dict of EasyOCR's korean_g2 (its record's sizes, 1009 classes), without the `module.` prefix of its
# DataParallel checkpoint.
# Written out rather than derived from Model so that it can check Model.
KEY_LAYOUT: list[tuple[str, tuple[int, ...]]] = [
    ("FeatureExtraction.ConvNet.0.weight", (32, 1, 3, 3)),
    ("FeatureExtraction.ConvNet.0.bias", (32,)),
    ("FeatureExtraction.ConvNet.3.weight", (64, 32, 3, 3)),
    ("FeatureExtraction.ConvNet.3.bias", (64,)),
    ("FeatureExtraction.ConvNet.6.weight", (128, 64, 3, 3)),
    ("FeatureExtraction.ConvNet.6.bias", (128,)),
    ("FeatureExtraction.ConvNet.8.weight", (128, 128, 3, 3)),
    ("FeatureExtraction.ConvNet.8.bias", (128,)),
    ("FeatureExtraction.ConvNet.11.weight", (256, 128, 3, 3)),
    ("FeatureExtraction.ConvNet.12.weight", (256,)),
    ("FeatureExtraction.ConvNet.12.bias", (256,)),
    ("FeatureExtraction.ConvNet.12.running_mean", (256,)),
    ("FeatureExtraction.ConvNet.12.running_var", (256,)),
    ("FeatureExtraction.ConvNet.12.num_batches_tracked", ()),
    ("FeatureExtraction.ConvNet.14.weight", (256, 256, 3, 3)),
    ("FeatureExtraction.ConvNet.15.weight", (256,)),
    ("FeatureExtraction.ConvNet.15.bias", (256,)),
    ("FeatureExtraction.ConvNet.15.running_mean", (256,)),
    ("FeatureExtraction.ConvNet.15.running_var", (256,)),
    ("FeatureExtraction.ConvNet.15.num_batches_tracked", ()),
    ("FeatureExtraction.ConvNet.18.weight", (256, 256, 2, 2)),
    ("FeatureExtraction.ConvNet.18.bias", (256,)),
    ("SequenceModeling.0.rnn.weight_ih_l0", (1024, 256)),
    ("SequenceModeling.0.rnn.weight_hh_l0", (1024, 256)),
    ("SequenceModeling.0.rnn.bias_ih_l0", (1024,)),
    ("SequenceModeling.0.rnn.bias_hh_l0", (1024,)),
    ("SequenceModeling.0.rnn.weight_ih_l0_reverse", (1024, 256)),
    ("SequenceModeling.0.rnn.weight_hh_l0_reverse", (1024, 256)),
    ("SequenceModeling.0.rnn.bias_ih_l0_reverse", (1024,)),
    ("SequenceModeling.0.rnn.bias_hh_l0_reverse", (1024,)),
    ("SequenceModeling.0.linear.weight", (256, 512)),
    ("SequenceModeling.0.linear.bias", (256,)),
    ("SequenceModeling.1.rnn.weight_ih_l0", (1024, 256)),
    ("SequenceModeling.1.rnn.weight_hh_l0", (1024, 256)),
    ("SequenceModeling.1.rnn.bias_ih_l0", (1024,)),
    ("SequenceModeling.1.rnn.bias_hh_l0", (1024,)),
    ("SequenceModeling.1.rnn.weight_ih_l0_reverse", (1024, 256)),
    ("SequenceModeling.1.rnn.weight_hh_l0_reverse", (1024, 256)),
    ("SequenceModeling.1.rnn.bias_ih_l0_reverse", (1024,)),
    ("SequenceModeling.1.rnn.bias_hh_l0_reverse", (1024,)),
    ("SequenceModeling.1.linear.weight", (256, 512)),
    ("SequenceModeling.1.linear.bias", (256,)),
    ("Prediction.weight", (1009, 256)),
    ("Prediction.bias", (1009,)),
]


@pytest.fixture(scope="module")
def layout() -> dict:
    return dict(KEY_LAYOUT)


@pytest.fixture(scope="module")
def charset() -> str:
    return load_charset("korean_g2")


def trained_like(seed: int = 0, **sizes) -> Model:
    """A model whose every tensor (BatchNorm statistics included) differs from a fresh one's."""
    torch.manual_seed(seed)
    m = Model(**{**GEN2.params(), "num_class": 1009, **sizes})
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.2 + 0.05 if t.dim() == 1 else torch.randn_like(t) * 0.1)
    return m.eval()


def test_key_layout_matches_easyocr(layout):
    # EasyOCR's generation-2 network_params (its easyocr.py), which an exported yaml repeats
    assert KOREAN_G2.network.params() == {"input_channel": 1, "output_channel": 256, "hidden_size": 256}
    assert network_for("korean_g2") is network_for("english_g2") is network_for("none") is GEN2
    sd = KOREAN_G2.network.build(1009).state_dict()
    assert len(KEY_LAYOUT) == len(layout) == 44
    assert list(sd) == [k for k, _ in KEY_LAYOUT]
    assert {k: tuple(v.shape) for k, v in sd.items()} == layout
    assert sum(p.numel() for p in GEN2.build(1009).parameters()) == 4_015_729


def test_output_shape():
    with torch.no_grad():
        assert GEN2.build(1009).eval()(torch.zeros(2, 1, 80, 100)).shape == (2, 24, 1009)


def test_benchmark_init_keeps_the_signal_through_the_unnormalized_convolutions():
    x = torch.rand(8, 1, 80, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    stds = {}
    for init in ("pytorch", "kaiming"):
        torch.manual_seed(0)
        m = GEN2.build(1009)
        if init == "kaiming":
            init_weights(m)
        with torch.no_grad():
            stds[init] = m.FeatureExtraction.ConvNet[:11](x).std().item()  # what reaches the first BatchNorm
        if init == "kaiming":
            for name, p in m.named_parameters():
                if name.endswith("bias") or "bias_" in name:
                    assert not p.any(), name
                elif p.dim() == 1:
                    assert (p == 1).all(), name
                else:
                    fan_in = p[0].numel()
                    assert abs(p.std().item() / math.sqrt(2 / fan_in) - 1) < 0.1, name
    assert stds["kaiming"] > 0.5 > 0.1 > stds["pytorch"]


@pytest.mark.parametrize("wrap", ["module", "plain", "state_dict", "model"])
def test_checkpoint_round_trip(tmp_path, charset, wrap):
    ref = trained_like()
    state = save_checkpoint_state(ref) if wrap == "module" else ref.state_dict()
    if wrap == "module":
        assert all(k.startswith("module.") for k in state) and len(state) == 44
    if wrap in ("state_dict", "model"):
        state = {wrap: save_checkpoint_state(ref)}
    path = tmp_path / "w.pth"
    torch.save(state, path)

    model = GEN2.build(1009).eval()
    report = load_pretrained(model, str(path), charset)
    assert report == {"kept_classes": 1009, "new_classes": 0, "dropped_classes": 0}
    x = torch.randn(2, 1, 64, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_head_remap(tmp_path, charset):
    foreign = "αβγδ"
    assert not set(foreign) & set(charset)
    removed = set(charset[100:110])
    source = "".join(reversed([c for c in charset if c not in removed])) + foreign
    src = trained_like(num_class=len(source) + 1)
    with torch.no_grad():  # row r holds r everywhere: easy to trace
        src.Prediction.weight.copy_(torch.arange(len(source) + 1, dtype=torch.float32)[:, None].expand(-1, 256))
        src.Prediction.bias.copy_(torch.arange(len(source) + 1, dtype=torch.float32))
    path = tmp_path / "other.pth"
    torch.save(save_checkpoint_state(src), path)

    torch.manual_seed(5)
    model = GEN2.build(1009)
    init_w, init_b = model.Prediction.weight.detach().clone(), model.Prediction.bias.detach().clone()
    report = load_pretrained(model, str(path), charset, source_charset=source)
    assert report == {"kept_classes": 1009 - len(removed), "new_classes": len(removed),
                      "dropped_classes": len(foreign)}

    w, b = model.Prediction.weight.detach(), model.Prediction.bias.detach()
    assert torch.equal(w[0], src.Prediction.weight[0]) and b[0] == 0
    for j, c in enumerate(charset):
        if c in removed:
            assert torch.equal(w[j + 1], init_w[j + 1]) and b[j + 1] == init_b[j + 1]
        else:
            r = source.index(c) + 1
            assert torch.all(w[j + 1] == r) and b[j + 1] == r
    assert torch.equal(model.SequenceModeling[0].rnn.weight_hh_l0, src.SequenceModeling[0].rnn.weight_hh_l0)

    with pytest.raises(HwocrError, match="character set of the checkpoint must be given"):
        load_pretrained(GEN2.build(1009), str(path), charset)


def test_other_architecture_is_refused(tmp_path, charset):
    path = tmp_path / "big.pth"
    torch.save(replace(GEN2, output_channel=512).build(1009).state_dict(), path)
    with pytest.raises(HwocrError) as e:
        load_pretrained(GEN2.build(1009), str(path), charset)
    msg = str(e.value)
    assert str(path) in msg and "None-VGG-BiLSTM-CTC" in msg and "FeatureExtraction.ConvNet.0.weight" in msg


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(HwocrError, match="junk.pth"):
        load_state_dict(str(path))


def test_korean_g2_md5_mismatch(tmp_path):
    fake = tmp_path / "korean_g2.pth"
    fake.write_bytes(b"not the weights")
    with pytest.raises(HwocrError) as e:
        resolve_pretrained("korean_g2", cache_dir=str(tmp_path), download=False)
    msg = str(e.value)
    assert str(fake) in msg and KOREAN_G2.md5 in msg and md5_file(str(fake)) in msg


def test_korean_g2_missing_offline(tmp_path):
    with pytest.raises(HwocrError) as e:
        resolve_pretrained("korean_g2", cache_dir=str(tmp_path), download=False)
    assert KOREAN_G2.url in str(e.value) and str(tmp_path) in str(e.value)


def test_resolve_other_specs(tmp_path):
    import fsspec

    assert resolve_pretrained("none") is None
    local = tmp_path / "w.pth"
    local.write_bytes(b"x")
    assert resolve_pretrained(str(local)) == str(local)
    with pytest.raises(HwocrError, match="nope.pth"):
        resolve_pretrained(str(tmp_path / "nope.pth"))

    url = "memory://hwocr-test/weights.pth"
    with fsspec.open(url, "wb") as f:
        f.write(b"weights")
    got = resolve_pretrained(url, cache_dir=str(tmp_path / "cache"))
    assert open(got, "rb").read() == b"weights"
    assert resolve_pretrained(url, cache_dir=str(tmp_path / "cache"), download=False) == got
    with fsspec.open(url, "wb") as f:  # replaced at the same URL: fetched again, not served stale
        f.write(b"new weights")
    again = resolve_pretrained(url, cache_dir=str(tmp_path / "cache"))
    assert again != got and open(again, "rb").read() == b"new weights"
    with pytest.raises(HwocrError, match="memory://hwocr-test/missing.pth"):
        resolve_pretrained("memory://hwocr-test/missing.pth", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("texts", [["한글", "손글씨", "안녕하세요"], ["Hello", "hELLO"], ["2024", "a b", " 12 "]])
def test_codec_round_trip(charset, texts):
    codec = CTCCodec(charset)
    assert codec.num_class == 1009
    targets, lengths = codec.encode(texts)
    assert targets.dtype == torch.long and lengths.dtype == torch.int32
    assert lengths.tolist() == [len(t) for t in texts] and targets.min() >= 1
    # One text per row, each character followed by a blank so that repeats ("ll") survive decoding.
    rows, start = [], 0
    for n in lengths.tolist():
        row = []
        for i in targets[start:start + n].tolist():
            row += [i, 0]
        rows.append(row + [0] * (40 - len(row)))
        start += n
    assert codec.decode_greedy(torch.tensor(rows)) == texts


def test_codec_merges_repeats_and_drops_blanks(charset):
    codec = CTCCodec(charset)
    assert codec.decode_greedy(torch.tensor([[0, 5, 5, 0, 5, 7, 7, 0]])) == [charset[4] * 2 + charset[6]]
    logits = torch.nn.functional.one_hot(torch.tensor([[3, 3, 0, 0], [0, 0, 0, 0]]), 1009).float()
    assert codec.decode_greedy(logits) == [charset[2], ""]


def test_codec_rejects_unknown_character(charset):
    with pytest.raises(HwocrError) as e:
        CTCCodec(charset).encode(["가나", "abc€"])
    assert "abc€" in str(e.value) and "'€'" in str(e.value)


def test_confidence_matches_easyocr_formula():
    codec = CTCCodec("ab")
    probs = torch.tensor([
        [[0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1], [0.05, 0.05, 0.9]],  # a a - b
        [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25], [0.7, 0.2, 0.1]],  # all blank
    ])
    (text, conf), (empty, zero) = codec.decode_with_confidence(probs)
    # EasyOCR's custom_mean over the max probability of every non-blank step (the repeated "a" included).
    assert text == "ab" and conf == pytest.approx((0.6 * 0.7 * 0.9) ** (2 / math.sqrt(3)))
    assert empty == "" and zero == 0.0
