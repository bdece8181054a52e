"""One rank of a data-parallel fine-tune; torchrun starts one per process:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m models.ddp_train \\
        --settings train.json --train LMDB [LMDB ...] --val LMDB --out DIR --result result.json

`hwocr train` does this itself when train.processes > 1. Rank 0 writes the result JSON (the trainer's summary
without the validation predictions) under a temp name, then renames it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", required=True, help="JSON file of TrainSettings")
    p.add_argument("--train", nargs="+", required=True, help="training LMDB folders")
    p.add_argument("--val", required=True, help="validation LMDB folder")
    p.add_argument("--out", required=True, help="run folder (checkpoints, last.pth)")
    p.add_argument("--result", required=True, help="where rank 0 writes the summary JSON")
    args = p.parse_args(argv)

    from hwocr import storage
    from hwocr.errors import HwocrError
    from models.train_settings import TrainSettings
    from models.trainer import train
    from synth.effects import augmenter

    with open(args.settings, encoding="utf-8") as f:
        settings = TrainSettings.model_validate_json(f.read())
    rank = int(os.environ.get("RANK", "0"))

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        result = train(settings, args.train, args.val, args.out, log=log, augment=augmenter(settings.augment))
    except HwocrError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if rank == 0:
        storage.write_text(args.result, json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
