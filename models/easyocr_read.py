"""Read images with the real EasyOCR and a custom-network bundle; runs in EasyOCR's own venv (no hwocr imports).

    python models/easyocr_read.py BUNDLE_DIR NAME JOBS_FILE

JOBS_FILE is JSON: a list of jobs {"read": KIND, "quantize": bool, "paths": [image paths]} ("batched" jobs add
"batch": N). Every job runs in this one process, as `import easyocr` alone costs seconds. stdout gets one JSON
line [job index, value] per path, job by job, in order. KIND is one of:

- "recognize": recognize() on the grayscale image; value [text, confidence].
- "batched": the images read N at a time as boxes of one stacked image through recognize's batched branch
  (every crop padded to the widest, batch_size N), which EasyOCR takes on a GPU with batch_size > 1 (EasyOCR
  #1038); value [text, confidence].
- "readtext": readtext(path) with its default settings (the bundle's CRAFT detector, then the recognizer on
  every box it finds); value readtext's results, as [[[x, y] x 4 corners], text, confidence] with plain ints and
  floats.

The jobs of one quantize value share one Reader, which loads the detector only if one of them is readtext (the
recognizer is the same either way).
"""

import json
import os
import sys


class Unreadable(Exception):
    pass


def main() -> int:
    bundle, name, jobs_file = sys.argv[1:4]
    import easyocr

    with open(jobs_file, encoding="utf-8") as f:
        jobs = json.load(f)
    readers = {}
    for quantize in dict.fromkeys(job["quantize"] for job in jobs):
        detector = any(job["read"] == "readtext" for job in jobs if job["quantize"] == quantize)
        readers[quantize] = easyocr.Reader(["ko"], gpu=False, detector=detector, recog_network=name,
                                           quantize=quantize, user_network_directory=bundle,
                                           model_storage_directory=bundle, download_enabled=False, verbose=False)
    try:
        for index, job in enumerate(jobs):
            for value in READS[job["read"]](readers[job["quantize"]], job):
                print(json.dumps([index, value], ensure_ascii=False), flush=True)
    except Unreadable as e:
        print(f"cannot read {e}", file=sys.stderr)
        return 2
    return 0


def gray(path):
    import cv2

    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise Unreadable(path)
    return img


def recognize(reader, job):
    for path in job["paths"]:
        [(_, text, conf)] = reader.recognize(gray(path))
        yield [text, float(conf)]


def read_batched(reader, job):
    images, n = [gray(path) for path in job["paths"]], job["batch"]
    for i in range(0, len(images), n):
        for text, conf in batched(reader, images[i:i + n], n):
            yield [text, float(conf)]


def readtext(reader, job):
    for path in job["paths"]:
        # readtext(path) would fail deep inside OpenCV on a missing file; say which one.
        if not os.path.isfile(path):
            raise Unreadable(path)
        # A path, as users pass it: readtext loads the colour and the grayscale image itself.
        found = reader.readtext(path)
        yield [[[[_number(x), _number(y)] for x, y in box], text, float(conf)] for box, text, conf in found]


READS = {"recognize": recognize, "batched": read_batched, "readtext": readtext}


def _number(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def batched(reader, images, batch_size):
    """recognize()'s branch for batch_size > 1 on a GPU (on CPU it reads box by box), on CPU: the images stacked
    with white gaps, one horizontal box each, every crop padded to the widest."""
    import easyocr.easyocr
    import numpy as np
    from easyocr.recognition import get_text
    from easyocr.utils import get_image_list

    gap, width = 16, max(im.shape[1] for im in images)
    canvas = np.full((sum(im.shape[0] + gap for im in images), width), 255, np.uint8)
    boxes, y = [], 0
    for im in images:
        canvas[y:y + im.shape[0], :im.shape[1]] = im
        boxes.append([0, im.shape[1], y, y + im.shape[0]])
        y += im.shape[0] + gap
    imgH = easyocr.easyocr.imgH  # the module global a custom network's yaml sets, as recognize() reads it
    image_list, max_width = get_image_list(boxes, [], canvas, model_height=imgH)
    ignore_char = "".join(set(reader.character) - set(reader.lang_char))
    result = get_text(reader.character, imgH, int(max_width), reader.recognizer, reader.converter, image_list,
                      ignore_char, "greedy", 5, batch_size, 0.1, 0.5, 0.003, 0, reader.device)
    return [(text, conf) for _, text, conf in result]


if __name__ == "__main__":
    sys.exit(main())
