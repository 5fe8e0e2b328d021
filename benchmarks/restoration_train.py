"""Restoration models trained from scratch on generated shapes through ``catalog.train``, scored by
``catalog.evaluate --task restoration`` on the held-out generated split (other seed) against the baseline: bicubic
upscaling of the low-res input (super-resolution) or the noisy input itself (denoising). These are the acceptance
runs of the restoration part of issue 15. Random initialization, nothing downloaded; CPU-sized.

- ``sr``: ``espcn`` x2 on RGB (``num_channels=3``), clean images 64 px (low-res 32 px: the mean of each 2x2 block),
  2,000 training images, batch 16, Adam, cosine, L2 loss (ESPCN's MSE; an L1 run stays at bicubic's PSNR in 20
  epochs); PSNR/SSIM on Y (BT.601) and RGB, 2 px border cropped, against PIL bicubic x2.
- ``denoise``: ``dncnn`` (17 layers, 64 features, the noise conv zero-initialized) on RGB (``num_channels=3``:
  Gaussian noise of sigma 25 per RGB channel; a 1-channel run would see the luminance of RGB noise, sigma ~17),
  32 px images, batch 8, Adam 1e-3, cosine, L2 loss, BatchNorm momentum 0.9; against the noisy input.

    python benchmarks/restoration_train.py --run sr --epochs 20 --lr 3e-3 --out runs/espcn-x2-shapes
    python benchmarks/restoration_train.py --run denoise --epochs 4 --image-size 32 --batch-size 8 \
        --out runs/dncnn-shapes
    python benchmarks/restoration_train.py --run sr --model edsr_baseline_x2 --epochs 6 --num-images 1000 \
        --image-size 48 --lr 1e-3 --model-options '{"num_channels": 3, "res_scale": 0.1}' --out runs/edsr-x2-shapes
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RUNS = {
    "sr": dict(model="espcn", image_size=64, model_options={"num_channels": 3, "scale": 2},
               task_options={"loss": "l2"}),
    "denoise": dict(model="dncnn", image_size=32, model_options={"num_channels": 3},
                    task_options={"loss": "l2", "noise_std": 25.0}, bn_momentum=0.9),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", choices=sorted(RUNS), default="sr")
    parser.add_argument("--model", default=None, help="another registered restoration model (e.g. edsr_baseline_x2)")
    parser.add_argument("--model-options", default=None, help="JSON create_model keywords (replace the run's)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import catalog

    settings = dict(RUNS[args.run])
    model = args.model or settings.pop("model")
    settings.pop("model", None)
    if args.model_options:
        settings["model_options"] = json.loads(args.model_options)
    if args.image_size:
        settings["image_size"] = args.image_size
    out = args.out or os.path.join("runs", f"{model}-{args.run}-shapes")
    start = time.time()
    result = catalog.train(model, "shapes", epochs=args.epochs, batch_size=args.batch_size, num_images=args.num_images,
                           optimizer="adam", lr=args.lr, augment=False, verbose=2, out_dir=out, **settings)
    seconds = time.time() - start
    with open(os.path.join(result.run_dir, "report.json"), encoding="utf-8") as f:
        metrics = json.load(f)["metrics"]
    base = metrics["baseline"]
    summary = {"model": model, "run": args.run, "epochs": args.epochs, "train_images": args.num_images,
               "seconds": round(seconds, 1), "border_crop": metrics["border_crop"],
               "baseline": metrics["baseline_name"],
               **{k: round(metrics[k], 4) for k in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb") if k in metrics},
               **{f"baseline_{k}": round(v, 4) for k, v in base.items()},
               "psnr_y_gain": round(metrics["psnr_y_gain"], 3),
               "psnr_rgb_gain": round(metrics["psnr_rgb"] - base["psnr_rgb"], 3) if "psnr_rgb" in metrics else None}
    print(json.dumps(summary, indent=1))
    with open(os.path.join(result.run_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
