"""Steps per second of the SYNTHIA -> Cityscapes recipe as ``masktwins train`` runs it (data
drawing with rare-class sampling and ClassMix included), against the named baseline measured
in the same run: the same recipe without the twins (``method.mask_mode = "none"``: DAFormer
self-training with ClassMix, one unmasked student view).

The data are generated colour volumes (3, N, y, x) with 19-class labels (no dataset needed).
The recipe's HRDA is kept, its detail window half the crop. Defaults: the tiny MiT on
128 x 128 crops, a CPU-sized check; ``--encoder mit_b5 --crop 1024`` is the real recipe's step
(a GPU measurement).

    python bench/cityscapes_step.py [--encoder mit_tiny] [--crop 128] [--steps 6] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.io.volumes import write_volume
from masktwins_cli.models.mit_weights import to_original
from masktwins_cli.models.segformer import SegFormer
from masktwins_cli.runtime.device import resolve_device
from masktwins_cli.training.run import build_run

REPO = Path(__file__).resolve().parent.parent


def write_data(folder: Path, crop: int, images: int = 4, seed: int = 0) -> None:
    """Source and target colour volumes of ``images`` slices of 2 x crop pixels, 19 classes in
    blocks (source labels)."""
    rng = np.random.default_rng(seed)
    shape = (images, crop * 2, crop * 2)
    rows, cols = np.indices(shape[1:])
    for name in ("source", "target"):
        labels = np.stack([((rows // 16) * 7 + cols // 16 + z) % 19 for z in range(images)])
        colours = rng.integers(0, 255, (19, 3))
        raw = np.moveaxis(colours[labels], -1, 0) + rng.normal(0, 10, (3, *shape))
        write_volume(f"{folder}/{name}.zarr/raw", raw.clip(0, 255).astype(np.uint8), (1.0, 1.0, 1.0))
        write_volume(f"{folder}/{name}.zarr/labels", labels.astype(np.uint8), (1.0, 1.0, 1.0))


def time_steps(overrides: list[str], steps: int, warmup: int) -> float:
    """Seconds per training step (draw, forward, backward, AdamW, EMA) after ``warmup`` steps."""
    recipe = load_recipe(REPO / "recipes" / "synthia_to_cityscapes.toml", overrides)
    run = build_run(recipe, Path(tempfile.mkdtemp()))
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    seconds = []
    for step in range(warmup + steps):
        sync()
        started = time.perf_counter()
        run.optimizer.zero_grad(set_to_none=True)
        run.losses(step)["loss"].backward()
        run.optimizer.step()
        run.after_step(step)
        sync()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds[warmup:]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mit_tiny")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_cityscapes_step"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    data = Path(tempfile.mkdtemp())
    write_data(data, args.crop)
    weights = data / "imagenet.pth"  # random weights in the original MiT layout: speed only
    torch.save(to_original(SegFormer(3, 19, args.encoder).encoder.state_dict()), weights)
    base = [f"data.root={json.dumps(str(data))}",
            'data.source=[{raw = "source.zarr/raw", labels = "source.zarr/labels"}]',
            'data.target=[{raw = "target.zarr/raw"}]', "data.val=[]",
            f"data.patch_size=[{args.crop}, {args.crop}]", "data.rare_class_min_pixels=16",
            f"model.hrda_detail=[{args.crop // 2}, {args.crop // 2}]",
            f'model.encoder="{args.encoder}"', f"model.pretrained={json.dumps(str(weights))}",
            "method.block_size=[16, 16]" if args.crop < 256 else "method.block_size=[64, 64]",
            "method.pseudo_margin=[4, 16, 4, 4]" if args.crop < 256 else
            "method.pseudo_margin=[30, 240, 30, 30]",
            f'train.device="{device.type}"', f"train.threads={args.threads}"]
    if args.encoder == "mit_tiny":
        base.append("model.decoder_channels=32")
    rows = {}
    for name, extra in (("masktwins", []), ("no twins (baseline)", ['method.mask_mode="none"'])):
        rows[name] = time_steps(base + extra, args.steps, args.warmup)
    twins, plain = rows["masktwins"], rows["no twins (baseline)"]
    print(f"| SYNTHIA -> Cityscapes step, {args.encoder}, {args.crop}^2 crops, batch 2 + 1 target, "
          f"{device} | s / step | steps / s |")
    print("|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {1 / seconds:.2f} |")
    print(f"twins cost x{twins / plain:.2f} the baseline step")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cityscapes_step.json").write_text(json.dumps(
        {"encoder": args.encoder, "crop": args.crop, "device": str(device),
         "seconds_per_step": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
