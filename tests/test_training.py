"""Training: checkpoints round-trip, resume equals an uninterrupted run, every term logged."""

from pathlib import Path

import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.checkpoints import load_checkpoint
from masktwins_cli.training.metrics_log import read_log
from masktwins_cli.training.run import train
from tiny_data import Interrupt, interrupt_after, losses_by_step, write_pair, write_recipe


@pytest.fixture()
def data(tmp_path):
    return write_pair(tmp_path / "data")


def test_all_loss_terms_logged_and_checkpoint_round_trip(tmp_path, data):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run"))
    result = train(recipe)
    records = read_log(result.output_dir / "log.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for key in ("loss", "loss_sup", "loss_cl", "loss_cm", "confident_fraction", "pseudo_foreground",
                "teacher_confidence", "lr"):
        assert all(key in r for r in steps), key
    assert all(0.5 <= r["teacher_confidence"] <= 1.0 for r in steps)  # two classes
    payload = load_checkpoint(result.last_checkpoint)
    assert payload["step"] == 4
    assert payload["recipe"]["train"]["iterations"] == 4
    assert payload["teacher"] is not None
    assert (result.output_dir / "recipe.toml").read_text().count("[method]") == 1
    # the saved recipe is a valid recipe equal to the one trained
    assert load_recipe(result.output_dir / "recipe.toml") == recipe


def test_resume_equals_uninterrupted_run(tmp_path, data):
    full = load_recipe(write_recipe(tmp_path / "a.toml", data, tmp_path / "full"))
    train(full)
    split = load_recipe(write_recipe(tmp_path / "b.toml", data, tmp_path / "split"))
    with pytest.raises(Interrupt):
        train(split, report=interrupt_after(2))
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 2
    with pytest.raises(MaskTwinsError, match="--resume"):
        train(split)  # never silently restarts over an existing run
    train(split, resume=True)
    assert losses_by_step(tmp_path / "full" / "log.jsonl") == \
        losses_by_step(tmp_path / "split" / "log.jsonl")
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["teacher"]:
        assert torch.equal(a["teacher"][key], b["teacher"][key]), key


@pytest.mark.parametrize("method", [
    {"mask_mode": "random"}, {"mask_mode": "single"}, {"mask_mode": "none"},
    {"ema": False}, {"adain": False}, {"num_views": 3}, {"confidence": "quality"},
    {"consistency_on": "probabilities"}, {"adapt": False}])
def test_ablation_switches_train(tmp_path, data, method):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run", method=method,
                                      train={"iterations": 2}))
    result = train(recipe)
    last = losses_by_step(result.output_dir / "log.jsonl")[2]
    assert torch.isfinite(torch.tensor(last["loss"]))
    if method.get("adapt") is False:
        assert "loss_cl" not in last
    else:
        assert last["loss_cl"] >= 0
    if method.get("mask_mode") in ("single", "none"):
        assert last["loss_cm"] == 0.0


def test_adapt_start_trains_source_only_first(tmp_path, data):
    """method.adapt_start = 2: steps 1-2 equal a NoAdapt run (no target drawn, no target terms),
    steps 3-4 add the target terms; the teacher has followed the student all along."""
    warm = load_recipe(write_recipe(tmp_path / "w.toml", data, tmp_path / "warm",
                                    method={"adapt_start": 2}, train={"log_every": 1}))
    plain = load_recipe(write_recipe(tmp_path / "p.toml", data, tmp_path / "plain",
                                     method={"adapt": False}, train={"log_every": 1}))
    train(warm)
    train(plain)
    warm_log = losses_by_step(tmp_path / "warm" / "log.jsonl")
    plain_log = losses_by_step(tmp_path / "plain" / "log.jsonl")
    for step in (1, 2):
        assert warm_log[step] == plain_log[step]
        assert "loss_cl" not in warm_log[step]
    for step in (3, 4):
        assert {"loss_cl", "loss_cm", "confident_fraction"} <= set(warm_log[step])
        assert warm_log[step]["loss"] != plain_log[step]["loss"]
    teacher = load_checkpoint(tmp_path / "warm" / "last.pt")["teacher"]
    assert teacher is not None


def test_adapt_start_must_leave_adaptation_steps(tmp_path, data):
    with pytest.raises(MaskTwinsError, match=r"method.adapt_start.*train.iterations \(4\)"):
        load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                 method={"adapt_start": 4}))
    # a NoAdapt run ignores it
    load_recipe(write_recipe(tmp_path / "n.toml", data, tmp_path / "run",
                             method={"adapt_start": 4, "adapt": False}))


def test_validation_keeps_best_checkpoint(tmp_path, data):
    recipe = load_recipe(write_recipe(
        tmp_path / "r.toml", data, tmp_path / "run",
        data={"val_raw": "target.zarr/raw", "val_labels": "target.zarr/labels"},
        train={"iterations": 4, "val_every": 2}))
    result = train(recipe)
    vals = [r for r in read_log(result.output_dir / "log.jsonl") if "val_iou" in r]
    assert [r["step"] for r in vals] == [2, 4]
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
    assert result.best_score == max(r["val_iou"] for r in vals)


@pytest.mark.slow  # about a minute of torch.compile on 2 CPU cores
def test_compiled_training_follows_the_eager_run(tmp_path, data):
    eager = load_recipe(write_recipe(tmp_path / "e.toml", data, tmp_path / "eager"))
    compiled = load_recipe(write_recipe(tmp_path / "c.toml", data, tmp_path / "compiled",
                                        train={"compile": True}))
    train(eager)
    result = train(compiled)
    a = losses_by_step(tmp_path / "eager" / "log.jsonl")
    b = losses_by_step(tmp_path / "compiled" / "log.jsonl")
    assert a.keys() == b.keys()
    for step in a:  # same data, masks and maths; only kernel fusion differs
        for key in ("loss", "loss_sup", "loss_cl", "loss_cm"):
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-3, abs=1e-5), (step, key)
    # checkpoints hold the plain module's weights (no torch.compile prefix)
    assert not any(k.startswith("_orig_mod") for k in load_checkpoint(result.last_checkpoint)["model"])


def test_resume_drops_a_log_line_torn_by_the_crash(tmp_path, data):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run"))
    with pytest.raises(Interrupt):
        train(recipe, report=interrupt_after(2))
    log = tmp_path / "run" / "log.jsonl"
    with log.open("a") as handle:
        handle.write('{"step": 3, "loss": 0.5, "lo')  # killed mid-line
    train(recipe, resume=True)
    steps = [r["step"] for r in read_log(log) if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_failed_checkpoint_write_is_one_error_naming_the_file(tmp_path, monkeypatch):
    from masktwins_cli.io import checkpoints

    target = tmp_path / "last.pt"
    checkpoints.save_checkpoint(target, {"step": 1})
    before = target.read_bytes()

    def disk_full(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(MaskTwinsError, match="cannot write checkpoint .*last.pt"):
        checkpoints.save_checkpoint(target, {"step": 2})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
