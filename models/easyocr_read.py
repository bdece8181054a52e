"""Read images with the real EasyOCR and a custom-network bundle; runs in EasyOCR's own venv (no hwocr imports).

    python models/easyocr_read.py BUNDLE_DIR NAME LIST_FILE [--quantize] [--batch N]

LIST_FILE holds one image path a line; stdout gets one JSON line [text, confidence] per image, in order.
With --batch N the images are read N at a time as boxes of one stacked image through recognize's batched branch
(every crop padded to the widest, batch_size N), which EasyOCR takes on a GPU with batch_size > 1 (EasyOCR #1038).
"""

import json
import sys


def main() -> int:
    bundle, name, list_file = sys.argv[1:4]
    import cv2
    import easyocr

    reader = easyocr.Reader(["ko"], gpu=False, detector=False, recog_network=name, quantize="--quantize" in sys.argv,
                            user_network_directory=bundle, model_storage_directory=bundle, download_enabled=False,
                            verbose=False)
    with open(list_file, encoding="utf-8") as f:
        paths = f.read().splitlines()
    images = []
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            print(f"cannot read {path}", file=sys.stderr)
            return 2
        if "--batch" not in sys.argv:
            [(_, text, conf)] = reader.recognize(img)
            print(json.dumps([text, float(conf)], ensure_ascii=False), flush=True)
        else:
            images.append(img)
    if images:
        n = int(sys.argv[sys.argv.index("--batch") + 1])
        for i in range(0, len(images), n):
            for text, conf in batched(reader, images[i:i + n], n):
                print(json.dumps([text, float(conf)], ensure_ascii=False), flush=True)
    return 0


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
