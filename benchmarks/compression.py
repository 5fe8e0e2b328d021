"""One row per compression method on the same fine-tuned small model and data (issue: deployment and compression).

A base classifier is trained on generated shapes; each method starts from it (or, for distillation, from the
same student architecture as a plain run), is fine-tuned where the method needs it, exported to TFLite
(float32, BatchNorm folded; int8 for the quantized row) and measured side by side: file size (and its gzip
size, where zeros compress), parameters, MACs, TFLite latency at batch 1 (median, XNNPACK, this CPU) and top-1
accuracy on the held-out test split (the TFLite model's own outputs).

    python benchmarks/compression.py --out runs/compression [--model mobilenet_v2 --alpha 0.35 --size 64]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np


def _tflite(model, path, quantize=None):
    from catalog.export import export

    export(model, "tflite", path, quantize=quantize, calibration="shapes" if quantize == "int8" else None,
           num_compare=8, verbose=0)
    with open(path, "rb") as f:
        return f.read()


def _interpreter_runner(content):
    from catalog.export import _interpreter

    interpreter = _interpreter(content)
    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    (name,) = runner.get_input_details()
    details = runner.get_input_details()[name]
    scale, zero = details["quantization"] if details.get("quantization") else (0.0, 0)

    def run(x):
        if details["dtype"] != np.float32 and scale:
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(details["dtype"])
        out = next(iter(runner(**{name: x}).values()))
        out_details = next(iter(runner.get_output_details().values()))
        o_scale, o_zero = out_details["quantization"] if out_details.get("quantization") else (0.0, 0)
        return (out.astype(np.float32) - o_zero) * o_scale if out.dtype != np.float32 and o_scale else out

    return run


def _measure(label, model, content, images, labels, repeats, note=""):
    from catalog.flops import count_macs

    run = _interpreter_runner(content)
    predictions = np.concatenate([run(images[i:i + 1]) for i in range(len(images))])
    accuracy = float(np.mean(predictions.argmax(-1) == labels))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(images[:1])
        times.append(1000 * (time.perf_counter() - start))
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"method": label, "size_kb": round(len(content) / 1024, 1),
            "gzip_kb": round(len(gzip.compress(content)) / 1024, 1), "params": params,
            "macs_m": round(count_macs(model) / 1e6, 2), "tflite_ms_b1": round(statistics.median(times), 3),
            "top1": round(accuracy, 4), "note": note}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/compression")
    p.add_argument("--model", default="mobilenet_v2")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--student-alpha", type=float, default=0.35)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args(argv)

    import catalog
    from catalog import datasets
    from catalog.training.compress import MagnitudePruning, low_rank, prune_filters, sparsity

    os.makedirs(args.out, exist_ok=True)
    common = dict(data="shapes", image_size=args.size, num_images=args.num_images, batch_size=32, verbose=2,
                  bn_momentum=0.9, optimizer="adam", lr=2e-3)
    finetune = dict(common, epochs=args.finetune_epochs, lr=5e-4, schedule="cosine", warmup_epochs=0)
    test, info = datasets.load("shapes", split="test", image_size=args.size, batch_size=256, shuffle=False,
                               preprocessing=catalog.model_info(args.model).preprocessing or "unit")
    images, labels = map(np.concatenate, zip(*[(np.asarray(x), np.asarray(y)) for x, y in test]))
    rows, seconds = [], {}

    def step(label, fn):
        start = time.time()
        result = fn()
        seconds[label] = round(time.time() - start, 1)
        print(f"{label}: {seconds[label]} s", flush=True)
        return result

    base = step("base", lambda: catalog.train(args.model, model_options={"alpha": args.alpha}, epochs=args.epochs,
                                              out_dir=os.path.join(args.out, "base"), **common).model)
    float_file = _tflite(base, os.path.join(args.out, "base.tflite"))
    rows.append(_measure("float32 (BN folded)", base, float_file, images, labels, args.repeats))
    int8_file = _tflite(base, os.path.join(args.out, "base_int8.tflite"), quantize="int8")
    rows.append(_measure("int8 post-training", base, int8_file, images, labels, args.repeats))

    for target, scope in ((0.8, "global"), (0.8, "layer"), (0.5, "global")):
        pruning = MagnitudePruning(target, frequency=5, scope=scope)
        tag = f"magnitude_{scope}_{int(target * 100)}"
        pruned = step(tag, lambda: catalog.train(base, callbacks=[pruning], out_dir=os.path.join(args.out, tag),
                                                 **finetune).model)
        rows.append(_measure(f"magnitude pruning {target:.0%} ({scope})", pruned,
                             _tflite(pruned, os.path.join(args.out, f"{tag}.tflite")), images, labels, args.repeats,
                             note=f"sparsity {sparsity(pruned):.3f}; dense kernels in TFLite, the gzip size shows "
                                  f"the zeros"))

    def filters():
        small, _ = prune_filters(base, 0.5)
        return catalog.train(small, out_dir=os.path.join(args.out, "filters"), **finetune).model

    thin = step("filters", filters)
    rows.append(_measure("L1 filter pruning 50%", thin, _tflite(thin, os.path.join(args.out, "filters.tflite")),
                         images, labels, args.repeats, note="then fine-tuned"))

    def factored():
        model, ranks = low_rank(base, energy=0.9)
        return catalog.train(model, out_dir=os.path.join(args.out, "low_rank"), **finetune).model, len(ranks)

    svd, count = step("low_rank", factored)
    rows.append(_measure("SVD low-rank (90% energy)", svd, _tflite(svd, os.path.join(args.out, "low_rank.tflite")),
                         images, labels, args.repeats, note=f"{count} layers factored, then fine-tuned"))

    student_options = {"alpha": args.student_alpha, "name": "student"}
    alone = step("student_alone", lambda: catalog.train(args.model, model_options=student_options,
                                                        epochs=args.epochs, out_dir=os.path.join(args.out, "alone"),
                                                        **common).model)
    rows.append(_measure(f"student alpha {args.student_alpha} alone", alone,
                         _tflite(alone, os.path.join(args.out, "alone.tflite")), images, labels, args.repeats))
    taught = step("student_distilled", lambda: catalog.train(
        args.model, model_options=student_options, epochs=args.epochs, teacher=os.path.join(args.out, "base",
                                                                                            "model.keras"),
        out_dir=os.path.join(args.out, "distilled"), **common).model)
    rows.append(_measure(f"student alpha {args.student_alpha} distilled", taught,
                         _tflite(taught, os.path.join(args.out, "distilled.tflite")), images, labels, args.repeats,
                         note="teacher: the base, T 4, alpha 0.5"))

    result = {"args": vars(args), "seconds": seconds, "rows": rows, "test_images": int(len(labels))}
    with open(os.path.join(args.out, "compression.json"), "w") as f:
        json.dump(result, f, indent=2)
    print("| method | TFLite KiB | gzip KiB | params | MMACs | TFLite ms b1 | top-1 | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['method']} | {r['size_kb']} | {r['gzip_kb']} | {r['params']:,} | {r['macs_m']} | "
              f"{r['tflite_ms_b1']} | {r['top1']:.3f} | {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
