"""trdg's own CLI, with the one-line Pillow >= 10 fix it needs to run at all (trdg #343)."""

import sys

from PIL import ImageFont


def _getsize(self, text, *args, **kwargs):
    left, top, right, bottom = self.getbbox(text, *args, **kwargs)
    return right, bottom


ImageFont.FreeTypeFont.getsize = _getsize

if __name__ == "__main__":
    from trdg.run import main

    sys.argv[0] = "trdg"
    main()
