"""How far a reading's confidence can be trusted: a reliability table (confidence bins against the share read right),
the expected calibration error, and the confidence thresholds above which readings reach 99% and 95% precision,
with the share of words each keeps. A reading below the threshold goes to a person.

The confidence is EasyOCR's (models/codec.py computes it as EasyOCR does), and "right" is the whole word read
exactly.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

MIN_WORDS = 200  # fewer, and a 99% threshold rests on a handful of words
TARGETS = (99.0, 95.0)


def calibrate(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict:
    """{"words", "ece", "bins": [{"low", "high", "words", "confidence", "accuracy"}], "thresholds": {"99": {...}}}
    or, for a split under MIN_WORDS words, {"words", "skipped": why}. A threshold is the lowest confidence whose
    readings at or above it are right at least the target share of the time: {"confidence", "precision",
    "kept"} (percent of words), or None when no threshold reaches it."""
    n = len(confidences)
    if n != len(correct):
        raise ValueError(f"{n} confidences for {len(correct)} outcomes")
    if n < MIN_WORDS:
        return {"words": n, "skipped": f"{n} words: calibration needs at least {MIN_WORDS}"}
    table = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [i for i, c in enumerate(confidences) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if inside:
            table.append({"low": low, "high": high, "words": len(inside),
                          "confidence": round(sum(confidences[i] for i in inside) / len(inside) * 100, 2),
                          "accuracy": round(sum(bool(correct[i]) for i in inside) / len(inside) * 100, 2)})
    ece = sum(row["words"] * abs(row["accuracy"] - row["confidence"]) for row in table) / n
    order = sorted(range(n), key=lambda i: -confidences[i])
    thresholds: dict[str, dict | None] = {f"{t:g}": None for t in TARGETS}
    right = 0
    for k, i in enumerate(order, 1):
        right += bool(correct[i])
        if k < n and confidences[order[k]] == confidences[i]:
            continue  # a threshold keeps every reading of its confidence
        for t in TARGETS:
            if 100.0 * right / k >= t:
                thresholds[f"{t:g}"] = {"confidence": round(confidences[i], 4),
                                        "precision": round(100.0 * right / k, 2), "kept": round(100.0 * k / n, 2)}
    return {"words": n, "ece": round(ece, 2), "bins": table, "thresholds": thresholds}


def lines(cal: dict) -> list[str]:
    if "skipped" in cal:
        return [f"calibration skipped: {cal['skipped']}"]
    out = [f"calibration on {cal['words']} words: expected calibration error {cal['ece']:.2f} points"]
    for target, t in cal["thresholds"].items():
        out.append(f"  {target}% precision: confidence >= {t['confidence']:.4f} keeps {t['kept']:.1f}% of words"
                   if t else f"  {target}% precision: no confidence threshold reaches it")
    return out


def reliability_picture(cal: dict, out_url: str) -> None:
    """calibration.png: the share read right per confidence bin (bars) against the diagonal of a calibrated
    model, the words in each bin, and the thresholds."""
    from PIL import Image, ImageDraw

    from hwocr import storage
    from synth.fonts import caption_font

    size, pad = 360, 60
    im = Image.new("RGB", (size + 2 * pad + 220, size + 2 * pad), "white")
    draw = ImageDraw.Draw(im)
    font = caption_font(15, None)

    def xy(conf: float, acc: float) -> tuple[float, float]:
        return pad + conf * size, pad + size - acc * size

    draw.rectangle([*xy(0, 1), *xy(1, 0)], outline=(0, 0, 0))
    draw.line([xy(0, 0), xy(1, 1)], fill=(150, 150, 150), width=2)
    for row in cal["bins"]:
        (x0, y0), (x1, y1) = xy(row["low"], row["accuracy"] / 100), xy(row["high"], 0)
        draw.rectangle([x0 + 2, y0, x1 - 2, y1], fill=(90, 140, 210), outline=(40, 80, 160))
        draw.text(((x0 + x1) / 2, y1 + 4), str(row["words"]), fill=(80, 80, 80), font=font, anchor="ma")
    for v in (0, 0.5, 1):
        draw.text((xy(v, 0)[0], pad + size + 24), f"{v:g}", fill=(0, 0, 0), font=font, anchor="ma")
        draw.text((pad - 8, xy(0, v)[1]), f"{v * 100:g}%", fill=(0, 0, 0), font=font, anchor="rm")
    draw.text((pad + size / 2, pad + size + 42), "confidence (words per bin below the bars)", fill=(0, 0, 0),
              font=font, anchor="ma")
    draw.text((pad, pad - 30), f"read right per bin, {cal['words']} words; ECE {cal['ece']:.2f} points", fill=(0, 0, 0),
              font=font)
    y = pad
    for target, t in cal["thresholds"].items():
        text = (f"{target}% precision:\n  confidence >= {t['confidence']:.3f}\n  keeps {t['kept']:.1f}% of words"
                if t else f"{target}% precision:\n  not reached")
        draw.multiline_text((pad + size + 20, y), text, fill=(0, 0, 0), font=font)
        y += 70
    buf = io.BytesIO()
    im.save(buf, "PNG")
    storage.write_bytes(out_url, buf.getvalue())


def readme_section(cal: dict | None, split: str) -> str:
    """The bundle README's word on confidence: the thresholds measured on `split`."""
    if not cal or "skipped" in cal:
        why = cal["skipped"] if cal else "no evaluation was given to export"
        return f"## Confidence\n\nNot calibrated ({why}).\n"
    rows = [f"| {target}% | {t['confidence']:.4f} | {t['kept']:.1f}% |" if t else f"| {target}% | not reached | - |"
            for target, t in cal["thresholds"].items()]
    return ("## Confidence\n\nMeasured on the {split} split ({n} words, read by this model as EasyOCR reads them; "
            "expected calibration error {ece:.2f} points). Send a reading whose confidence is below the threshold "
            "to a person:\n\n| precision | confidence at least | words kept |\n|---|---|---|\n{rows}\n\n"
            "![read right per confidence bin](calibration.png)\n\nOn handwriting the model never saw, the same "
            "threshold buys less precision (on the held-out families of a cpu-reference run, 99% on validation "
            "was 93% there): `hwocr evaluate --model THIS_FOLDER --engine easyocr --data YOUR_LABELLED_SCANS` prints "
            "the thresholds of your own hand.\n").format(
        split=split, n=cal["words"], ece=cal["ece"], rows="\n".join(rows))
