"""EasyOCR's recognition path, reproduced: what `easyocr.Reader.recognize` feeds the network for a whole-image box.

For an image with no detector (`horizontal_list` None), EasyOCR 1.7.2 crops the whole grayscale image, resizes it
to the model height with OpenCV (`compute_ratio_and_resize`; its `Image.Resampling.LANCZOS` flag is OpenCV's
INTER_LINEAR), pads to `ceil(ratio) * imgH` (`get_image_list`), resizes again with PIL bicubic and pads by
repeating the last column (`AlignCollate`, `NormalizePAD`). Results below 0.1 confidence are read again after
`adjust_contrast_grey` and the more confident reading wins (`get_text`). The tests check this module against the
real `easyocr` package.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from PIL import Image

from models.codec import CTCCodec

CONTRAST_THS = 0.1  # Reader.recognize defaults
ADJUST_CONTRAST = 0.5


def input_width(w: int, h: int, img_h: int) -> int:
    """The network input width for a lone w x h crop: ceil(ratio) * img_h, the ratio inverted for tall crops."""
    ratio = w / h
    return math.ceil(max(ratio, 1.0 / ratio)) * img_h


def _resized(gray: np.ndarray, img_h: int) -> tuple[np.ndarray, int]:
    h, w = gray.shape
    ratio = w / h
    if ratio < 1.0:  # EasyOCR's arithmetic, to the last bit: invert, then multiply
        ratio = 1.0 / ratio
        img = cv2.resize(gray, (img_h, int(img_h * ratio)), interpolation=cv2.INTER_LINEAR)
    else:
        img = cv2.resize(gray, (int(img_h * ratio), img_h), interpolation=cv2.INTER_LINEAR)
    return img, input_width(w, h, img_h)


def adjust_contrast_grey(img: np.ndarray, target: float = ADJUST_CONTRAST) -> np.ndarray:
    high, low = np.percentile(img, 90), np.percentile(img, 10)
    if (high - low) / np.maximum(10, high + low) < target:
        img = (img.astype(int) - low + 25) * (200.0 / np.maximum(10, high - low))
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img


def easyocr_tensor(img: np.ndarray, img_h: int, max_w: int) -> torch.Tensor:
    """[1, 1, img_h, max_w] network input from an already height-resized grayscale array."""
    pil = Image.fromarray(img, "L")
    w, h = pil.size
    new_w = min(math.ceil(img_h * w / float(h)), max_w)
    arr = np.asarray(pil.resize((new_w, img_h), Image.BICUBIC), dtype=np.float32) / 255.0
    x = torch.from_numpy((arr - 0.5) / 0.5)
    out = torch.empty(1, 1, img_h, max_w)
    out[0, 0, :, :new_w] = x
    if new_w < max_w:
        out[0, 0, :, new_w:] = x[:, new_w - 1:new_w]
    return out


def crop_tensor(gray: np.ndarray, img_h: int, contrast: bool = False) -> tuple[torch.Tensor, int]:
    """([1, img_h, W] network input, W) for one grayscale crop, as recognize() feeds it: W = ceil(ratio) * img_h.

    contrast: the second reading of a low-confidence crop (`adjust_contrast_grey` on the height-resized crop)."""
    resized, max_w = _resized(gray, img_h)
    if contrast:
        resized = adjust_contrast_grey(resized)
    return easyocr_tensor(resized, img_h, max_w)[0], max_w


@torch.no_grad()
def recognize(model: torch.nn.Module, codec: CTCCodec, gray: np.ndarray, img_h: int) -> tuple[str, float]:
    """(text, confidence) for one grayscale uint8 image, as EasyOCR's Reader.recognize would return it."""
    model.eval()

    def read(contrast: bool) -> tuple[str, float]:
        probs = model(crop_tensor(gray, img_h, contrast)[0].unsqueeze(0)).float().softmax(2)
        return codec.decode_with_confidence(probs)[0]

    first = read(False)
    if first[1] >= CONTRAST_THS:
        return first
    second = read(True)
    return first if first[1] > second[1] else second
