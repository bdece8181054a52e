"""hwocr command line: `hwocr data`, `train`, `run`, `evaluate`, `export`, `serve`, `pack`, `scans`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

# Offline and quiet unless the user says otherwise; set before Prefect is imported.
for _k, _v in {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
    os.environ.setdefault(_k, _v)

from hwocr.errors import HwocrError, NoSpace  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line, like every other hwocr error; --help keeps the whole usage."""

    def error(self, message: str):
        self.exit(2, f"hwocr: error: {message} (see `{self.prog} --help`)\n")


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {low} or more, got {value}")
        return value

    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML preset: a file, or a name in configs/ (quick, smoke, seed, cpu-reference)")
    p.add_argument("--out", help="output folder or URL (overrides the config's out)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set render.count=2000 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--runner", choices=["local", "dask"], help="render shards locally or on Dask (sets runner)")
    p.add_argument("--dask-address", help="join this Dask scheduler, tcp://host:8786 (sets dask_address)")
    p.add_argument("--verbose", action="store_true",
                   help="Prefect's per-task lines on the console too (they always go to the log file)")


def _config_args(p: argparse.ArgumentParser, section: str) -> None:
    """--config, --set and --json for the commands that read one section of a preset."""
    p.add_argument("--config", help=f"YAML preset for the {section}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")


def check_prefect_api() -> None:
    """A set but unreachable PREFECT_API_URL fails here in seconds, with what to do, not deep inside Prefect."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return  # ephemeral: Prefect starts a temporary server
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        raise HwocrError(f"Prefect API at {url} is unreachable ({type(e).__name__}: {e}); start the server, fix "
                         "PREFECT_API_URL, or unset it to run on a temporary local server") from None


def check_checkpoint(url: str) -> None:
    """A local checkpoint exists and looks like one (torch.save writes a zip archive, older torch a pickle), or is
    the folder of an exported bundle; checked without torch, the load checks the rest."""
    import zipfile

    from hwocr import storage

    if not storage.is_local(url):
        return
    path = storage.local_path(url)
    if os.path.isdir(path):
        from models.easyocr_venv import bundle_name

        bundle_name(path)  # one NAME.yaml beside NAME.pth, else it says what a bundle holds
        return
    if not os.path.isfile(path):
        raise HwocrError(f"checkpoint {url}: no such file")
    with open(path, "rb") as f:
        pickled = f.read(1) == b"\x80"
    if not (pickled or zipfile.is_zipfile(path)):
        raise HwocrError(f"checkpoint {url}: not a PyTorch checkpoint (neither the zip archive torch.save writes "
                         "nor a pickle)")


def given_train_keys(config) -> set[str]:
    """The train.* settings the user's --config or --set gave: those a model's reading contract is checked against."""
    from flows.config import given_keys

    return given_keys(config.train, "train.")


def check_data(url: str, allow_outside: bool = False) -> None:
    """--data of evaluate: an LMDB folder or a folder with gt.txt, whose paths stay in it."""
    from hwocr import storage

    if storage.exists(storage.join(url, "data.mdb")):
        if storage.is_local(url):
            from models.lmdb_format import check_lmdb_file

            check_lmdb_file(storage.local_path(url))
        return
    gt = storage.join(url, "gt.txt")
    if not storage.exists(gt):
        raise HwocrError(f"--data {url}: " + ("no such folder" if not storage.exists(url) else
                                              "neither an LMDB (data.mdb) nor a folder with gt.txt"))
    from models.lmdb_format import read_gt

    for n, path, _ in read_gt(gt):
        storage.inside(url, path, f"{gt} line {n}", allow_outside)


def settings_source(args) -> str:
    """Where the settings came from, for a message: `--config quick`, `--set`, or both."""
    return " and ".join(filter(None, (args.config and f"--config {args.config}", args.overrides and "--set"))) or \
        "the settings"


def check_reading(model: str, config, args):
    """How the model is read (its reading contract), found without torch and checked against the settings given."""
    from models.reading import open_model

    return open_model(model, config.train, given_train_keys(config), settings_source(args))[1]


def check_not_replacing(args, what: str) -> None:
    """An explicit --out that already holds files is refused unless --overwrite says to replace them."""
    from hwocr import storage

    if not args.out or getattr(args, "overwrite", False):
        return
    out = storage.normalize(args.out)
    fs, path = storage.fs_and_path(out)
    if fs.isdir(path) and fs.ls(path, detail=False):
        raise HwocrError(f"--out {args.out} already holds files ({what}?): name another folder, or add --overwrite to "
                         "replace them")


def check_command(args, config) -> None:
    """The arguments of evaluate, export and pack, checked before torch loads."""
    from hwocr import storage

    if args.command == "evaluate":
        if args.decoder and args.engine != "easyocr":
            raise HwocrError(f"--decoder {args.decoder}: the decoders are EasyOCR's; add --engine easyocr")
        if args.words and args.decoder not in ("wordbeamsearch", "all"):
            raise HwocrError("--words: the list wordbeamsearch searches; add --decoder wordbeamsearch (or all)")
        if args.words and not storage.exists(storage.normalize(args.words)):
            raise HwocrError(f"--words {args.words}: no such file")
        check_data(storage.normalize(args.data), args.allow_outside)
        model = storage.normalize(args.model)
        if args.engine == "easyocr" and storage.is_local(model) and not os.path.isdir(storage.local_path(model)):
            raise HwocrError(f"--model {args.model}: with --engine easyocr, the folder of an exported bundle "
                             "(NAME.pth, NAME.yaml, NAME.py; `hwocr export` writes one)")
        check_checkpoint(model)
        check_reading(model, config, args)
        check_not_replacing(args, "an evaluation")
    elif args.command == "export":
        export_settings(args, config)
        if config.train.model.prediction != "CTC":
            from models.train_settings import ATTN_REFUSED

            raise HwocrError(ATTN_REFUSED)
        check_checkpoint(storage.normalize(args.model))
        storage.not_a_file(storage.normalize(args.out))
        check_not_replacing(args, "a bundle")
        if check_reading(storage.normalize(args.model), config, args).network.prediction != "CTC":
            from models.train_settings import ATTN_REFUSED

            raise HwocrError(ATTN_REFUSED)
    elif args.command == "prelabel":
        from models.prelabeling import check_out, image_size, list_images

        detector_settings(args.detector)
        images = storage.normalize(args.images)
        names = list_images(images)
        if storage.is_local(images):  # headers only: a page that is no image, or too large, fails now
            for name in names:
                image_size(storage.join(images, name), storage.join(images, name))
        model = storage.normalize(args.model)
        if storage.is_local(model) and os.path.isdir(storage.local_path(model)):
            from models.prelabeling import check_charset
            from models.reading import bundle_reading

            check_charset(images, bundle_reading(storage.local_path(model))[1].charset, args.model)
        else:
            check_checkpoint(model)
        check_out(storage.normalize(args.out))
    elif args.command == "serve" and args.cron:
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=args.cron)
        except ValidationError as e:
            raise HwocrError(f"--cron {args.cron!r}: {e.errors()[0]['msg'].removeprefix('Value error, ')} "
                             "(five fields: minute hour day month weekday, e.g. '0 3 * * 1')") from None
    elif args.command == "scans":
        storage.not_a_file(storage.normalize(args.out))
        if os.path.isdir(args.out) and os.listdir(args.out):
            raise HwocrError(f"--out {args.out} already holds files: stand-ins go into a new (or empty) folder")
        if args.words and not storage.exists(storage.normalize(args.words)):
            raise HwocrError(f"word list {args.words} does not exist")
    elif args.command == "pack":
        gt, images = storage.normalize(args.gt), storage.normalize(args.images)
        if not storage.exists(gt):
            raise HwocrError(f"gt file {gt} does not exist")
        if storage.is_local(images) and not os.path.isdir(storage.local_path(images)):
            raise HwocrError(f"--images {args.images}: no such folder (the folder gt.txt's paths are relative to)")
        from models.lmdb_format import read_gt

        for n, path, _ in read_gt(gt):
            storage.inside(images, path, f"{gt} line {n}", args.allow_outside)
        storage.not_a_file(storage.normalize(args.out))
        check_not_replacing(args, "an LMDB")


def check_real_sources(config) -> None:
    """Each real source's label file read and its labels checked (not its images, which packing decodes): a
    malformed row, a path out of its folder or too many labels outside the character set fail here."""
    from models.charset import load_charset
    from models.sources import check_labels, read_source

    for s in config.real.sources:
        check_labels(read_source(s), load_charset(config.train.charset), config.train.batch_max_length,
                     config.real.max_dropped)


def check_inputs(command: str, config) -> dict | None:
    """What the config names is checked here, before Prefect starts, so that bad input fails in a second or two;
    the stages check it again for runs started from a deployment or the UI. Returns the render plan's estimate
    for data and run."""
    from hwocr import storage
    from hwocr.errors import machine_memory
    from hwocr.layout import Layout
    from models.charset import load_charset

    cores = os.cpu_count() or 1
    if command in ("train", "run", "serve"):
        config.train.check_machine(cores, machine_memory())
    if command in ("data", "run", "serve"):
        config.render.check_machine(cores)
    if command in ("train", "run"):
        from models.pretrained import check_fits, check_pretrained

        for name in filter(None, (config.train.charset, config.train.source_charset)):
            load_charset(name)
        check_fits(config.train.pretrained, config.train.model)
        check_pretrained(config.train.pretrained)
        check_real_sources(config)
    if command == "train":
        layout = Layout.at(config.out)
        for split in ("train", "val"):
            if not storage.exists(storage.join(layout.lmdb(split), "data.mdb")):
                raise HwocrError(f"{layout.lmdb(split)} holds no LMDB: run `hwocr data` with the same --out and "
                                 "--config first, or `hwocr run` for both")
            if storage.is_local(layout.lmdb(split)):
                from models.lmdb_format import check_lmdb_file

                check_lmdb_file(storage.local_path(layout.lmdb(split)))
    if command in ("data", "run"):
        from synth.inputs import check_inputs as check_words_and_fonts
        from synth.inputs import check_space

        storage.not_a_file(config.out)
        storage.check_creatable(config.out)
        check_words_and_fonts(config.render, load_charset(config.render.charset))
        if command == "run" and config.real.sources:
            from synth.inputs import font_sources
            from synth.scans import check_scan_leak

            check_scan_leak(font_sources(config.render)[0], [s.location() for s in config.real.sources])
        return check_space(config.render, config.out, config.render.workers or os.cpu_count() or 1)
    return None


def log_to_file(command: str, out: str, verbose: bool) -> logging.FileHandler:
    """Everything logged at INFO and up (Prefect's task and flow lines, warnings from the libraries) goes to a file
    under <out>/logs (./hwocr-out/logs for a remote out); the console keeps hwocr's progress and warnings."""
    import importlib
    import time

    from prefect.logging.formatters import PrefectFormatter

    importlib.import_module("prefect.main")  # Prefect configures logging when imported: the handler goes on after

    from hwocr import storage

    folder = os.path.join(storage.local_path(out) if storage.is_local(out) else "hwocr-out", "logs")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    # A log on a disk that fills must not spray "--- Logging error ---" stacks: the run's end says the cause.
    logging.raiseExceptions = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    head = "%(asctime)s | %(levelname)-7s |"
    handler.setFormatter(PrefectFormatter(f"{head} %(name)s - %(message)s",
                                          task_run_fmt=f"{head} Task run %(task_run_name)r - %(message)s",
                                          flow_run_fmt=f"{head} Flow run %(flow_run_name)r - %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    warnings = logging.getLogger("py.warnings")
    warnings.addHandler(handler)
    warnings.propagate = verbose  # MLflow's and Prefect's Python warnings: the file only, unless verbose
    return handler


def _images_bar(doing: str, total: int = 0):
    """(rich's progress bar of images, the function that advances it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(doing), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                        TimeRemainingColumn(), transient=False)
    bar = progress.add_task(doing, total=total)
    return progress, lambda n: progress.advance(bar, n)


def _progress_bar():
    from synth.pool import POOL

    progress, POOL.on_advance = _images_bar("rendering")
    POOL.on_total = lambda n: progress.update(progress.task_ids[0], total=(progress.tasks[0].total or 0) + n)
    return progress


def _print(lines: list[str]) -> None:
    from rich.console import Console

    con = Console(highlight=False)
    for line in lines:
        con.print(line, soft_wrap=True, markup=False)


def cmd_data(args, config) -> dict:
    from flows.dataset import dataset_flow_for
    from synth.pool import POOL, resolve_workers

    if config.runner == "local":
        POOL.warm(resolve_workers(config.render))  # worker start-up overlaps Prefect's
    flow = dataset_flow_for(config)
    if args.json:
        return flow(config=config)
    with _progress_bar():
        summary = flow(config=config)
    from flows.summary import DatasetSummary

    _print(DatasetSummary.model_validate(summary).lines())
    return summary


def cmd_train(args, config) -> dict:
    from flows.finetune import finetune_flow

    result = finetune_flow(config=config)
    if not args.json:
        from flows.summary import TrainingSummary

        t = TrainingSummary.model_validate(result)
        _print([*t.lines(), t.mlflow_line()])
    return result


def cmd_run(args, config) -> dict:
    from flows.finetune import pipeline_flow

    result = pipeline_flow(config=config)
    if not args.json:
        from flows.summary import PipelineSummary

        _print(PipelineSummary.model_validate(result).lines())
    return result


def cmd_evaluate(args, config) -> dict:
    from hwocr import hashing, storage
    from models.evaluation import DECODERS, evaluate_checkpoint
    from models.metrics import Scores

    # One folder per model, data and engine: a second evaluation never replaces the first one's predictions.
    out = storage.normalize(args.out or os.path.join(
        "hwocr-out", "evaluation", hashing.digest([storage.normalize(args.model), storage.normalize(args.data),
                                                   args.engine])[:12]))
    decoders = DECODERS if args.decoder == "all" else (args.decoder,) if args.decoder else ()
    report = evaluate_checkpoint(storage.normalize(args.model), args.data, out, config.train, given_train_keys(config),
                                 engine=args.engine, page_words=args.pages, allow_outside=args.allow_outside,
                                 decoders=decoders, words=args.words and storage.normalize(args.words))
    if not args.json:
        print(f"read as {report['reading']}")
        print(f"{report['samples']} samples: {Scores.model_validate(report).text()}")
        for title, table in (("by font", report["by_font"]), ("by label length", report["by_length"])):
            for key, row in sorted((table or {}).items(), key=lambda kv: str(kv[0])):
                scores = Scores.model_validate(row)
                print(f"  {title} {key}: {scores.samples} samples, {scores.text('accuracy', 'cer')}")
        if "easyocr" in report:
            e = report["easyocr"]
            int8 = Scores(samples=report["samples"], **e["int8"])
            print(f"EasyOCR int8 (quantize=True, its CPU default): {int8.text('accuracy', 'cer')}; "
                  f"{e['int8_agreement']:.1f}% of readings equal the float model's")
            if e["batch"]:
                from flows.summary import batch_line

                print(batch_line(e["batch"]))
            for name, d in (e.get("decoders") or {}).items():
                took = f", {d['seconds_per_image'] * 1000:.1f} ms an image" if d["seconds_per_image"] else ""
                scores = Scores(**{k: d[k] for k in ("samples", *Scores.names())})
                print(f"decoder {name}: {scores.text('accuracy', 'cer')}{took}")
            if w := e.get("decoder_words"):
                print(f"wordbeamsearch searched {w['kept']} words of {w['url']}" + (
                    f"; {w['dropped']} dropped (characters the model cannot write; first {w['first_dropped']})"
                    if w["dropped"] else ""))
            if e["pages"]:
                g = e["pages"]
                print(f"pages (readtext, detector + this model, {g['words']} words): word accuracy "
                      f"{g['word_accuracy']:.2f}%, detection recall {g['detection_recall']:.2f}%, "
                      f"line CER {g['cer']:.4f}")
        from models.jamo import lines

        for line in lines(report):
            print(line)
        print(f"predictions: {report['predictions']}\nworst failures: {report['worst_failures']}")
        if report["confusions_picture"]:
            print(f"jamo confusions: {report['confusions_picture']}")
        from models.calibration import lines as calibration_lines

        for line in calibration_lines(report["calibration"]):
            print(line)
        if report["calibration_picture"]:
            print(f"calibration: {report['calibration_picture']}")
    return {k: report[k] for k in (*Scores.model_fields, "predictions")} | (
        {"easyocr": report["easyocr"]} if "easyocr" in report else {})


def export_settings(args, config):
    """The export's settings from --name and the config; a bad name is one line, not pydantic's report."""
    from pydantic import ValidationError

    from models.bundle import ExportSettings

    try:
        return ExportSettings(name=args.name, lang_list=config.export.lang_list)
    except ValidationError as e:
        raise HwocrError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None


def cmd_export(args, config) -> dict:
    from hwocr import storage

    settings = export_settings(args, config)
    from models.bundle import export_easyocr_fn

    out = storage.normalize(args.out)
    result = export_easyocr_fn(storage.normalize(args.model), out, settings, config.train, given_train_keys(config))
    if not args.json:
        print(f"wrote {result['pth']}, {result['yaml']}, {result['py']}\n"
              f"load it: easyocr.Reader(['ko'], recog_network='{settings.name}', user_network_directory='{out}', "
              f"model_storage_directory='{out}')")
    return result


def cmd_serve(args, config) -> dict:
    from flows.config import PRESETS
    from flows.dataset import dataset_flow
    from flows.finetune import finetune_flow, pipeline_flow
    from flows.prelabel import prelabel_flow

    # Each form leads with a preset and the knobs people change; a preset name stays a preset there, a file is
    # sent whole as the config.
    form = ({"preset": args.config or "quick", "out": args.out, "settings": list(args.overrides)}
            if (args.config or "quick") in PRESETS else {"config": config.model_dump(mode="json")})
    form = {k: v for k, v in form.items() if v is not None}
    cron = {"cron": args.cron} if args.cron else {}

    deployments = [
        pipeline_flow.to_deployment("pipeline", parameters=form, description="The whole pipeline", **cron),
        dataset_flow.to_deployment("dataset", parameters=form, description="Data only: render, gt.txt, LMDB"),
        finetune_flow.to_deployment("finetune", parameters=form, description="Fine-tune, evaluate, track"),
        # Its own form: the scans, the model and the review folder (no preset).
        prelabel_flow.to_deployment("prelabel", description="Read scans with a model into a folder to review"),
    ]
    print("serving hwocr-pipeline/pipeline, hwocr-dataset/dataset, hwocr-finetune/finetune, hwocr-prelabel/prelabel; "
          "Ctrl-C stops", flush=True)
    from flows import signals

    signals.serve(deployments, args.limit)
    return {}


STANDIN_FAMILIES = ["un-vada", "hi-melody", "black-and-white-picture"]  # held out by cpu-reference, not default fonts


def cmd_scans(args, config) -> dict:
    import importlib.resources

    from synth.scans import families_fonts, make_scans

    fonts = list(args.fonts) or families_fonts(args.families.split(",") if args.families else STANDIN_FAMILIES)
    if args.words:
        from hwocr import storage

        text = storage.decode_text(storage.read_bytes(storage.normalize(args.words)), f"word list {args.words}")
    else:
        text = importlib.resources.files("synth").joinpath("data", "words_ko_freq.txt").read_text(encoding="utf-8")
    words = [w.strip() for w in text.splitlines() if w.strip()]
    result = make_scans(args.out, fonts, words, pages=args.pages, seed=args.seed)
    if not args.json:
        print(f"wrote {result['pages']} stand-in pages ({result['words']} words, {result['fonts']} fonts) under "
              f"{result['dir']}: pages/Label.txt, easyocr/labels.csv, labelstudio.json\n"
              f"use them: --set \"real.sources=[{{name: standin, url: {result['dir']}/pages, ratio: 0.3}}]\"")
    return result


def cmd_prelabel(args, config) -> dict:
    from flows import prelabel
    from hwocr import storage
    from models.prelabeling import list_images

    def run():
        return prelabel.prelabel_flow(images=args.images, model=args.model, out=args.out, kind=args.kind,
                                      shard_size=args.shard_size, detector=detector_settings(args.detector))

    if args.json:
        return run()
    progress, prelabel.on_shard = _images_bar("reading", len(list_images(storage.normalize(args.images))))
    with progress:
        result = run()
    hist = " ".join(f"{k}:{n}" for k, n in result["confidence_histogram"].items())
    mean = f"{result['mean_confidence']:.3f}" if result["mean_confidence"] is not None else "-"
    print(f"prelabelled {result['images']} images ({result['pages']} pages, {result['crops']} crops): "
          f"{result['words']} words, mean confidence {mean}\nconfidence histogram {hist}\n"
          f"labels: {result['label_file']} (status: predicted; a pages source as it is)")
    if t := result["truth"]:
        print(f"against the scans' own Label.txt ({t['words']} words): detection recall "
              f"{t['detection_recall']:.2f}%, words read {t['word_accuracy']:.2f}%, CER {t['cer']:.4f}")
    print(f"review them: hwocr review {args.out}")
    return result


def cmd_review(args, config) -> None:
    from flows.review_page import serve

    serve(args.dir, args.host, args.port, args.charset)


def detector_settings(pairs: list[str]):
    """--detector KEY=VALUE pairs as DetectorSettings; an error naming the key or value."""
    from pydantic import ValidationError

    from models.prelabeling import DetectorSettings

    given = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in DetectorSettings.model_fields:
            raise HwocrError(f"--detector {pair}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(DetectorSettings.model_fields)}")
        given[key] = value
    try:
        return DetectorSettings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        raise HwocrError(f"--detector {err['loc'][0]}={given[err['loc'][0]]}: {err['msg']}") from None


def cmd_pack(args, config) -> dict:
    from hwocr import storage
    from models.lmdb_format import pack

    images = storage.normalize(args.images)
    out = storage.normalize(args.out)
    gt = storage.normalize(args.gt)
    # Your own files may have changed behind the same names: an explicit pack always packs.
    result = pack(gt, images, out, config.pack, args.allow_outside)
    del result["kept"]
    if not args.json:
        print(f"packed {result['samples']} samples into {out}"
              + (f" ({result['skipped']} skipped)" if result["skipped"] else ""))
    return result


def plan_need(args, config) -> int | None:
    """Bytes the render plan still needs under a local --out, for a full disk's message; None when not rendering."""
    from hwocr import storage

    if config is None or args.command not in ("data", "run") or not storage.is_local(config.out):
        return None
    plan = config.render.estimate(config.render.workers or os.cpu_count() or 1)
    return max(0, plan["bytes"] - storage.used_bytes(config.out)) or None


def storage_no_space(e: BaseException, args, config):
    """A full disk met outside a stage, with what the plan needs when it renders."""
    from hwocr import storage

    return storage.no_space(e, plan_need(args, config))


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="hwocr", description="Synthetic Korean handwriting for EasyOCR.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("data", help="render, assemble gt.txt and pack LMDB for train and val")
    _common(p)
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("train", help="fine-tune on the LMDBs under --out (after `hwocr data`), tracked in MLflow")
    _common(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("run", help="the whole pipeline: data, then train")
    _common(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("evaluate", help="score a checkpoint on an LMDB or a folder with gt.txt")
    p.add_argument("--model", required=True,
                   help="checkpoint (.pth state_dict, with or without module.); with --engine easyocr, a bundle folder")
    p.add_argument("--data", required=True, help="LMDB folder, or a folder with gt.txt and its images")
    p.add_argument("--engine", choices=["hwocr", "easyocr"], default="hwocr",
                   help="hwocr: our inference; easyocr: the real easyocr package reading an exported bundle")
    p.add_argument("--pages", type=_at_least(0), default=200, metavar="N",
                   help="easyocr engine: read the first N words with recognize(batch_size=8) and, composed into pages, "
                   "with readtext (0: skip both)")
    p.add_argument("--decoder", choices=["greedy", "beamsearch", "wordbeamsearch", "all"],
                   help="easyocr engine: read again with this decoder of recognize() (all: the three), scored side by "
                   "side with the time each takes")
    p.add_argument("--words", metavar="FILE", help="the word list wordbeamsearch searches, one a line (default: "
                   "EasyOCR's own Korean dictionary)")
    p.add_argument("--out", help="where predictions.tsv and the report go (default: a folder under "
                   "hwocr-out/evaluation/ named from the model, the data and the engine, replaced by a re-run)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    p.add_argument("--allow-outside", action="store_true",
                   help="let gt.txt name images outside its folder (absolute paths, ..); refused otherwise")
    _config_args(p, "train section (image size, preprocessing, charset)")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("export", help="write a checkpoint as an EasyOCR custom network (NAME.pth/.yaml/.py)")
    p.add_argument("--model", required=True, help="checkpoint (.pth state_dict, with or without module.)")
    p.add_argument("--out", required=True, help="folder or URL for the bundle")
    p.add_argument("--name", default="hwocr_korean", help="network name: easyocr.Reader(recog_network=NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    _config_args(p, "train section (charset, img_h)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("serve", help="serve the pipeline, dataset and finetune deployments from this process")
    _common(p)
    p.add_argument("--cron", help="schedule for the pipeline deployment, e.g. '0 3 * * 1'")
    p.add_argument("--limit", type=_at_least(1), default=1,
                   help="flow runs at once (default 1: training takes every core)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("scans", help="draw stand-in scans (fonts made to look photographed) with their labels in "
                       "PPOCRLabel, EasyOCR and Label Studio formats")
    p.add_argument("--out", required=True, help="folder to create (it must not hold files)")
    p.add_argument("--pages", type=_at_least(1), default=20, help="pages to draw (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of words, layout and photographic look")
    p.add_argument("--fonts", nargs="*", default=[], metavar="FONT",
                   help="font files to write with (default: the catalogue families of --families)")
    p.add_argument("--families", help=f"catalogue family_groups to write with, comma-separated (default: "
                   f"{','.join(STANDIN_FAMILIES)})")
    p.add_argument("--words", help="word list, one a line (default: the bundled frequency list)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.set_defaults(func=cmd_scans, overrides=[], config=None)
    p = sub.add_parser("prelabel", help="read a folder of scans with a model as EasyOCR reads it, into a folder of "
                       "labels to review (PPOCRLabel's Label.txt)")
    p.add_argument("--images", required=True, help="folder (or URL) of page images, or of word crops")
    p.add_argument("--model", required=True, help="an exported bundle folder, or a checkpoint")
    p.add_argument("--out", required=True, help="review folder to write: Label.txt, crops/, prelabel.json, the images")
    p.add_argument("--kind", choices=["auto", "pages", "crops"], default="auto",
                   help="pages: find the words with EasyOCR's detector; crops: one word an image; auto (default): "
                   "an image at most 3 model input heights tall is a crop")
    p.add_argument("--shard-size", type=_at_least(1), default=25, help="images a shard (cached and retried alone)")
    p.add_argument("--detector", action="append", default=[], metavar="KEY=VALUE",
                   help="readtext's box settings (text_threshold=0.7, low_text=0.4, link_threshold=0.4, "
                   "canvas_size=2560, mag_ratio=1.0, width_ths=0.5, ...: EasyOCR's defaults)")
    p.add_argument("--verbose", action="store_true", help="show Prefect's lines on the console too")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.set_defaults(func=cmd_prelabel, overrides=[], config=None)
    p = sub.add_parser("review", help="review a prelabelled folder in the browser: lowest confidence first, Enter "
                       "accepts, typing corrects, Shift+Enter marks a word unreadable; every change saved at once")
    p.add_argument("dir", help="the folder hwocr prelabel wrote (its Label.txt)")
    p.add_argument("--port", type=int, default=8765, help="port to serve on (default 8765; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--charset", default="korean_g2",
                   help="characters a label may hold when the folder's prelabel.json does not name the model's "
                   "(a charset name or file; default korean_g2)")
    p.set_defaults(func=cmd_review, overrides=[], config=None, json=False)
    p = sub.add_parser("pack", help="pack your own image folder + gt.txt into a benchmark LMDB")
    p.add_argument("--gt", required=True, help="gt.txt: 'relative/path<TAB>label' a line")
    p.add_argument("--images", required=True, help="folder the gt.txt paths are relative to")
    p.add_argument("--out", required=True, help="LMDB folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    p.add_argument("--allow-outside", action="store_true",
                   help="let gt.txt name images outside the --images folder (absolute paths, ..); refused otherwise")
    _config_args(p, "pack section")
    p.set_defaults(func=cmd_pack)
    args = parser.parse_args(argv)
    for name, value in vars(args).items():  # an empty --out would be the current folder, an empty --config none
        if isinstance(value, str) and not value.strip() and name != "command":
            parser.error(f"argument --{name.replace('_', '-')}: is empty")
    from flows import signals

    log = config = None
    stack = contextlib.ExitStack()  # the temporary Prefect server, when the run needs one
    handlers = signals.install()  # Ctrl-C and SIGTERM: one orderly stop (flows/signals.py)
    try:
        if getattr(args, "runner", None):
            args.overrides.append(f"runner={args.runner}")
        if getattr(args, "dask_address", None):
            args.overrides.append(f"dask_address={args.dask_address}")
        from flows.config import load_config

        # Settings are checked first, in about a second: nothing heavy (Prefect, torch, MLflow) is imported yet.
        flow = args.command in ("data", "train", "run", "serve", "prelabel")
        config = load_config(args.config, args.overrides, args.out if flow else None)
        from hwocr import remote

        remote.configure(config.remote)  # before any filesystem is made, here or in a child process
        named = config.model_dump_json() + json.dumps(vars(args), default=str)
        with remote.checking(named):  # each remote call once: a check fails within one timeout
            plan = check_inputs(args.command, config)
            check_command(args, config)
        if plan and not args.json:
            from synth.inputs import describe_plan

            print(describe_plan(plan), flush=True)
        if flow:
            # A run's console shows hwocr's lines (serve, a server's, keeps Prefect's); read when Prefect
            # configures its logging, on import.
            quiet = args.command != "serve" and not args.verbose
            if quiet:  # MLflow's INFO lines (creating its database, an experiment) are not the run's news
                os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
                os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
            check_prefect_api()
            if args.command in ("data", "run"):
                from hwocr import storage

                with remote.checking(config.out):
                    storage.ensure_writable(config.out)  # it creates the folder: only once nothing else is wrong
            if args.command != "serve":
                log = log_to_file(args.command, config.out, verbose=not quiet)
            from flows import server

            stack.enter_context(server.temporary(log and log.baseFilename, scheduler=args.command == "serve"))
            signals.quiet_console()
        result = args.func(args, config)
        if signals.received():  # `serve` returns normally after Ctrl-C
            return signals.stopped(signals.received(), args.command, config)
    except HwocrError as e:
        from hwocr.storage import no_space_error

        if signals.received():  # what failed was the stop
            return signals.stopped(signals.received(), args.command, config)
        if isinstance(e, NoSpace) and (need := plan_need(args, config)):  # a stage's: the plan is known here
            e = no_space_error(e.path, need)
        print(f"hwocr: error: {e}", file=sys.stderr)
        if log:
            print(f"hwocr: log: {log.baseFilename}", file=sys.stderr)
        return 2
    except BaseException as e:
        signum = signals.received() or signals.signal_of(e)
        if signum is None:
            from hwocr import remote

            said = (remote.problem(e) or storage_no_space(e, args, config)) if isinstance(e, Exception) else None
            if said is None:
                raise
            print(f"hwocr: error: {said}", file=sys.stderr)  # a remote failure a stage did not word
            if log:
                print(f"hwocr: log: {log.baseFilename}", file=sys.stderr)
            return 2
        return signals.stopped(signum, args.command, config)
    finally:
        with signals.ignored():  # the stop's own end (the server's) is not cut short by another Ctrl-C
            stack.close()
        if log:
            logging.getLogger().removeHandler(log)
            logging.getLogger("py.warnings").removeHandler(log)
            with contextlib.suppress(OSError):  # its disk may be the full one
                log.close()
        signals.restore(handlers)
    if log:
        print(f"log: {log.baseFilename}", flush=True)
    if args.json:
        sys.stdout.flush()
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
