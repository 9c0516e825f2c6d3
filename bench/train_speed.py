"""Training speed: MaskTwins steps per second as ``masktwins train`` runs them, against a plain
PyTorch loop doing the same maths naively, on the same network, batch and device in one run.

Both loops do one full MaskTwins iteration per step on batches already on the device (data
loading excluded from both): teacher pseudo-labels on the target, AdaIN-styled supervised
forward on the source, the complementary twins (cube masks in 3-D), L_sup + L_cl +
lambda_cm L_cm, backward, Adam, EMA update.

- ``naive``: fp32, one forward per twin, a Python loop over parameters for the EMA, Adam
  without foreach/fused kernels, ``loss.item()`` every step (a host sync);
- ``masktwins``: what ``Run.losses`` / ``Run.after_step`` do: bf16 autocast on GPU, both twins
  in one forward (instance norm makes it exact), channels-last on GPU, fused Adam on GPU, the
  EMA as foreach kernels, no host sync in the step; ``--compile`` adds torch.compile
  (``train.compile``), timed after its compilation.

    python bench/train_speed.py                  # GPU scale on a GPU, else the CPU scale
    python bench/train_speed.py --compile        # also the torch.compile'd step

Prints steps per second and the speed-up, and writes OUT/train_speed.json. Target (issue 4):
the 3-D step at least 3x the naive fp32 loop (H100 reference: naive 0.26 s per step).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from masktwins_cli.config.schema import MethodSection
from masktwins_cli.method.adain import AdaINStyler, StatisticsRecorder
from masktwins_cli.method.losses import consistency_loss, supervised_loss, twin_cross_entropy
from masktwins_cli.method.masking import masked_views, view_masks
from masktwins_cli.method.pseudo_labels import pseudo_labels
from masktwins_cli.method.teacher import ema_alpha_at, make_teacher, update_ema
from masktwins_cli.models import build_model
from masktwins_cli.runtime.device import autocast_for, resolve_device
from masktwins_cli.training.step import Batch, masktwins_losses

REPO = Path(__file__).resolve().parent.parent
FEATURES = (32, 32, 64, 128, 256, 32)

# name -> (spatial dims, crop, batch, mask block)
SCALES = {
    "gpu": {"3d": (3, (96, 96, 96), 4, (16, 16, 16)), "2d": (2, (512, 512), 2, (32, 32)),
            "steps": 20, "warmup": 5},
    "cpu": {"3d": (3, (32, 32, 32), 2, (8, 8, 8)), "2d": (2, (128, 128), 2, (16, 16)),
            "steps": 4, "warmup": 2},
    # toy sizes (bench/device_check.py --scale smoke): every figure, within seconds
    "smoke": {"3d": (3, (32, 32, 32), 1, (8, 8, 8)), "2d": (2, (64, 64), 1, (16, 16)),
              "steps": 1, "warmup": 1},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default=None,
                        help="default: gpu on a GPU, else cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time the compiled step")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_train")
    return parser.parse_args(argv)


class Setup:
    """A student, its EMA teacher, an optimiser and one fixed batch on the device."""

    def __init__(self, dims: int, crop, batch: int, device: torch.device, fast: bool):
        torch.manual_seed(0)
        layout = (torch.channels_last_3d if dims == 3 else torch.channels_last) \
            if fast and device.type == "cuda" else torch.contiguous_format
        self.student = build_model("basicunet", dims, in_channels=1, num_classes=2,
                                   features=FEATURES, norm="instance", pool=(), dropout=0.0)
        self.student = self.student.to(device, memory_format=layout).train()
        self.teacher = make_teacher(self.student)
        cuda = device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=1e-4,
                                          fused=(fast and cuda) or None,
                                          foreach=None if fast else False)
        shape = (batch, 1, *crop)
        self.batch = Batch(torch.randn(shape, device=device).contiguous(memory_format=layout),
                           torch.randint(0, 2, (batch, *crop), device=device),
                           torch.randn(shape, device=device).contiguous(memory_format=layout))
        self.generator = torch.Generator().manual_seed(0)


def naive_step(s: Setup, method, step: int) -> float:
    """The same maths written plainly: fp32, one forward per view, per-parameter EMA."""
    recorder = StatisticsRecorder(method.adain_stages)
    with torch.no_grad():
        teacher_logits = s.teacher(s.batch.target, stage_hook=recorder)
    labels, weights, _ = pseudo_labels(teacher_logits, method.confidence,
                                       method.confidence_threshold, method.quality_tau)
    source_logits = s.student(s.batch.source, stage_hook=AdaINStyler(recorder.statistics))
    loss_sup = supervised_loss(source_logits, s.batch.source_labels)
    masks = view_masks(method.mask_mode, s.batch.target.shape[0], tuple(s.batch.target.shape[2:]),
                       method.block_size, method.mask_ratio, method.num_views, s.generator)
    views = [s.student(view) for view in masked_views(s.batch.target, masks)]
    loss = loss_sup + twin_cross_entropy(views, labels, weights, method.lambda_cl) \
        + method.lambda_cm * consistency_loss(views, method.consistency_on, "softmax")
    s.optimizer.zero_grad()
    loss.backward()
    s.optimizer.step()
    alpha = ema_alpha_at(step + 1, method.ema_alpha)
    with torch.no_grad():
        for t, p in zip(s.teacher.parameters(), s.student.parameters()):
            t.mul_(alpha).add_(p, alpha=1 - alpha)
    return loss.item()


def masktwins_step(s: Setup, method, step: int, device: torch.device, student, teacher) -> None:
    """One step as Run.losses / Run.after_step do it."""
    with autocast_for(device, True):
        terms = masktwins_losses(student, teacher, s.batch, method, s.generator,
                                 batched_views=True)
    s.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    s.optimizer.step()
    update_ema(s.teacher, s.student, ema_alpha_at(step + 1, method.ema_alpha))


def steps_per_second(step, steps: int, warmup: int, device: torch.device) -> float:
    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - started)


def bench_one(dims: int, crop, batch: int, block, device, steps: int, warmup: int,
              compile_too: bool) -> dict:
    method = replace(MethodSection(), block_size=tuple(block))
    plain = Setup(dims, crop, batch, device, fast=False)
    rates = {"naive": steps_per_second(lambda i: naive_step(plain, method, i), steps, warmup, device)}
    plain = None  # free its memory before the next setup
    fast = Setup(dims, crop, batch, device, fast=True)
    rates["masktwins"] = steps_per_second(
        lambda i: masktwins_step(fast, method, i, device, fast.student, fast.teacher),
        steps, warmup, device)
    if compile_too:
        student, teacher = torch.compile(fast.student), torch.compile(fast.teacher)
        rates["masktwins+compile"] = steps_per_second(
            lambda i: masktwins_step(fast, method, i, device, student, teacher),
            steps, warmup + 3, device)
    return {"dims": dims, "crop": list(crop), "batch": batch, "mask_block": list(block),
            "steps_per_second": rates,
            "speedup": {k: v / rates["naive"] for k, v in rates.items() if k != "naive"}}


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device, "--device")
    scale = SCALES[args.scale or ("gpu" if device.type == "cuda" else "cpu")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"BasicUNet {FEATURES}, MaskTwins defaults (AdaIN 2 stages, EMA, 2 twins)", flush=True)
    rows = []
    for key in ("3d", "2d"):
        dims, crop, batch, block = scale[key]
        row = bench_one(dims, crop, batch, block, device, scale["steps"], scale["warmup"], args.compile)
        rows.append(row)
        rates = row["steps_per_second"]
        print(f"{key}: batch {batch} of {'x'.join(map(str, crop))}: " + ", ".join(
            f"{k} {v:.3f} steps/s ({1 / v:.3f} s/step)" for k, v in rates.items()) + "; speed-up "
            + ", ".join(f"{k} {v:.2f}x" for k, v in row["speedup"].items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_speed.json").write_text(json.dumps(
        {"device": str(device), "device_name": name, "torch": torch.__version__,
         "torch_threads": torch.get_num_threads(), "features": FEATURES, "rows": rows},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
