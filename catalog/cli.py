"""The ``catalog`` command line: a thin layer over the Python API.

Exit codes: 0 ok, 1 a failure (one line on stderr, no traceback), 2 bad usage.
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


def cmd_list(args):
    from catalog.registry import get_entry, list_models

    names = list_models(args.pattern, task=args.task)
    if not names:
        raise ValueError(f"No registered model matches {args.pattern!r}"
                         + (f" with task {args.task!r}." if args.task else "."))
    for name in names:
        entry = get_entry(name)
        print(f"{name:28s} {entry.task:15s} {entry.family}" if args.verbose else name)


def cmd_info(args):
    from catalog.registry import model_info

    card = model_info(args.name)
    ref = (f"{card.reference_params:,} ({card.reference_params_source})"
           if card.reference_params else "none published")
    lines = [
        ("name", card.name), ("family", card.family), ("task", card.task), ("paper", card.paper),
        ("input shape", card.input_shape), ("classes", card.num_classes),
        ("trainable params", f"{card.params:,}"), ("reference params", ref),
        ("total params", f"{card.total_params:,}"),
        ("MACs", f"{card.macs / 1e6:,.1f}M" if card.macs is not None else "not counted"),
        ("feature channels", card.feature_channels), ("feature reductions", card.feature_reductions),
        ("description", card.description),
    ]
    if card.reference_macs:
        lines.insert(9, ("reference MACs", f"{card.reference_macs / 1e6:,.1f}M ({card.reference_macs_source})"))
    for key, value in lines:
        print(f"{key + ':':20s} {value}")


def cmd_summary(args):
    from catalog.registry import create_model

    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.input_shape is not None:
        kwargs["input_shape"] = args.input_shape
    create_model(args.name, **kwargs).summary(line_length=110)


def cmd_demo(args):
    from catalog.demo import run_demo

    out = run_demo(out_dir=args.out, epochs=args.epochs, verbose=0 if args.quiet else 2)
    print(f"Report written to {out}")


def cmd_evaluate(args):
    from catalog.scoring import evaluate

    out = evaluate(args.model, args.data, task=args.task, out_dir=args.out, split=args.split,
                   image_size=args.image_size, batch_size=args.batch_size, weights=args.weights,
                   max_batches=args.max_batches, verbose=0 if args.quiet else 1)
    print(f"Report written to {out}")


def _positive(text: str):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


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
    p.add_argument("-v", "--verbose", action="store_true", help="also print task and family")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print a model's card: params, MACs, input shape, paper")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("summary", help="print the Keras summary of a model")
    p.add_argument("name")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-shape", type=_shape, help="H,W,C")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset; write report.json/md/html")
    p.add_argument("--model", required=True, help="a .keras file or a registered name")
    p.add_argument("--data", required=True, help="dataset spec: shapes, folder:PATH, coco:ANN.json:IMAGES, "
                                                 "voc:PATH or tfds:NAME")
    p.add_argument("--task", default="classification", choices=("classification", "detection", "segmentation"))
    p.add_argument("--out", help="report folder (default: runs/eval-TIMESTAMP)")
    p.add_argument("--split", default="test")
    p.add_argument("--image-size", type=_positive, help="input side (default: the model's)")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--weights", help="weights file for a registered name")
    p.add_argument("--max-batches", type=_positive)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="train and evaluate a model on generated data; write a report")
    p.add_argument("--out", help="report folder (default: runs/demo-TIMESTAMP)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    _quiet_tensorflow()
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
