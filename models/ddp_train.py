"""One rank of a data-parallel fine-tune; torchrun starts one per process:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m models.ddp_train \\
        --settings train.json --train LMDB [LMDB ...] --val LMDB --out DIR --result result.json

`hwocr train` does this itself when train.processes > 1 (launch). Rank 0 writes the result JSON (the trainer's summary
without the validation predictions) under a temp name, then renames it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import deque

from hwocr import interrupt
from hwocr.errors import HwocrError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", required=True, help="JSON file of TrainSettings")
    p.add_argument("--train", nargs="+", required=True, help="training LMDB folders")
    p.add_argument("--val", required=True, help="validation LMDB folder")
    p.add_argument("--out", required=True, help="run folder (checkpoints, last.pth)")
    p.add_argument("--result", required=True, help="where rank 0 writes the summary JSON")
    args = p.parse_args(argv)

    from hwocr import storage
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


def launch(settings, train_dirs: list[str], val_dir: str, run_dir: str, log) -> dict:
    """Train in settings.processes data-parallel ranks of this module under torchrun; rank 0's lines go to log
    (a function of one line). Returns the trainer's summary."""
    settings_file, result_file = os.path.join(run_dir, "train.json"), os.path.join(run_dir, "ddp-result.json")
    with open(settings_file, "w", encoding="utf-8") as f:
        f.write(settings.model_dump_json())
    if os.path.exists(result_file):
        os.remove(result_file)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={settings.processes}",
           "-m", __name__, "--settings", settings_file, "--train", *train_dirs, "--val", val_dir,
           "--out", run_dir, "--result", result_file]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    tail: deque[str] = deque(maxlen=30)
    # A process group of its own: a terminal's Ctrl-C (sent to the CLI's group) does not reach torchrun, so it is
    # stopped once, by us, below; a second signal during its shutdown would abandon the ranks.
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, process_group=0)
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            log(line.rstrip())
        proc.wait()
    except BaseException:
        # SIGTERM: torchrun passes it to its ranks and waits for them; what is left after a few seconds is killed.
        interrupt.end_process(proc, grace=3)
        raise
    finally:
        proc.stdout.close()
    if proc.returncode != 0 or not os.path.exists(result_file):
        errors = [t for t in tail if t.startswith("error: ")]
        raise HwocrError(errors[-1][len("error: "):] if errors else
                         f"data-parallel training (torchrun, {settings.processes} processes) failed with exit code "
                         f"{proc.returncode}:\n" + "\n".join(tail))
    with open(result_file, encoding="utf-8") as f:
        return json.load(f)


def fit(settings, train_dirs: list[str], val_dir: str, out_dir: str, log, on_eval) -> tuple[dict, object]:
    """Train in this process, or in settings.processes ranks under torchrun (their curves reach on_eval at the end);
    returns the trainer's summary and the network with its best-accuracy weights."""
    import torch

    from models.pretrained import build_for
    from models.trainer import train
    from synth import effects

    if settings.processes > 1:
        result = launch(settings, train_dirs, val_dir, out_dir, log)
        for entry in result["history"]:
            on_eval(entry["iteration"], entry)
    else:
        result = train(settings, train_dirs, val_dir, out_dir, log=log, on_eval=on_eval,
                       augment=effects.augmenter(settings.augment))
    model = build_for(settings)
    best = os.path.join(out_dir, "best_accuracy.pth")
    if os.path.exists(best):
        state = torch.load(best, weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return result, model


if __name__ == "__main__":
    sys.exit(main())
