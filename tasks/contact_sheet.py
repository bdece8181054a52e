"""A contact sheet: rendered samples beside their labels, for people to eyeball a dataset."""

from __future__ import annotations

import io
import os

from PIL import Image, ImageDraw, ImageFont
from prefect import task

from hwocr import storage
from tasks.lmdb_pack import read_gt

LABEL_FONTS = [
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
]


def _label_font(size: int, fallback: str | None):
    for path in LABEL_FONTS + ([fallback] if fallback else []):
        if path and os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def contact_sheet_fn(gt_url: str, image_root: str, out_url: str, samples: int = 48, columns: int = 3,
                     label_font: str | None = None) -> str:
    rows = read_gt(gt_url)[:samples]
    cell_w, img_h, label_w = 260, 64, 200
    font = _label_font(22, label_font)
    n_rows = -(-len(rows) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + label_w), n_rows * (img_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    with storage.reader(image_root) as read:
        for i, (_, path, label) in enumerate(rows):
            with Image.open(io.BytesIO(read(path))) as im:
                im = im.convert("RGB")
                im.thumbnail((cell_w - 8, img_h))
            x = (i % columns) * (cell_w + label_w) + 4
            y = (i // columns) * (img_h + 8) + 4
            sheet.paste(im, (x, y))
            draw.rectangle([x - 1, y - 1, x + im.width, y + im.height], outline=(200, 200, 200))
            draw.text((x + cell_w, y + img_h // 2), label, fill=(200, 0, 0), font=font, anchor="lm")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    storage.write_bytes(out_url, buf.getvalue())
    return out_url


contact_sheet = task(contact_sheet_fn, name="contact_sheet", retries=1)
