"""Label Studio's OCR template, as its JSON holds a page's regions: each word a rectangle (or polygon), a label
and a transcription, three results sharing one region id, in percent of the image's size."""

from __future__ import annotations


def geometry(quad: list[list[float]], size: tuple[int, int], polygon: bool) -> dict:
    w, h = size
    if polygon:
        return {"points": [[round(100 * x / w, 6), round(100 * y / h, 6)] for x, y in quad]}
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return {"x": round(100 * min(xs) / w, 6), "y": round(100 * min(ys) / h, 6),
            "width": round(100 * (max(xs) - min(xs)) / w, 6), "height": round(100 * (max(ys) - min(ys)) / h, 6),
            "rotation": 0}


def regions(words: list[tuple[str, list[list[float]], str]], size: tuple[int, int], polygon: bool,
            label: str = "Handwriting") -> list[dict]:
    """The results of a page's words, each (region id, quadrilateral, text)."""
    kind, tool = ("polygon", "poly") if polygon else ("rectangle", "bbox")
    result = []
    for region, quad, text in words:
        g = geometry(quad, size, polygon)
        common = {"id": region, "to_name": "image", "original_width": size[0], "original_height": size[1],
                  "image_rotation": 0}
        result += [{**common, "type": kind, "from_name": tool, "value": g},
                   {**common, "type": "labels", "from_name": "label", "value": {**g, "labels": [label]}},
                   {**common, "type": "textarea", "from_name": "transcription", "value": {**g, "text": [text]}}]
    return result
