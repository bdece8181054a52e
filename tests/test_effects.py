import hashlib
import json
import os
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from synth import effects as fx
from synth.effects import EffectsSettings, apply_effects

PEN = "/usr/share/fonts/truetype/nanum/NanumPen.ttf"

# Each effect at a strength that always changes the test image.
STRONG = {
    "elastic": {"alpha": 4.0, "sigma": 10.0},
    "stroke": {"max_pixels": 2},
    "ink": {"level_min": 0.5, "level_max": 0.8, "pressure": 0.5},
    "paper": {"noise": 10.0, "gradient": 0.3, "lines_probability": 1.0, "show_through": 0.2},
    "blur_jpeg": {"blur_radius_min": 0.8, "blur_radius_max": 1.5, "jpeg_probability": 1.0},
    "pad_crop": {"max_fraction": 0.25},
    "craft_crop": {"spread": 1.5},
}
# One out-of-range value per effect: (field, value).
OUT_OF_RANGE = {
    "elastic": ("alpha", 11.0),
    "stroke": ("max_pixels", 5),
    "ink": ("pressure", 0.95),
    "paper": ("noise", -1.0),
    "blur_jpeg": ("jpeg_quality_max", 101),
    "pad_crop": ("max_fraction", 0.5),
    "craft_crop": ("spread", 2.5),
}


def word_image(mode="L", text="손글씨", width=200):
    img = Image.new("L", (width, 80), 255)
    draw = ImageDraw.Draw(img)
    if os.path.exists(PEN):
        draw.text((8, 6), text, font=ImageFont.truetype(PEN, 60), fill=40)
    else:
        for x in range(12, width - 20, 30):
            draw.line([(x, 15), (x + 18, 65)], fill=40, width=4)
            draw.ellipse([x + 5, 20, x + 25, 45], outline=40, width=3)
    return img if mode == "L" else img.convert("RGB")


def only(name, **fields):
    return EffectsSettings.model_validate({name: {"enabled": True, "probability": 1.0, **STRONG[name], **fields}})


def digest(img):
    return hashlib.sha256(img.mode.encode() + repr(img.size).encode() + img.tobytes()).hexdigest()


@pytest.fixture(scope="module", params=["L", "RGB"])
def image(request):
    return word_image(request.param)


@pytest.mark.parametrize("name", fx.ORDER)
def test_effect_changes_image_and_keeps_mode(image, name):
    out = apply_effects(image, only(name), seed=7)
    assert out.mode == image.mode
    if name in ("pad_crop", "craft_crop"):
        assert out.size != image.size
    else:
        assert out.size == image.size
    assert out.tobytes() != image.tobytes()


@pytest.mark.parametrize("name", fx.ORDER)
def test_effect_is_seeded(image, name):
    s = only(name)
    a, b = apply_effects(image, s, 3), apply_effects(image, s, 3)
    assert digest(a) == digest(b)
    assert digest(apply_effects(image, s, 4)) != digest(a)


@pytest.mark.parametrize("name", fx.ORDER)
def test_probability_zero_or_disabled_leaves_image(image, name):
    assert apply_effects(image, only(name, probability=0.0), 1) is image
    assert apply_effects(image, only(name, enabled=False), 1) is image
    assert apply_effects(image, EffectsSettings(), 1) is image
    assert not EffectsSettings().active()
    assert only(name).active()


def test_probability_fires_on_some_images():
    img = word_image()
    s = only("stroke", probability=0.5)
    changed = [apply_effects(img, s, seed).tobytes() != img.tobytes() for seed in range(40)]
    assert 5 < sum(changed) < 35


@pytest.mark.parametrize("name", fx.ORDER)
def test_out_of_range_is_rejected_naming_the_field(name):
    field, value = OUT_OF_RANGE[name]
    with pytest.raises(ValidationError) as e:
        EffectsSettings.model_validate({name: {"enabled": True, field: value}})
    assert e.value.errors()[0]["loc"] == (name, field)
    assert field in str(e.value)


@pytest.mark.parametrize("name", fx.ORDER)
def test_probability_out_of_range_is_rejected(name):
    with pytest.raises(ValidationError, match="probability"):
        EffectsSettings.model_validate({name: {"probability": 1.5}})


def test_unknown_fields_and_inverted_ranges_are_rejected():
    with pytest.raises(ValidationError, match="strenght"):
        EffectsSettings.model_validate({"elastic": {"strenght": 1}})
    with pytest.raises(ValidationError, match="level_min"):
        EffectsSettings.model_validate({"ink": {"level_min": 0.9, "level_max": 0.5}})
    with pytest.raises(ValidationError, match="jpeg_quality_min"):
        EffectsSettings.model_validate({"blur_jpeg": {"jpeg_quality_min": 95, "jpeg_quality_max": 50}})


def test_every_field_is_described():
    for name in fx.ORDER:
        model = type(getattr(EffectsSettings(), name))
        for field, info in model.model_fields.items():
            assert info.description, f"{name}.{field}"
    assert all(info.description for info in EffectsSettings.model_fields.values())


def test_global_random_state_does_not_matter(image):
    s = EffectsSettings.all_on(1.0)
    before = {seed: digest(apply_effects(image, s, seed)) for seed in (0, 1, 2)}
    random.seed(123)
    random.random()
    np.random.seed(456)
    np.random.rand(10)
    cv2.setRNGSeed(789)
    cv2.randu(np.zeros((4, 4), np.uint8), 0, 255)
    after = {seed: digest(apply_effects(image, s, seed)) for seed in (2, 0, 1)}
    assert after == before


def test_effects_compose_in_order_with_their_own_streams(image):
    # Each effect draws from its own (seed, name) stream: applying them one at a time in ORDER gives
    # the same bytes as applying them together, so enabling one never shifts another's draws.
    s = EffectsSettings.all_on(1.0)
    one_by_one = image
    for name in fx.ORDER:
        one_by_one = apply_effects(one_by_one, {name: getattr(s, name).model_dump()}, 9)
    assert digest(one_by_one) == digest(apply_effects(image, s, 9))


def test_accepts_dicts(image):
    s = EffectsSettings.all_on(1.0)
    want = digest(apply_effects(image, s, 11))
    assert digest(apply_effects(image, s.model_dump(), 11)) == want
    assert digest(apply_effects(image, json.loads(s.model_dump_json()), 11)) == want


def test_all_on(image):
    s = EffectsSettings.all_on()
    assert s.active()
    assert all(getattr(s, name).enabled for name in fx.ORDER)
    assert s.elastic.probability == fx.ElasticSettings().probability
    s1 = EffectsSettings.all_on(1.0)
    assert all(getattr(s1, name).probability == 1.0 for name in fx.ORDER)
    out = apply_effects(image, s1, 0)
    assert out.mode == image.mode and out.tobytes() != image.tobytes()


def test_narrow_and_unsupported_images():
    s = EffectsSettings.all_on(1.0)
    for w in (1, 3, 12):
        out = apply_effects(word_image(width=w), s, 2)
        assert out.mode == "L" and out.width >= 1 and out.height >= 1
    with pytest.raises(ValueError, match="mode"):
        apply_effects(word_image().convert("RGBA"), s, 0)
    with pytest.raises(ValueError, match="seed"):
        apply_effects(word_image(), s, -1)


def test_same_bytes_in_another_process():
    s = EffectsSettings.all_on(1.0)
    here = {mode: [digest(apply_effects(word_image(mode), s, seed)) for seed in (0, 1)] for mode in ("L", "RGB")}
    code = (
        "import json, sys\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from test_effects import word_image, digest\n"
        "from synth.effects import EffectsSettings, apply_effects\n"
        "s = EffectsSettings.all_on(1.0)\n"
        "print(json.dumps({m: [digest(apply_effects(word_image(m), s.model_dump(), seed)) for seed in (0, 1)]"
        " for m in ('L', 'RGB')}))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Another hash seed, and OpenCV on one thread: neither may change a byte.
    env = {**os.environ, "PYTHONHASHSEED": "random", "OPENCV_FOR_THREADS_NUM": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, root, os.path.join(root, "tests")],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_pad_crop_never_cuts_ink():
    import numpy as np

    img = word_image("L")
    ink = int((np.asarray(img) < 207).sum())
    for seed in range(40):
        out = apply_effects(img, only("pad_crop", max_fraction=0.3), seed)
        assert int((np.asarray(out) < 207).sum()) == ink, seed


def test_craft_crop_frames_the_ink_as_readtext_does():
    """The ink kept whole, and the margins around it those of readtext's crops (synth/data/craft_margins.json)."""
    img = word_image("L")
    a = np.asarray(img)
    ink = int((a < 207).sum())
    rows, cols = fx.ink_extent(a)
    ink_h = rows[-1] - rows[0] + 1
    table = fx.craft_margins()
    assert table.shape[1] == 4 and len(table) >= 500
    seen = []
    for seed in range(40):
        out = np.asarray(apply_effects(img, only("craft_crop", spread=1.0), seed))
        assert int((out < 207).sum()) == ink, seed
        r, c = fx.ink_extent(out)
        seen.append([r[0], out.shape[0] - 1 - r[-1], c[0], out.shape[1] - 1 - c[-1]])
    margins = np.array(seen) / ink_h
    low, high = table.min(axis=0) - 1 / ink_h, table.max(axis=0) + 1 / ink_h
    assert ((margins >= low) & (margins <= high)).all()
    assert len({tuple(m) for m in seen}) > 20  # drawn from the table, not one frame
    # No measured crop cuts more than a tenth of the ink's height off a side, and a spread of 2 no deeper: the
    # word is still there, whatever the row drawn.
    assert table.min() >= -fx.CRAFT_CUT
    for seed in range(40):
        out = np.asarray(apply_effects(img, only("craft_crop", spread=2.0), seed))
        assert int((out < 207).sum()) >= 0.8 * ink, seed
    # spread 0: every crop the median one.
    median = {np.asarray(apply_effects(img, only("craft_crop", spread=0.0), seed)).shape for seed in range(5)}
    assert len(median) == 1
