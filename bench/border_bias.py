"""Border-bias diagnostic: does a trained model predict foreground along the image borders?

Two measurements per checkpoint, on a 2-D segmentation model's target volume:

1. **Resin frame.** Every slice of ``--raw`` is framed by a band of ``--band`` pixels of flat
   bright "resin" (the volume's 99.5th percentile plus noise of 5 % of its standard deviation),
   and the framed volume is predicted as ``masktwins infer`` does (sliding windows, Gaussian
   blending, the volume's own normalisation). Reported: the predicted foreground share (p >= 0.5)
   in the 8 pixels nearest each image edge (top, bottom, left, right), 8-16 pixels from it, and in
   the resin 16 pixels or more from any edge; resin has no mitochondria, so every share should be
   about 0.
2. **Window frame.** The network alone on ``--windows`` random windows of ``--raw`` (the
   training patch size, no blending): the mean foreground probability in the first and last 8
   rows and columns of the window against its centre. A model that learned "foreground at the
   window's border" shows it here whatever the image content.

    python bench/border_bias.py runs/x/noadapt/last.pt runs/x/masktwins/last.pt \
        --raw data/real/cdeep3m/validation.zarr/raw --out runs/border

Writes OUT/border_bias.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from masktwins_cli.data.normalization import intensity_stats, normalize, strided_sample
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference.checkpoint import load_for_inference
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.runtime.windows import predict_block

EDGE = 8


def resin_frame(raw: np.ndarray, band: int, rng: np.random.Generator) -> np.ndarray:
    """(z, y, x) float32: each slice inside a frame of ``band`` pixels of bright flat resin."""
    values = raw.astype(np.float32)
    level, spread = np.percentile(values, 99.5), 0.05 * values.std()
    z, y, x = values.shape
    framed = level + spread * rng.standard_normal((z, y + 2 * band, x + 2 * band)).astype(np.float32)
    framed[:, band:band + y, band:band + x] = values
    return framed


def edge_shares(foreground: np.ndarray, band: int) -> dict[str, float]:
    """Foreground share of a (z, y, x) boolean map near each edge and in the far resin."""
    z, y, x = foreground.shape
    near = {"top": foreground[:, :EDGE], "bottom": foreground[:, y - EDGE:],
            "left": foreground[:, :, :EDGE], "right": foreground[:, :, x - EDGE:]}
    shares = {f"{k}_0_8": float(v.mean()) for k, v in near.items()}
    shares["bottom_8_16"] = float(foreground[:, y - 2 * EDGE:y - EDGE].mean())
    shares["top_8_16"] = float(foreground[:, EDGE:2 * EDGE].mean())
    resin = np.zeros((y, x), bool)
    resin[:band] = resin[y - band:] = True
    resin[:, :band] = resin[:, x - band:] = True
    inner = np.zeros((y, x), bool)
    inner[2 * EDGE:y - 2 * EDGE, 2 * EDGE:x - 2 * EDGE] = True
    shares["resin_far"] = float(foreground[:, resin & inner].mean())
    shares["tissue"] = float(foreground[:, band:y - band, band:x - band].mean())
    return shares


def window_profile(model: torch.nn.Module, data: np.ndarray, window: tuple[int, int],
                   count: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean foreground probability by position in the window over random windows of ``data``."""
    z, y, x = data.shape
    total = np.zeros(window, np.float64)
    with torch.no_grad():
        for _ in range(count):
            k, top, left = rng.integers(z), rng.integers(y - window[0] + 1), rng.integers(x - window[1] + 1)
            crop = torch.from_numpy(data[k, top:top + window[0], left:left + window[1]].copy())
            total += model(crop[None, None]).softmax(dim=1)[0, 1].numpy()
    mean = total / count
    centre = mean[EDGE:-EDGE, EDGE:-EDGE].mean()
    return {"first_rows": float(mean[:EDGE].mean()), "last_rows": float(mean[-EDGE:].mean()),
            "first_cols": float(mean[:, :EDGE].mean()), "last_cols": float(mean[:, -EDGE:].mean()),
            "centre": float(centre)}


def measure(checkpoint: Path, raw: np.ndarray, band: int, windows: int, seed: int) -> dict:
    model, recipe = load_for_inference(checkpoint)
    if recipe.model.spatial_dims != 2 or recipe.model.task != "segmentation":
        raise MaskTwinsError(f"{checkpoint}: border_bias measures 2-D segmentation models")
    rng = np.random.default_rng(seed)
    framed = resin_frame(raw, band, rng)
    stats = intensity_stats(strided_sample(framed), recipe.data.normalization, "framed")
    window = tuple(recipe.infer.window or recipe.data.patch_size)
    probs = predict_block(model, normalize(framed, stats), 2, window, recipe.infer.overlap,
                          recipe.infer.batch_size, recipe.infer.blend, torch.device("cpu"))[1]
    plain = normalize(raw, intensity_stats(strided_sample(raw), recipe.data.normalization, "raw"))
    return {"checkpoint": str(checkpoint), "resin_frame": edge_shares(probs >= 0.5, band),
            "window_frame": window_profile(model, plain, window, windows, rng)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--raw", required=True, help="(z, y, x) target image volume URI")
    parser.add_argument("--band", type=int, default=64, help="resin frame width, pixels")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--slices", type=int, default=3, help="first N slices of --raw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/border_bias"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    try:
        volume = open_volume(args.raw, ndim=(3,))
        raw = np.asarray(volume[:args.slices])
        results = [measure(c, raw, args.band, args.windows, args.seed) for c in args.checkpoints]
    except MaskTwinsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "border_bias.json").write_text(json.dumps(results, indent=2))
    keys = list(results[0]["resin_frame"]) + [f"win_{k}" for k in results[0]["window_frame"]]
    print("| checkpoint | " + " | ".join(keys) + " |")
    for r in results:
        values = list(r["resin_frame"].values()) + list(r["window_frame"].values())
        print(f"| {r['checkpoint']} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
