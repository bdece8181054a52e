"""The tiny word set the model tests share: four words in one print face, which 240 iterations learn exactly."""

from PIL import Image, ImageDraw, ImageFont

from models.lmdb_format import PackSettings, pack
from models.train_settings import TrainSettings

WORDS = ["한글", "사랑", "Hello", "2024"]


def make_tiny_lmdb(d) -> str:
    font = ImageFont.truetype("/usr/share/fonts/truetype/nanum/NanumGothic.ttf", 26)
    (d / "img").mkdir()
    lines = []
    for i, w in enumerate(WORDS):
        im = Image.new("L", (font.getbbox(w)[2] + 8, 32), 255)
        ImageDraw.Draw(im).text((4, 2), w, font=font, fill=0)
        im.save(d / "img" / f"{i}.png")
        lines.append(f"img/{i}.png\t{w}\n")
    (d / "gt.txt").write_text("".join(lines), encoding="utf-8")
    pack(str(d / "gt.txt"), str(d), str(d / "lmdb"), PackSettings())
    return str(d / "lmdb")


def settings(**over) -> TrainSettings:
    # fp32: precision auto is bf16 on CPUs with AVX512-BF16 or AMX, and the figures compared must not hang on the CPU
    base = dict(pretrained="none", img_h=32, img_w=100, batch_size=2, optimizer="adam", lr=1e-3, threads=1,
                channels_last=False, precision="fp32")
    return TrainSettings(**{**base, **over})
