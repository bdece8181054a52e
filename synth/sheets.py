"""Pictures for people to eyeball a dataset: rendered samples beside their labels, and every font against every
render effect. Each returns PNG bytes."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from synth.fonts import caption_font


def _png(sheet: Image.Image) -> bytes:
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return buf.getvalue()


def contact_sheet(samples: list[tuple[bytes, str]], columns: int = 3, label_font: str | None = None) -> bytes:
    """(encoded image, label) pairs, each image beside its label in red."""
    cell_w, img_h, label_w = 260, 64, 200
    font = caption_font(22, label_font)
    n_rows = -(-len(samples) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + label_w), n_rows * (img_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (data, label) in enumerate(samples):
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((cell_w - 8, img_h))
        x = (i % columns) * (cell_w + label_w) + 4
        y = (i // columns) * (img_h + 8) + 4
        sheet.paste(im, (x, y))
        draw.rectangle([x - 1, y - 1, x + im.width, y + im.height], outline=(200, 200, 200))
        draw.text((x + cell_w, y + img_h // 2), label, fill=(200, 0, 0), font=font, anchor="lm")
    return _png(sheet)


def effects_sheet(fonts: list[dict], words: list[str], pixels: dict, effects: dict, glyph_jitter: dict,
                  seed: int = 0) -> bytes:
    """One row per font (training fonts, then held-out ones), one column per render effect beside the plain render.

    Each effect is shown alone, at probability 1 and the strength in settings (enabled or not), on the same word and
    trdg draw, so a row shows what every effect does to that font.
    """
    from synth import trdg_driver
    from synth.effect_settings import ORDER, GlyphJitterSettings
    from synth.effects import apply_effects

    plain = trdg_driver.PixelSettings.model_validate(
        {k: v for k, v in pixels.items() if k not in ("effects", "glyph_jitter")})
    jittered = plain.model_copy(update={"glyph_jitter": GlyphJitterSettings.model_validate(
        {**glyph_jitter, "enabled": True, "probability": 1.0})})
    columns = ["plain", "glyph_jitter", *ORDER]
    cell_w, cell_h, name_w, head_h = 240, 56, 300, 36
    sheet = Image.new("RGB", (name_w + cell_w * len(columns), head_h + cell_h * len(fonts)), "white")
    draw = ImageDraw.Draw(sheet)
    label = caption_font(20, None)
    for c, name in enumerate(columns):
        draw.text((name_w + c * cell_w + 8, head_h // 2), name, fill=(0, 0, 0), font=label, anchor="lm")
    for r, font in enumerate(fonts):
        y = head_h + r * cell_h
        role = " (held out)" if font.get("held_out") else ""
        draw.text((8, y + cell_h // 2), font["name"] + role, fill=(0, 0, 0), font=label, anchor="lm")
        covered = set(font["covered"])
        word = next((w for w in words if len(w) >= 3 and covered.issuperset(w)), words[0])
        img = trdg_driver.render_one(word, font["path"], plain, seed)
        if img is None:
            continue
        for c, name in enumerate(columns):
            shown = img
            if name == "glyph_jitter":
                shown = trdg_driver.render_one(word, font["path"], jittered, seed) or img
            elif name != "plain":
                one = {**effects[name], "enabled": True, "probability": 1.0}
                shown = apply_effects(img, {name: one}, seed)
            shown = shown.convert("RGB")
            shown.thumbnail((cell_w - 12, cell_h - 8))
            sheet.paste(shown, (name_w + c * cell_w + 6, y + 4))
    return _png(sheet)
