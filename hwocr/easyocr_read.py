"""Read images with the real EasyOCR and a custom-network bundle; runs in EasyOCR's own venv (no hwocr imports).

    python hwocr/easyocr_read.py BUNDLE_DIR NAME LIST_FILE [--quantize]

LIST_FILE holds one image path a line; stdout gets one JSON line [text, confidence] per image, in order.
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
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            print(f"cannot read {path}", file=sys.stderr)
            return 2
        [(_, text, conf)] = reader.recognize(img)
        print(json.dumps([text, float(conf)], ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
