"""Read page images with the real EasyOCR's readtext (CRAFT detector + a custom-network bundle's recognizer); runs
in EasyOCR's own venv (no hwocr imports).

    python models/easyocr_pages.py BUNDLE_DIR NAME LIST_FILE [--quantize]

LIST_FILE holds one page image path a line; stdout gets one JSON line per page, in order: readtext's results with
its default settings, as [[[x, y] x 4 corners], text, confidence] with plain ints and floats.
"""

import json
import os
import sys


def _number(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def main() -> int:
    bundle, name, list_file = sys.argv[1:4]
    import easyocr

    reader = easyocr.Reader(["ko"], gpu=False, recog_network=name, quantize="--quantize" in sys.argv,
                            user_network_directory=bundle, model_storage_directory=bundle, download_enabled=False,
                            verbose=False)
    with open(list_file, encoding="utf-8") as f:
        paths = f.read().splitlines()
    for path in paths:
        # readtext(path) would fail deep inside OpenCV on a missing file; say which one.
        if not os.path.isfile(path):
            print(f"cannot read {path}", file=sys.stderr)
            return 2
        # A path, as users pass it: readtext loads the colour and the grayscale image itself.
        found = reader.readtext(path)
        out = [[[[_number(x), _number(y)] for x, y in box], text, float(conf)] for box, text, conf in found]
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
