"""Inference speed and memory: ``masktwins infer`` (zarr on disk -> zarr on disk) against MONAI's
``sliding_window_inference`` on the same volume held in memory, and against the network alone.

One run, one device, one network (MONAI BasicUNet, random weights; speed does not depend on
them), the same window, overlap 0.25, Gaussian blending and bf16 autocast on GPU:

- ``masktwins``: :func:`infer_volume` end to end, after a warm-up run on a small volume (CUDA
  and cuDNN initialisation excluded, as for the others);
- ``monai``: ``sliding_window_inference`` over the in-memory volume (its input already
  normalised as a tensor on the device; the result copied back to the host);
- ``network``: forward passes alone over as many window batches as masktwins computes (random
  input already on the device): the ceiling of any engine computing these windows;
- peak host RSS of the ``masktwins infer`` command (a child process, ``os.wait4``) on uint8
  volumes of two sizes.

    python bench/infer_speed.py                 # GPU scale on a GPU, else the CPU scale
    python bench/infer_speed.py --scale cpu --out runs/bench_infer

Prints a table and writes OUT/infer_speed.json. Targets (issue 4): masktwins >= 3x MONAI's
end-to-end rate and >= 80 % of the network's rate; RSS < 2 GiB independent of the volume size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from masktwins_cli.config.recipe import recipe_from_dict, recipe_to_dict
from masktwins_cli.inference.predict import infer_volume, plan_for
from masktwins_cli.io.checkpoints import save_checkpoint
from masktwins_cli.io.volumes import create_volume
from masktwins_cli.runtime.device import autocast_for, resolve_device
from masktwins_cli.runtime.networks import build_from_recipe

REPO = Path(__file__).resolve().parent.parent

SCALES = {
    # size: the speed volume (voxels per axis); rss: the two memory sizes; window: voxels.
    "gpu": {"size": 512, "window": 96, "batch": 4, "features": (32, 32, 64, 128, 256, 32),
            "rss": (512, 1024), "rss_features": (32, 32, 64, 128, 256, 32)},
    "cpu": {"size": 96, "window": 64, "batch": 2, "features": (32, 32, 64, 128, 256, 32),
            "rss": (160, 320), "rss_features": (4, 4, 8, 8, 16, 4)},
    # every figure at toy sizes (bench/device_check.py --scale smoke): the command cannot rot
    "smoke": {"size": 48, "window": 32, "batch": 2, "features": (4, 4, 8, 8, 16, 4),
              "rss": (48, 64), "rss_features": (4, 4, 8, 8, 16, 4)},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default=None,
                        help="gpu (512^3, RSS at 512^3 and 1024^3) or cpu (default: by device)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_infer")
    parser.add_argument("--skip-rss", action="store_true", help="speed only")
    return parser.parse_args(argv)


def make_checkpoint(path: Path, window: int, features, batch: int) -> Path:
    """A masktwins checkpoint of a randomly initialised 3-D BasicUNet."""
    recipe = recipe_from_dict({
        "model": {"name": "basicunet", "spatial_dims": 3, "features": list(features)},
        "data": {"patch_size": [window] * 3},
        "method": {"block_size": [16, 16, 16]},
        "infer": {"batch_size": batch, "overlap": 0.25, "blend": "gaussian"},
    })
    torch.manual_seed(0)
    model = build_from_recipe(recipe)
    return save_checkpoint(path, {"recipe": recipe_to_dict(recipe), "model": model.state_dict(),
                                  "teacher": None, "step": 0})


def write_volume_slabs(uri: str, size: int, seed: int = 0) -> str:
    """A size^3 uint8 zarr volume written 32 slices at a time (never whole in memory)."""
    volume = create_volume(uri, (size,) * 3, np.uint8, (32, 128, 128), (8.0, 8.0, 8.0),
                           overwrite=True)
    rng = np.random.default_rng(seed)
    for z in range(0, size, 32):
        slab = rng.integers(0, 256, (min(32, size - z), size, size), dtype=np.uint8)
        volume.write((slice(z, z + slab.shape[0]), slice(0, size), slice(0, size)), slab)
    return uri


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_masktwins(checkpoint: Path, volume: str, out: Path, device: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    infer_volume(checkpoint, volume, f"{out}/p", device=device)
    return time.perf_counter() - started


def monai_baseline(model, raw: np.ndarray, window: int, batch: int, device: torch.device,
                   ) -> float:
    """Seconds for MONAI sliding_window_inference over the in-memory volume (normalised tensor
    on the device in, foreground probability on the host out)."""
    from monai.inferers import sliding_window_inference

    def predictor(x):
        with autocast_for(device, True):
            return torch.softmax(model(x).float(), dim=1)

    tensor = torch.from_numpy(raw).to(device).float().sub_(127.5).div_(73.6)[None, None]
    synchronize(device)
    started = time.perf_counter()
    with torch.no_grad():
        probs = sliding_window_inference(tensor, (window,) * 3, batch, predictor, overlap=0.25,
                                         mode="gaussian", sigma_scale=0.125, padding_mode="reflect")
        foreground = probs[0, 1].cpu().numpy()
    seconds = time.perf_counter() - started
    assert foreground.shape == raw.shape
    return seconds


def network_seconds(model, windows: int, window: int, batch: int, device: torch.device) -> float:
    """Forward passes alone over ``windows`` windows in batches (timed on a sample of batches)."""
    x = torch.randn(batch, 1, window, window, window, device=device)
    batches = -(-windows // batch)
    sample = min(batches, 12)
    with torch.no_grad(), autocast_for(device, True):
        for _ in range(2):
            model(x)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(sample):
            model(x)
        synchronize(device)
    return (time.perf_counter() - started) / sample * batches


def windows_computed(checkpoint: Path, size: int) -> tuple[int, int]:
    """(windows masktwins computes over all blocks, windows of one whole-volume pass)."""
    from masktwins_cli.io.checkpoints import load_checkpoint

    recipe = recipe_from_dict(load_checkpoint(checkpoint)["recipe"])
    plan = plan_for(recipe, (size,) * 3)
    ours = sum(len(plan.work(i).positions(plan.window)) for i in range(plan.count))
    whole = int(np.prod([len(s) for s in plan.windows.touching(tuple(slice(0, size) for _ in range(3)))]))
    return ours, whole


def peak_rss(checkpoint: Path, volume: str, out: Path, device: str) -> tuple[float, float]:
    """(peak RSS in GiB, wall seconds) of the ``masktwins infer`` command in a child process."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "masktwins_cli.cli", "infer", str(checkpoint), volume,
               "-o", f"{out}/p", "--device", device]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"infer failed with exit code {child.returncode}: {' '.join(command)}")
    return usage.ru_maxrss / 2 ** 20, time.perf_counter() - started  # ru_maxrss is KiB on Linux


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device, "--device")
    scale = SCALES[args.scale or ("gpu" if device.type == "cuda" else "cpu")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    size, window, batch = scale["size"], scale["window"], scale["batch"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(f"device: {device} ({name}), torch threads {torch.get_num_threads()}; volume {size}^3 "
          f"uint8, window {window}^3, overlap 0.25, batch {batch}, BasicUNet {scale['features']}",
          flush=True)
    checkpoint = make_checkpoint(out / "basicunet.pt", window, scale["features"], batch)
    volume = write_volume_slabs(f"{out}/volume.zarr/raw", size)
    warm = write_volume_slabs(f"{out}/warm.zarr/raw", window)
    time_masktwins(checkpoint, warm, out / "warm_pred.zarr", str(device))
    ours = time_masktwins(checkpoint, volume, out / "pred.zarr", str(device))
    from masktwins_cli.io.volumes import open_volume

    raw = open_volume(volume).read_all()
    model, _ = _model(checkpoint, device)
    monai = monai_baseline(model, raw, window, batch, device)
    computed, whole = windows_computed(checkpoint, size)
    network = network_seconds(model, computed, window, batch, device)
    voxels = size ** 3
    result = {
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "volume": [size] * 3, "window": window,
        "batch": batch, "features": scale["features"], "windows_masktwins": computed,
        "windows_whole_volume": whole,
        "seconds": {"masktwins": ours, "monai": monai, "network": network},
        "voxels_per_second": {"masktwins": voxels / ours, "monai": voxels / monai,
                              "network": voxels / network},
    }
    result["speedup_vs_monai"] = monai / ours
    result["fraction_of_network"] = network / ours
    if not args.skip_rss:
        rss_ckpt = make_checkpoint(out / "rss.pt", window, scale["rss_features"], batch)
        result["rss"] = []
        for rss_size in scale["rss"]:
            uri = write_volume_slabs(f"{out}/rss{rss_size}.zarr/raw", rss_size)
            gib, seconds = peak_rss(rss_ckpt, uri, out / f"rss{rss_size}_pred.zarr", str(device))
            result["rss"].append({"size": rss_size, "peak_rss_gib": gib, "seconds": seconds,
                                  "features": scale["rss_features"]})
            shutil.rmtree(out / f"rss{rss_size}.zarr", ignore_errors=True)
            shutil.rmtree(out / f"rss{rss_size}_pred.zarr", ignore_errors=True)
    (out / "infer_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


def _model(checkpoint: Path, device: torch.device):
    from masktwins_cli.inference.checkpoint import load_for_inference

    model, recipe = load_for_inference(checkpoint)
    return model.to(device), recipe


def report(result: dict) -> str:
    rates, seconds = result["voxels_per_second"], result["seconds"]
    lines = ["| engine | seconds | Mvoxels/s |", "|---|---|---|"]
    for key, label in (("masktwins", "masktwins infer (zarr -> zarr)"),
                       ("monai", "MONAI sliding_window_inference (in memory)"),
                       ("network", f"network alone ({result['windows_masktwins']} windows)")):
        lines.append(f"| {label} | {seconds[key]:.2f} | {rates[key] / 1e6:.2f} |")
    lines.append(f"masktwins / MONAI: {result['speedup_vs_monai']:.2f}x (target >= 3x); "
                 f"masktwins / network: {result['fraction_of_network']:.0%} (target >= 80 %); "
                 f"windows: masktwins {result['windows_masktwins']}, one whole-volume pass "
                 f"{result['windows_whole_volume']}")
    for row in result.get("rss", []):
        lines.append(f"peak RSS of `masktwins infer` on {row['size']}^3 uint8: "
                     f"{row['peak_rss_gib']:.2f} GiB ({row['seconds']:.0f} s, BasicUNet "
                     f"{tuple(row['features'])})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
