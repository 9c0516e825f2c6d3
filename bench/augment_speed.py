"""Training steps per second with and without the batch augmentation ([augment]), in one run.

Builds a real training run (``masktwins_cli.training.run.build_run``) on a synthetic 2-D pair
(``masktwins prepare synthetic``) with ``recipes/synthetic_mito2d.toml`` and times whole
iterations as ``masktwins train`` does them (crop sampling, transfer, augmentation on the
device, losses, backward, Adam, EMA): NoAdapt and MaskTwins, each with every augmentation
switch off (the baseline) and with the shipped real-pair set on (rotation, zoom, elastic,
contrast, gamma, blur, noise, strong target augmentation, teacher context).

    python bench/augment_speed.py               # 30 timed steps each after 5 warm-up steps
    python bench/augment_speed.py --steps 100 --out runs/augment_speed

Prints seconds per step and the slow-down of augmentation, writes OUT/augment_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.prepare.synthetic import prepare_synthetic
from masktwins_cli.training.run import build_run
from masktwins_cli.training.schedule import learning_rate

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "synthetic_mito2d.toml"
AUGMENT = ("augment.rotate_prob=0.5", "augment.scale_prob=0.3", "augment.elastic_prob=0.3",
           "augment.contrast_prob=0.5", "augment.gamma_prob=0.3", "augment.blur_prob=0.2",
           "augment.noise_prob=0.2", "augment.strong_target=true", "method.teacher_context=[16,16]")
OFF = ("augment.rotate_prob=0.0", "augment.scale_prob=0.0", "augment.elastic_prob=0.0",
       "augment.contrast_prob=0.0", "augment.gamma_prob=0.0", "augment.blur_prob=0.0",
       "augment.noise_prob=0.0", "augment.strong_target=false", "method.teacher_context=[]")


def seconds_per_step(recipe, steps: int, warmup: int, out: Path) -> float:
    run = build_run(recipe, out)
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe.train.lr, recipe.train.iterations,
                                        recipe.train.poly_power, recipe.train.warmup_iterations)
        loss = run.losses(step)["loss"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.after_step(step)
    return (time.perf_counter() - started) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/augment_speed"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_synthetic(Path(tmp) / "data", task="mito", dims=2, seed=0)
        for method, extra in (("NoAdapt", ("method.adapt=false",)), ("MaskTwins", ())):
            row = {"method": method}
            for name, switches in (("off", OFF), ("on", AUGMENT)):
                recipe = load_recipe(RECIPE, [f'data.root="{data.out_dir}"', *extra, *switches,
                                              f"train.threads={args.threads}"])
                row[name] = seconds_per_step(recipe, args.steps, args.warmup, Path(tmp) / "run")
            row["slowdown"] = row["on"] / row["off"]
            results.append(row)
            print(f"{method}: {row['off']:.3f} s/step without augmentation (baseline), "
                  f"{row['on']:.3f} s/step with it ({row['slowdown']:.2f}x)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    (args.out / "augment_speed.json").write_text(json.dumps(
        {"device": device, "threads": args.threads, "steps": args.steps, "results": results},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
