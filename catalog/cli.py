"""The ``catalog`` command line: a thin layer over the Python API.

Exit codes: 0 ok, 1 a bad value or a failure (one sentence on stderr, no traceback), 2 bad usage
(an unknown option, a malformed number).
"""

from __future__ import annotations

import argparse
import os
import sys


def _quiet_tensorflow():
    """Import TensorFlow with stderr closed: its C++ start-up chatter is not for a CLI user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cards(pattern="*", task=None):
    """Shipped cards matching ``pattern`` and ``task`` (no Keras import); None if none are shipped."""
    import fnmatch

    from catalog.registry import TASKS, shipped_cards

    if task is not None and task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}; got {task!r}.")
    cards = shipped_cards()
    if not cards:
        return None
    return [cards[n] for n in sorted(cards) if fnmatch.fnmatch(n, pattern) and (task is None or cards[n]["task"] == task)]


def _number(value, unit=1e6, suffix="M"):
    return f"{value / unit:,.1f}{suffix}" if value is not None else "-"


def cmd_list(args):
    cards = _cards(args.pattern, args.task)
    if cards is None:  # no shipped cards: ask the registry (imports the families)
        _quiet_tensorflow()
        from catalog.registry import get_entry, list_models, model_info

        cards = [model_info(n).to_dict() if args.verbose else get_entry(n).__dict__
                 for n in list_models(args.pattern, task=args.task)]
    if not cards:
        raise ValueError(f"No registered model matches {args.pattern!r}"
                         + (f" with task {args.task!r}." if args.task else "."))
    if args.verbose:
        print(f"{'name':28s} {'task':15s} {'family':15s} {'params':>9s} {'MACs':>10s} {'input':>12s}  preprocessing")
    for card in cards:
        if args.verbose:
            shape = "x".join(str(v) for v in card["input_shape"])
            print(f"{card['name']:28s} {card['task']:15s} {card['family']:15s} {_number(card['params']):>9s} "
                  f"{_number(card['macs']):>10s} {shape:>12s}  {card['preprocessing'] or '-'}")
        else:
            print(card["name"])


def cmd_info(args):
    if args.layers:
        _quiet_tensorflow()
        from catalog.benchmark import layer_profile, profile_text

        print(profile_text(layer_profile(args.name, input_shape=args.input_shape, latency=args.latency)))
        return
    if args.latency or args.input_shape:
        raise ValueError("--latency and --input-shape go with --layers.")
    card = next(iter(_cards(args.name) or []), None)
    if card is None or card["name"] != args.name:
        _quiet_tensorflow()
        from catalog.registry import model_info

        card = model_info(args.name).to_dict()
    ref = (f"{card['reference_params']:,} ({card['reference_params_source']})"
           if card["reference_params"] else "none published")
    lines = [
        ("name", card["name"]), ("family", card["family"]), ("task", card["task"]), ("paper", card["paper"]),
        ("input shape", tuple(card["input_shape"])), ("min input size", card["min_input_size"] or "-"),
        ("classes", card["num_classes"]),
        ("trainable params", f"{card['params']:,}"), ("reference params", ref),
        ("total params", f"{card['total_params']:,}"),
        ("MACs", f"{card['macs'] / 1e6:,.1f}M" if card["macs"] is not None else "not counted"),
        ("preprocessing", card["preprocessing"] or "-"), ("eval crop", card["crop_fraction"]),
        ("initialization", card.get("initialization") or "-"),
        ("feature channels", tuple(card["feature_channels"])),
        ("feature reductions", tuple(card["feature_reductions"])),
        ("description", card["description"]),
    ]
    if card["reference_macs"]:
        lines.insert(11, ("reference MACs", f"{card['reference_macs'] / 1e6:,.1f}M ({card['reference_macs_source']})"))
    for key, value in lines:
        print(f"{key + ':':20s} {value}")


def _positive(args, *options):
    """Bad values are errors of the value (exit 1, one sentence), not of the usage."""
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and value <= 0:
            raise ValueError(f"{option} must be a positive integer; got {value}.")


def cmd_summary(args):
    _positive(args, "--num-classes")
    _quiet_tensorflow()
    from catalog.registry import create_model

    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.input_shape is not None:
        kwargs["input_shape"] = args.input_shape
    create_model(args.name, **kwargs).summary(line_length=110)


def cmd_demo(args):
    _positive(args, "--epochs")
    _quiet_tensorflow()
    from catalog.demo import run_demo

    out = run_demo(out_dir=args.out, epochs=args.epochs, verbose=0 if args.quiet else 2)
    print(f"Report written to {out}")


def cmd_evaluate(args):
    _positive(args, "--image-size", "--batch-size", "--max-batches")
    if args.crop_fraction is not None and not 0.0 < args.crop_fraction <= 1.0:
        raise ValueError(f"--crop-fraction must be in (0, 1]; got {args.crop_fraction}.")
    _quiet_tensorflow()
    from catalog.scoring import evaluate

    out = evaluate(args.model, args.data, task=args.task, out_dir=args.out, split=args.split,
                   image_size=args.image_size, batch_size=args.batch_size, weights=args.weights,
                   preprocessing=args.preprocessing, crop_fraction=args.crop_fraction,
                   max_batches=args.max_batches, allow_random_weights=args.allow_random_weights,
                   save_detections=args.save_detections, verbose=0 if args.quiet else 1,
                   **(_json_option("task_options", args.task_options) if args.task_options else {}))
    print(f"Report written to {out}")


def cmd_train(args):
    settings = _train_settings(args)
    model = settings.pop("model", None)
    if args.resume is None and model is None:
        raise ValueError("train needs a MODEL (a registered name or a .keras file) or --resume DIR.")
    _quiet_tensorflow()
    from catalog.training import train

    if args.resume is not None:
        result = train(resume=args.resume, **settings)
    else:
        result = train(model, config_file=args.config, **settings)
    print(f"Run written to {result.run_dir}")


def cmd_finetune(args):
    settings = _train_settings(args)
    _positive(args, "--head-epochs", "--epochs")
    for name in ("model", "epochs", "lr", "data", "out"):
        settings.pop(name, None)
    _quiet_tensorflow()
    from catalog.training.finetune import finetune

    epochs = {k: getattr(args, k) for k in ("head_epochs", "epochs") if getattr(args, k) is not None}
    result = finetune(args.model, args.data, weights=args.weights, unfreeze_from=args.unfreeze_from,
                      lr=args.lr, finetune_lr=args.finetune_lr, out_dir=args.out, **epochs, **settings)
    for line in result.skipped:
        print(line)
    print(f"Run written to {result.run_dir}")


def cmd_lr_find(args):
    settings = _train_settings(args, drop=("model", "out"))
    _quiet_tensorflow()
    from catalog.training.lr_find import lr_find

    result = lr_find(args.model, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
                     out_dir=args.out, **settings)
    print(f"Suggested learning rate: {result.suggested_lr:.3g} (plot: {result.plot})")


def cmd_export(args):
    _positive(args, "--num-calibration", "--num-compare", "--num-classes")
    from catalog.export import check_options, export

    check_options(args.format, args.out, args.quantize, args.calibration,  # before TensorFlow loads
                  per_channel=not args.per_tensor)
    _quiet_tensorflow()

    report = export(args.model, format=args.format, out=args.out, quantize=args.quantize,
                    calibration=args.calibration, num_calibration=args.num_calibration,
                    num_compare=args.num_compare, fold_bn=args.fold_bn, weights=args.weights,
                    num_classes=args.num_classes, split=args.split, data_dir=args.data_dir,
                    preprocessing=args.preprocessing, per_channel=not args.per_tensor,
                    verbose=0 if args.quiet else 1)
    if args.quiet:  # else the report's lines were printed
        if report["random_weights"]:
            print(f"note: {report['notes'][0]}")
        print(f"Exported to {report['path']} (report {report['path']}.json)")


def _train_settings(args, drop=()):
    """The TrainConfig settings given on the command line (JSON options parsed), less ``drop``."""
    settings = {k: v for k, v in vars(args).items() if k in _train_fields() and v is not None and k not in drop}
    for name in ("model_options", "task_options", "data_options", "schedule_options"):
        if name in settings:
            settings[name] = _json_option(name, settings[name])
    return settings


def _tasks():
    from catalog.registry import TASKS

    return TASKS


def _train_fields():
    from catalog.training.config import FIELDS

    return FIELDS


def _json_option(name, text):
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"--{name.replace('_', '-')} must be a JSON object such as '{{\"width\": 8}}'; got {text!r}.")
    return value


def _train_arguments(p, skip=()):
    """One flag per TrainConfig field (``--batch-size`` for ``batch_size``); defaults live in the config."""
    import dataclasses

    from catalog.training import config as cfg

    choices = {"optimizer": cfg.OPTIMIZERS, "precision": cfg.PRECISIONS, "jit": cfg.JIT,
               "distribute": cfg.DISTRIBUTE}
    defaults = cfg.TrainConfig()
    for field in dataclasses.fields(cfg.TrainConfig):
        if field.name in ("model", "out", *skip):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        shown = f" (default {default})" if default not in (None, {}, "") else ""
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        if "bool" in kind:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"{shown.strip()}")
        elif "dict" in kind:
            p.add_argument(flag, metavar="JSON", help=f"JSON object{shown}")
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=convert, choices=choices.get(field.name), help=shown.strip() or None)


def _shape(text: str):
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 224,224,3; got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"input shape must have three numbers (H,W,C); got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalog", description="Model-architecture catalog for Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. '*resnet*'")
    p.add_argument("--task", help="only models of this task")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print task, family, parameters, MACs, default input and preprocessing")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print a model's card: params, MACs, input shape, paper")
    p.add_argument("name")
    p.add_argument("--layers", action="store_true",
                   help="a per-layer profile instead: output shape, params, MACs, activation memory per layer "
                        "and per layer group")
    p.add_argument("--latency", action="store_true", help="with --layers: measured CPU latency per group (b1)")
    p.add_argument("--input-shape", type=_shape, help="with --layers: H,W,C (default: the card's)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("summary", help="print the Keras summary of a model")
    p.add_argument("name")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-shape", type=_shape, help="H,W,C")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset; write report.json/md/html")
    p.add_argument("--model", required=True, help="a .keras file or a registered name")
    p.add_argument("--data", required=True, help="dataset spec: shapes, digits, folder:PATH, "
                                                 "coco:ANN.json:IMAGES, voc:PATH or tfds:NAME")
    p.add_argument("--task", default="classification", choices=_tasks())
    p.add_argument("--task-options", help="JSON object of the task's scoring options, e.g. generation: "
                                          "'{\"classifier\": \"clf.keras\"}'")
    p.add_argument("--out", help="report folder (default: runs/eval-TIMESTAMP)")
    p.add_argument("--split", help="default: test, else val; a folder without split folders is evaluated whole")
    p.add_argument("--image-size", type=int, help="input side (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weights", help="weights file for a registered name")
    p.add_argument("--preprocessing", choices=("unit", "torch", "tf", "caffe", "none"),
                   help="pixel scaling (default: the model's record, else its card's)")
    p.add_argument("--crop-fraction", type=float,
                   help="centre-crop fraction, 1.0 = none (default: the model's record, else its card's)")
    p.add_argument("--max-batches", type=int, help="evaluate a seeded random sample of this many batches")
    p.add_argument("--save-detections", metavar="FILE",
                   help="detection: write the detections as a COCO results JSON (original ids and pixels)")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="score a registered name without weights (its scores are chance level)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model with model.fit; write a run directory",
                       description="Train MODEL on --data; flags override --config; --resume DIR continues a run.")
    p.add_argument("model", nargs="?", help="a registered name or a .keras file")
    p.add_argument("--out", help="run directory (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--config", help="TOML or JSON file of settings (flags override it)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    _train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="fine-tune a model on new data: train the head, then unfreeze",
                       description="Load --weights (any number of classes) into MODEL built for --data, train the "
                                   "new head with the backbone frozen (--head-epochs), then from --unfreeze-from on "
                                   "(--epochs, --finetune-lr); both stages in one run directory.")
    p.add_argument("model", help="a registered name")
    p.add_argument("--weights", help="a .weights.h5 or .keras file of the same architecture")
    p.add_argument("--unfreeze-from", default="all",
                   help="what stage 2 trains: all, head, a stage name (stage3) or number, or a layer pattern "
                        "(default all)")
    p.add_argument("--head-epochs", type=int, help="stage 1 epochs (default 3)")
    p.add_argument("--finetune-lr", type=float, help="stage 2 learning rate (default --lr / 10)")
    p.add_argument("--out", help="run directory (default: runs/finetune-MODEL-TIMESTAMP)")
    _train_arguments(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("lr-find", help="LR range test: loss against an exponentially growing LR; suggest an LR")
    p.add_argument("model", help="a registered name or a .keras file")
    p.add_argument("--out", help="run directory (default: runs/lr-find-TIMESTAMP)")
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=200)
    _train_arguments(p, skip=("epochs", "schedule", "lr", "lr_scaling", "warmup_epochs", "schedule_options",
                              "val_split", "checkpoint_every"))
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("export", help="export a model to .keras, SavedModel or TFLite (float16, dynamic, int8); "
                                      "write PATH.json with size and output difference",
                       description="Export MODEL to --out; BatchNorm folds into the convolutions for savedmodel and "
                                   "tflite; the exported model is compared with the Keras model on --calibration "
                                   "images (else generated ones) and the report written to OUT.json.")
    p.add_argument("model", help="a .keras file, or a registered name (with --weights; without, its weights "
                                 "are random)")
    p.add_argument("--format", default="keras", help="keras, savedmodel or tflite (default keras)")
    p.add_argument("--out", required=True, help="the file to write (.keras, .tflite; a folder for savedmodel)")
    p.add_argument("--quantize", help="tflite only: float16, dynamic or int8 (default: float32)")
    p.add_argument("--calibration", metavar="SPEC",
                   help="dataset spec (shapes, folder:PATH, ...): int8 calibrates on its train split; the "
                        "comparison uses its held-out split (default: generated images)")
    p.add_argument("--num-calibration", type=int, default=100, help="int8 calibration images (default 100)")
    p.add_argument("--per-tensor", action="store_true",
                   help="int8: one scale per weight tensor instead of per output channel (a smaller file, "
                        "larger rounding errors)")
    p.add_argument("--num-compare", type=int, default=32, help="images compared (default 32)")
    p.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="fold BatchNorm into the preceding convolutions (default: on for savedmodel and tflite)")
    p.add_argument("--weights", help="weights file for a registered name")
    p.add_argument("--num-classes", type=int, help="classes of a registered name (default: its card's)")
    p.add_argument("--split", help="split of --calibration compared on (default: its evaluation split)")
    p.add_argument("--data-dir", help="TFDS data folder for tfds: specs")
    p.add_argument("--preprocessing", choices=("unit", "torch", "tf", "caffe", "none"),
                   help="pixel scaling of the data (default: the model's record, else its card's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="train and evaluate a model on generated data; write a report")
    p.add_argument("--out", help="report folder (default: runs/demo-TIMESTAMP)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("benchmark", help="time inference and training steps of registered models (random weights)",
                       description="Per model: warm-up, then --repeats timed calls; medians and min/max of inference "
                                   "at batch 1 and --batch-size, training step time, compile time, peak memory; "
                                   "rows in timm's results layout (--csv, --json).")
    p.add_argument("names", nargs="+", metavar="NAME", help="registered model names")
    p.add_argument("--batch-size", type=int, default=8, help="throughput and training batch (default 8)")
    p.add_argument("--image-size", type=int, help="square input side (default: each card's input)")
    p.add_argument("--jit", default="auto", help="XLA: on, off or auto (default auto)")
    p.add_argument("--precision", default="float32", help="float32, mixed_float16 or mixed_bfloat16 (default float32)")
    p.add_argument("--mode", default="infer", help="infer, train or both (default infer)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls after the first (default 2)")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV, each as its model finishes")
    p.add_argument("--append", action="store_true", help="add the rows to the --csv file instead of replacing it")
    p.add_argument("--json", metavar="FILE", help="write the rows and a machine description as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line per model")
    p.set_defaults(func=cmd_benchmark)
    return parser


def cmd_benchmark(args):
    _positive(args, "--batch-size", "--image-size", "--repeats")
    _quiet_tensorflow()
    from catalog.benchmark import benchmark, markdown_table

    rows = benchmark(args.names, batch_size=args.batch_size, image_size=args.image_size, jit=args.jit,
                     precision=args.precision, mode=args.mode, repeats=args.repeats, warmup=args.warmup,
                     csv=args.csv, json=args.json, verbose=0 if args.quiet else 1, append=args.append)
    print(markdown_table(rows))
    for path in (args.csv, args.json):
        if path:
            print(f"Results written to {path}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if err.args else str(err)
        print(f"catalog {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"catalog {args.command}: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
