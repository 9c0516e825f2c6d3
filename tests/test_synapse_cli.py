"""``masktwins detect`` and ``masktwins evaluate --task synapse`` (point tables, overlays).

The round trip skips training: a perfect 2-channel probability volume is built from the prepared
points with the cube targets, written as the 4-D zarr that ``infer`` writes for synapse models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, invoke, snapshot
from PIL import Image
from waspsyn_data import LABELED, SHAPE, make_layout

from masktwins_cli.io.volumes import write_volume
from masktwins_cli.synapse.cubes import points_to_cubes
from masktwins_cli.synapse.points import SynapsePoints, read_points, write_points_csv


def _ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def _perfect_probabilities(points_csv, uri, shape=SHAPE):
    """(2, z, y, x) float32 zarr: 0.9 on every point's cube, 0.05 elsewhere."""
    cubes = points_to_cubes(read_points(points_csv), shape).astype(np.float32)
    write_volume(uri, 0.05 + 0.85 * cubes, (8.0, 8.0, 8.0), chunks=(1, 8, 16, 16))
    return uri


def _scores(path):
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------- round trip
def test_prepare_detect_evaluate_round_trip(tmp_path):
    files = make_layout(tmp_path / "wasp")
    data = tmp_path / "data"
    _ok("prepare", "waspsyn", tmp_path / "wasp" / LABELED, data, "--as", "source")
    probs = _perfect_probabilities(data / "source_points.csv", f"{tmp_path}/pred.zarr/probabilities")
    result = _ok("detect", probs, "-o", tmp_path / "det.csv", "--block-shape", "8,16,16")
    assert result.stdout.startswith(f"wrote {tmp_path / 'det.csv'}: 3 pre, 4 post points")
    truth, found = read_points(data / "source_points.csv"), read_points(tmp_path / "det.csv")
    order = np.lexsort(truth.post.T[::-1])  # detection orders points by raster position
    np.testing.assert_array_equal(np.sort(found.pre, axis=0), np.sort(truth.pre, axis=0))
    assert len(found.post) == len(truth.post)
    np.testing.assert_array_equal(found.post[np.lexsort(found.post.T[::-1])], truth.post[order])
    # against the challenge's own label file (global coordinates, offset in its name)
    _ok("evaluate", "--task", "synapse", tmp_path / "det.csv", files["labels"],
        "--json", tmp_path / "scores.json")
    scores = _scores(tmp_path / "scores.json")
    volume = scores["volumes"][0]
    assert (volume["f1_pre"], volume["f1_post"], volume["score"]) == (1.0, 1.0, 1.0)
    assert (volume["tp_pre"], volume["tp_post"], volume["truth_offset"]) == (3, 4, [40, 100, 200])
    assert scores["mean"] == {"f1_pre": 1.0, "f1_post": 1.0, "score": 1.0, "n_volumes": 1}
    # the WASP-SYN .h5 output (local coordinates: no offset in the name) scores the same
    _ok("detect", probs, "-o", tmp_path / "test_sample_predict.h5")
    _ok("evaluate", "--task", "synapse", tmp_path / "test_sample_predict.h5", files["labels"],
        "--json", tmp_path / "scores_h5.json")
    assert _scores(tmp_path / "scores_h5.json")["mean"]["score"] == 1.0


def test_detect_two_maps_and_offset(tmp_path):
    points = SynapsePoints([[4.0, 5.0, 6.0]], [[6.0, 5.0, 9.0]], [0])
    cubes = points_to_cubes(points, (10, 12, 14)).astype(np.float32)
    write_volume(f"{tmp_path}/p.zarr/pre", cubes[0], (8.0,) * 3)
    write_volume(f"{tmp_path}/p.zarr/post", cubes[1], (8.0,) * 3)
    out = tmp_path / "vol_zyx_100-110_200-212_300-314.h5"
    _ok("detect", "--pre", f"{tmp_path}/p.zarr/pre", "--post", f"{tmp_path}/p.zarr/post",
        "-o", out, "--offset", "100,200,300")
    table = read_points(out)  # the offset in the name is subtracted again
    np.testing.assert_array_equal(table.pre, points.pre)
    np.testing.assert_array_equal(table.post, points.post)
    import h5py

    with h5py.File(out) as h5file:
        np.testing.assert_array_equal(h5file["pre"][()], [[104.0, 205.0, 306.0]])
        np.testing.assert_array_equal(h5file["post"][()], [[0.0, 106.0, 205.0, 309.0]])


def test_detect_thresholds_and_link_distance(tmp_path):
    probs = np.zeros((2, 6, 20, 20), np.float32)
    probs[0, 2, 3, 3] = 0.8   # pre above 0.75
    probs[0, 2, 10, 10] = 0.7  # below the pre threshold
    probs[1, 2, 3, 6] = 0.7   # post above 0.65, 3 voxels from the pre
    probs[1, 2, 15, 15] = 0.7  # post 16.97 voxels from the pre
    write_volume(f"{tmp_path}/p.zarr/probs", probs, (8.0,) * 3)
    _ok("detect", f"{tmp_path}/p.zarr/probs", "-o", tmp_path / "a.csv")
    assert (read_points(tmp_path / "a.csv").n_pre, read_points(tmp_path / "a.csv").n_post) == (1, 2)
    _ok("detect", f"{tmp_path}/p.zarr/probs", "-o", tmp_path / "b.csv", "--max-link-distance", "5",
        "--pre-threshold", "0.6")
    table = read_points(tmp_path / "b.csv")
    assert (table.n_pre, table.n_post) == (2, 1)


@pytest.mark.parametrize("case,fragments", [
    ("channels", ["3 channels", "expected 2"]),
    ("range", ["[0, 1]"]),
    ("missing", ["missing.zarr"]),
    ("3d", ["(2, z, y, x)", "--pre"]),
    ("suffix", ["det.txt", ".csv"]),
])
def test_detect_errors_write_nothing(tmp_path, case, fragments):
    good = np.zeros((2, 4, 8, 8), np.float32)
    arrays = {"channels": np.zeros((3, 4, 8, 8), np.float32), "range": good + 2.0,
              "3d": good[0], "suffix": good}
    uri = f"{tmp_path}/in.zarr/probs"
    if case in arrays:
        write_volume(uri, arrays[case], (8.0,) * 3)
    else:
        uri = f"{tmp_path}/missing.zarr/probs"
    output = tmp_path / "out" / ("det.txt" if case == "suffix" else "det.csv")
    before = snapshot(tmp_path)
    name = "det.txt" if case == "suffix" else uri
    assert_user_error(invoke("detect", uri, "-o", output), name, *fragments)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------ scoring by hand
# truth: pre A (10, 10, 10) with posts (12, 10, 40), (8, 10, 70); pre B (10, 40, 10), post (10, 40, 70)
TRUTH = SynapsePoints([[10.0, 10.0, 10.0], [10.0, 40.0, 10.0]],
                      [[12.0, 10.0, 40.0], [8.0, 10.0, 70.0], [10.0, 40.0, 70.0]], [0, 0, 1])
# prediction: A shifted by 5 (kept), B by 12 (> 11: rejected), A's posts by 4 and 3 (kept)
SHIFTED = SynapsePoints([[10.0, 10.0, 15.0], [10.0, 40.0, 22.0]],
                        [[12.0, 10.0, 44.0], [8.0, 10.0, 73.0], [10.0, 40.0, 50.0]], [0, 0, 1])


def _tables(tmp_path):
    write_points_csv(tmp_path / "truth.csv", TRUTH)
    write_points_csv(tmp_path / "pred.csv", SHIFTED)
    write_points_csv(tmp_path / "perfect.csv", TRUTH)
    write_volume(f"{tmp_path}/raw.zarr/raw", np.zeros((20, 64, 96), np.uint8), (8.0,) * 3)


def test_shifted_prediction_scores_by_hand(tmp_path):
    _tables(tmp_path)
    result = _ok("evaluate", "--task", "synapse", tmp_path / "pred.csv", tmp_path / "truth.csv",
                 "--pair", f"{tmp_path / 'perfect.csv'},{tmp_path / 'truth.csv'}",
                 "--json", tmp_path / "s.json")
    scores = _scores(tmp_path / "s.json")
    shifted, perfect = scores["volumes"]
    # pre: TP 1 (A), FP 1 (B'), FN 1 (B): F1 = 2 / (2 + 2) = 0.5; posts of the pair (A', A):
    # both within 6.5: F1_post = 1; score = 0.75. Mean with the perfect volume: 0.875.
    assert (shifted["f1_pre"], shifted["f1_post"], shifted["score"]) == (0.5, 1.0, 0.75)
    assert (shifted["tp_pre"], shifted["fp_pre"], shifted["fn_pre"]) == (1, 1, 1)
    assert (shifted["tp_post"], shifted["fp_post"], shifted["fn_post"]) == (2, 0, 0)
    assert perfect["score"] == 1.0
    assert scores["mean"] == {"f1_pre": 0.75, "f1_post": 1.0, "score": 0.875, "n_volumes": 2}
    assert "0.7500" in result.stdout and "mean of 2 volumes" in result.stdout
    # a larger pre radius keeps B' -> B; its post (10, 40, 50) is 20 voxels from (10, 40, 70)
    _ok("evaluate", "--task", "synapse", tmp_path / "pred.csv", tmp_path / "truth.csv",
        "--pre-radius", "12", "--json", tmp_path / "s12.json")
    volume = _scores(tmp_path / "s12.json")["volumes"][0]
    assert (volume["f1_pre"], volume["f1_post"], volume["score"]) == (1.0, 0.5, 0.75)


def _pixel(image, y, x):
    return tuple(int(v) for v in image[y, x])


def test_overlay_colours(tmp_path):
    _tables(tmp_path)
    result = _ok("evaluate", "--task", "synapse", tmp_path / "pred.csv", tmp_path / "truth.csv",
                 "--overlay", tmp_path / "overlays", "--raw", f"{tmp_path}/raw.zarr/raw")
    # every point lies within 2 sections of z = 10: one section is drawn
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == ["synapses_z0010.png"]
    assert "synapses_z0010.png" in result.stdout
    image = np.asarray(Image.open(tmp_path / "overlays" / "synapses_z0010.png").convert("RGB"))
    blue, green, red, grey = (0, 0, 255), (0, 255, 0), (255, 0, 0), (128, 128, 128)
    assert image.shape == (64, 96, 3)
    assert _pixel(image, 10, 15) == blue    # pre A' true positive, filled
    assert _pixel(image, 40, 22) == green   # pre B' false positive, filled
    assert _pixel(image, 40, 10) == red     # pre B false negative, filled
    assert _pixel(image, 10, 10) == grey    # matched truth pre A is not drawn
    assert _pixel(image, 10, 47) == blue    # post (12, 10, 44) true positive: ring of radius 3
    assert _pixel(image, 10, 44) == grey    # ... hollow
    assert _pixel(image, 10, 76) == blue    # post (8, 10, 73) true positive
    assert _pixel(image, 40, 53) == green   # post of B' false positive
    assert _pixel(image, 40, 50) == grey
    assert _pixel(image, 40, 73) == red     # post of B false negative
    assert _pixel(image, 10, 40) == grey    # matched truth post not drawn
    assert _pixel(image, 60, 90) == grey


# ------------------------------------------------------------------------- bad point tables
@pytest.mark.parametrize("text,fragments", [
    ("kind,id,z,y,x\npre,0,1,2,3\n", ["line 1", "header"]),                       # wrong columns
    ("kind,id,pre_id,z,y,x\npre,0,,1,2,3\npost,0,7,1,2,4\n", ["line 3", "pre_id 7"]),  # no such pre
    ("kind,id,pre_id,z,y,x\npre,0,,1,2,3\npre,1,,1,70,3\n", ["line 3", "outside"]),  # y 70 >= 64
])
def test_bad_tables_write_nothing(tmp_path, text, fragments):
    _tables(tmp_path)
    (tmp_path / "bad.csv").write_text(text)
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", "--task", "synapse", tmp_path / "bad.csv",
                             tmp_path / "truth.csv", "--json", tmp_path / "s.json", "--overlay",
                             tmp_path / "overlays", "--raw", f"{tmp_path}/raw.zarr/raw"),
                      tmp_path / "bad.csv", *fragments)
    assert snapshot(tmp_path) == before


def test_evaluate_synapse_option_errors(tmp_path):
    _tables(tmp_path)
    pred, truth = tmp_path / "pred.csv", tmp_path / "truth.csv"
    assert_user_error(invoke("evaluate", "--task", "synapse", pred, truth, "--pair", "x.csv"),
                      "--pair", "PRED,TRUTH")
    assert_user_error(invoke("evaluate", "--task", "synapse", pred, truth, "--overlay",
                             tmp_path / "o"), "--raw")
    assert_user_error(invoke("evaluate", "--task", "bogus", pred, truth), "bogus")
    assert_user_error(invoke("evaluate", pred, truth, "--pair", f"{pred},{truth}"), "--task synapse")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ the whole synapse pipeline
def test_waspsyn_fixture_prepare_train_infer_detect_evaluate(tmp_path):
    """The challenge layout through every verb with the shipped recipe (tiny sizes, 2 iterations)."""
    files = make_layout(tmp_path / "wasp")
    data, run = tmp_path / "data", tmp_path / "run"
    _ok("prepare", "waspsyn", tmp_path / "wasp" / LABELED, data, "--as", "source")
    _ok("prepare", "waspsyn", files["target"].parent, data, "--as", "target", "--unlabeled")
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "waspsyn.toml"
    _ok("train", recipe, "--set", f'data.root="{data}"',
        "--set", 'data.source=[{raw = "source.zarr/raw", points = "source_points.csv"}]',
        "--set", 'data.target=[{raw = "target.zarr/raw"}]', "--set", f'train.output_dir="{run}"',
        "--set", "train.iterations=2",
        "--set", "train.warmup_iterations=1", "--set", "train.batch_size=2",
        "--set", "train.target_batch_size=2", "--set", "data.patch_size=[16,32,32]",
        "--set", "model.features=[4,4,4,4,4]", "--set", "method.block_size=[4,4,4]",
        "--set", "train.threads=1", "--set", "train.checkpoint_every=2")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"loss_sup", "loss_cl", "loss_cm", "confident_pre", "confident_post"} <= log[-1].keys()
    probs = f"{tmp_path}/pred.zarr/probabilities"
    _ok("infer", run / "last.pt", data / "target.zarr" / "raw", "-o", probs)
    _ok("detect", probs, "-o", tmp_path / "det.csv", "--pre-threshold", "0.5",
        "--post-threshold", "0.5")
    _ok("evaluate", "--task", "synapse", tmp_path / "det.csv", data / "source_points.csv",
        "--json", tmp_path / "scores.json")
    scores = _scores(tmp_path / "scores.json")["volumes"][0]
    assert 0.0 <= scores["f1_pre"] <= 1.0 and 0.0 <= scores["score"] <= 1.0
