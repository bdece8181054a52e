"""bench/crop_geometry.py's re-crop: the ink's box plus a margin, padded with the paper's tone."""

import numpy as np
from PIL import Image

from bench.crop_geometry import recrop


def test_recrop_cuts_to_the_ink_and_pads_with_the_paper_tone():
    a = np.full((80, 120), 230, np.uint8)  # grey paper
    a[20:60, 30:90] = 10  # ink: 40 high, 60 wide
    tight = recrop(Image.fromarray(a), 0)
    assert tight.size == (60, 40) and np.asarray(tight).max() == 10
    wide = np.asarray(recrop(Image.fromarray(a), 0.75))  # 30 px a side: past the image's top edge (20 px)
    assert wide.shape == (40 + 60, 60 + 60)
    assert (wide[:30] == 230).all() and (wide[30:70, 30:90] == 10).all() and (wide[70:] == 230).all()


def test_recrop_leaves_a_blank_image_whole():
    blank = Image.new("L", (50, 20), 255)
    assert recrop(blank, 0).size == (50, 20)
