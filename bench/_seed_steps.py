"""The seed's second and third manual steps, as its users ran them (the anchor of bench/build.py).

gt:   turn trdg's output folder ('<label>_<index>.jpg' files) into gt.txt lines 'name<TAB>label'.
pack: deep-text-recognition-benchmark's create_lmdb_dataset.createDataset: 1 TiB map, every image checked
      with cv2.imdecode, a write transaction every 1,000 samples.
"""

import os
import sys

import cv2
import lmdb
import numpy as np


def gt(image_dir: str, gt_file: str) -> None:
    with open(gt_file, "w", encoding="utf-8") as f:
        for name in sorted(os.listdir(image_dir)):
            if name.endswith((".jpg", ".png")):
                label = os.path.splitext(name)[0].rsplit("_", 1)[0]
                f.write(f"{name}\t{label}\n")


def check_image_is_valid(image_bin: bytes) -> bool:
    img = cv2.imdecode(np.frombuffer(image_bin, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return img is not None and img.shape[0] * img.shape[1] > 0


def write_cache(env, cache) -> None:
    with env.begin(write=True) as txn:
        for k, v in cache.items():
            txn.put(k, v)


def pack(input_path: str, gt_file: str, output_path: str) -> None:
    os.makedirs(output_path, exist_ok=True)
    env = lmdb.open(output_path, map_size=1099511627776)
    cache = {}
    cnt = 1
    with open(gt_file, encoding="utf-8") as data:
        datalist = data.readlines()
    for line in datalist:
        image_path, label = line.strip("\n").split("\t")
        image_path = os.path.join(input_path, image_path)
        if not os.path.exists(image_path):
            continue
        with open(image_path, "rb") as f:
            image_bin = f.read()
        if not check_image_is_valid(image_bin):
            continue
        cache[b"image-%09d" % cnt] = image_bin
        cache[b"label-%09d" % cnt] = label.encode()
        if cnt % 1000 == 0:
            write_cache(env, cache)
            cache = {}
        cnt += 1
    cache[b"num-samples"] = str(cnt - 1).encode()
    write_cache(env, cache)


if __name__ == "__main__":
    {"gt": gt, "pack": pack}[sys.argv[1]](*sys.argv[2:])
