"""Read images with the real EasyOCR and a custom-network bundle; runs in EasyOCR's own venv (no hwocr imports).

    python models/easyocr_read.py BUNDLE_DIR NAME JOBS_FILE

JOBS_FILE is JSON: a list of jobs {"read": KIND, "quantize": bool, "paths": [image paths]} ("batched" jobs add
"batch": N). Every job runs in this one process, as `import easyocr` alone costs seconds. stdout gets one JSON
line [job index, value] per path, job by job, in order. KIND is one of:

- "recognize": what recognize() gives on the grayscale image, read as recognize_like (same-width images through one
  get_text call, the network still run on each alone); value [text, confidence]. "decoder" (greedy, beamsearch or
  wordbeamsearch) and "beam_width" are recognize()'s; "words", a list, replaces the dictionary wordbeamsearch
  searches (EasyOCR's own dict/ko.txt otherwise) for this job.
- "batched": the images read N at a time as boxes of one stacked image through recognize's batched branch
  (every crop padded to the widest, batch_size N), which EasyOCR takes on a GPU with batch_size > 1 (EasyOCR
  #1038); value [text, confidence].
- "detect": the first half of readtext(path): its CRAFT detector with readtext's default settings ("settings"
  overrides them by name), from a Reader that loads the detector alone (from the folder "detector" names, float,
  as readtext on a float Reader runs it); value [horizontal_list, free_list] as detect() gives them for the image,
  with plain ints and floats. It needs no recognizer: a page's boxes are found once, whatever model reads them.
  "cache", a folder, keeps each image's value there under a key of the image's bytes, the detector's weights,
  EasyOCR's version and the settings: the same page is detected once, however many models read it.
- "readtext": the second half: recognize() on the grayscale image, in the boxes a detect job found ("boxes": one
  [horizontal_list, free_list] a path, or "from": the index of a detect job of this file), with readtext's
  default settings: together, what readtext(path) gives. Value readtext's results, as [[[x, y] x 4 corners],
  text, confidence] with plain ints and floats.

The jobs of one quantize value share one Reader (the recognizer), the detect jobs one of their own (the detector).
An image file is decoded once for all the jobs that read it. After each job, a line ["seconds", job index, its
reading time] (the readers' start-up left out).
"""

import json
import os
import sys
import time


class Unreadable(Exception):
    pass


def main() -> int:
    bundle, name, jobs_file = sys.argv[1:4]
    import easyocr

    with open(jobs_file, encoding="utf-8") as f:
        jobs = json.load(f)
    readers = {}

    def reader(job):
        kind = "detect" if job["read"] == "detect" else job["quantize"]
        if kind not in readers:
            where = job["detector"] if kind == "detect" else bundle
            options = ({"recognizer": False, "quantize": False} if kind == "detect" else
                       {"detector": False, "recog_network": name, "quantize": kind, "user_network_directory": bundle})
            readers[kind] = easyocr.Reader(["ko"] if kind != "detect" else ["en"], gpu=False,
                                           model_storage_directory=where, download_enabled=False, verbose=False,
                                           **options)
        return readers[kind]

    found = {}  # the detect jobs' values, for the readtext jobs that read "from" them
    try:
        for index, job in enumerate(jobs):
            values = []
            # A detect job whose pages are all cached never loads the detector.
            read = _Lazy(lambda job=job: reader(job)) if job["read"] == "detect" else reader(job)
            start = time.perf_counter()
            for value in READS[job["read"]](read, job, found):
                print(json.dumps([index, value], ensure_ascii=False), flush=True)
                values.append(value)
            print(json.dumps(["seconds", index, time.perf_counter() - start]), flush=True)
            if job["read"] == "detect":
                found[index] = values
    except Unreadable as e:
        print(f"cannot read {e}", file=sys.stderr)
        return 2
    return 0


class _Lazy:
    def __init__(self, make):
        self._make, self._made = make, None

    def __getattr__(self, name):
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, name)


_GRAYS: dict = {}


def gray(path):
    """cv2_gray, decoded once per process: float, int8 and batched jobs read the same paths. Nothing downstream
    writes into it (EasyOCR crops and resizes into copies)."""
    if path not in _GRAYS:
        _GRAYS[path] = cv2_gray(path)
    return _GRAYS[path]


def cv2_gray(path):
    """The image as recognize() gets it from a user: OpenCV, grayscale."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise Unreadable(path)
    return img


def recognize(reader, job, _found):
    words = job.get("words")
    if words is not None:  # wordbeamsearch's dictionary: the converter's public list, this job only
        words, reader.converter.dict_list = reader.converter.dict_list, words
    try:
        read = recognize_like(reader, [gray(path) for path in job["paths"]], decoder=job.get("decoder", "greedy"),
                              beam_width=job.get("beam_width", 5))
    finally:
        if words is not None:
            reader.converter.dict_list = words
    for text, conf in read:
        yield [text, float(conf)]


GROUP = 256  # images a get_text call at most: its batch is stacked in memory (64 x max_width floats an image)


def recognize_like(reader, images, group=GROUP, decoder="greedy", beam_width=5):
    """[(text, confidence)] equal, bit for bit, to [reader.recognize(im)[0][1:] for im in images] on a CPU.

    recognize() on one image is get_image_list on the whole image (resized to the model height), then get_text
    with the width it pads to (max_width) and batch_size 1. Images of one max_width so go through one get_text
    call, as recognize() calls it but with batch_size the group's size: EasyOCR's own code crops, resizes, pads
    each image alone (NormalizePAD), decodes and re-reads the low-confidence ones with more contrast. Only the
    network sees a batch, and runs each image of it alone (_one_by_one): stacked images read differently (float:
    the LSTM's matrix products round differently past one row, about 1e-6 on a confidence; int8: dynamic
    quantization scales a whole batch's activations at once, which changes texts). What this saves is
    recognize()'s per-call work, not the network's."""
    import easyocr.easyocr
    from easyocr.recognition import get_text
    from easyocr.utils import get_image_list

    imgH = easyocr.easyocr.imgH  # the module global a custom network's yaml sets, as recognize() reads it
    ignore_char = "".join(set(reader.character) - set(reader.lang_char))
    network = _one_by_one(reader.recognizer)
    crops, by_width = [], {}
    for k, im in enumerate(images):
        y_max, x_max = im.shape
        image_list, max_width = get_image_list([[0, x_max, 0, y_max]], [], im, model_height=imgH)
        [crop] = image_list  # recognize() on an image with no box would fail as well
        crops.append(crop)
        by_width.setdefault(int(max_width), []).append(k)
    out = [None] * len(images)
    for width, ks in by_width.items():
        for s in range(0, len(ks), group):
            chunk = ks[s:s + group]
            result = get_text(reader.character, imgH, width, network, reader.converter, [crops[k] for k in chunk],
                              ignore_char, decoder, beam_width, len(chunk), 0.1, 0.5, 0.003, 0, reader.device)
            for k, (_, text, conf) in zip(chunk, result):
                out[k] = (text, conf)
    return out


def _one_by_one(recognizer):
    """The recognizer run on each image of a batch alone, as recognize() runs it on a CPU."""
    import torch

    class OneByOne(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image, text):
            return torch.cat([self.net(image[k:k + 1], text[k:k + 1]) for k in range(image.shape[0])])

    return OneByOne(recognizer)


def read_batched(reader, job, _found):
    images, n = [gray(path) for path in job["paths"]], job["batch"]
    for i in range(0, len(images), n):
        for text, conf in batched(reader, images[i:i + n], n):
            yield [text, float(conf)]


def readtext_defaults(method) -> dict:
    """readtext's default settings that `method` (detect or recognize) also takes: what readtext passes on."""
    import inspect

    import easyocr

    ours = inspect.signature(method).parameters
    return {k: p.default for k, p in inspect.signature(easyocr.Reader.readtext).parameters.items()
            if k in ours and k != "reformat" and p.default is not inspect.Parameter.empty}


def _image(path):
    from easyocr.utils import reformat_input

    # reformat_input(path) would fail deep inside OpenCV on a missing file; say which one.
    if not os.path.isfile(path):
        raise Unreadable(path)
    return reformat_input(path)  # (colour, grayscale), as readtext loads a path a user passes


def detect(reader, job, _found):
    import easyocr

    settings = {**readtext_defaults(easyocr.Reader.detect), **job.get("settings", {})}
    cache = job.get("cache")
    for path in job["paths"]:
        where = os.path.join(cache, _detect_key(path, job["detector"], settings) + ".json") if cache else None
        try:
            with open(where, encoding="utf-8") as f:
                yield json.load(f)
            continue
        except (TypeError, OSError, ValueError):
            pass
        horizontal, free = reader.detect(_image(path)[0], reformat=False, **settings)
        value = json.loads(json.dumps([horizontal[0], free[0]], default=_number))
        if where:
            _write_json(where, value)
        yield value


_DIGESTS: dict = {}


def _digest(path):
    import hashlib

    if path not in _DIGESTS:
        try:
            with open(path, "rb") as f:
                _DIGESTS[path] = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            raise Unreadable(path) from None
    return _DIGESTS[path]


def _detect_key(path, detector, settings):
    import hashlib

    import easyocr

    weights = _digest(os.path.join(detector, "craft_mlt_25k.pth"))
    what = json.dumps([_digest(path), weights, easyocr.__version__, settings], sort_keys=True, default=str)
    return hashlib.sha256(what.encode()).hexdigest()[:40]


def _write_json(path, value):
    """Whole or not at all: a reader never finds half a file."""
    import tempfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, part = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(part, path)


def readtext(reader, job, found):
    boxes = found[job["from"]] if "from" in job else job["boxes"]
    settings = readtext_defaults(reader.recognize)
    for path, (horizontal, free) in zip(job["paths"], boxes, strict=True):
        result = reader.recognize(_image(path)[1], horizontal, free, reformat=False, **settings)
        yield [[[[_number(x), _number(y)] for x, y in box], text, float(conf)] for box, text, conf in result]


READS = {"recognize": recognize, "batched": read_batched, "detect": detect, "readtext": readtext}


def _number(v):
    v = float(v)  # numpy's ints and floats as well
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
