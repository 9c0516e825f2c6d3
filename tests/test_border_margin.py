"""Pseudo-labels near the patch border are ignored (method.pseudo_margin), so a teacher that
predicts foreground along the window's edge cannot teach it to the student."""

from dataclasses import replace

import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.config.schema import MethodSection
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.method.pseudo_labels import ignore_margin
from masktwins_cli.training.run import train
from masktwins_cli.training.step import Batch, masktwins_losses
from tiny_data import write_pair, write_recipe


def test_ignore_margin_zeroes_each_border_band():
    weights = torch.ones(2, 8, 10)
    out = ignore_margin(weights, (2, 3))
    assert torch.equal(weights, torch.ones(2, 8, 10))  # a new tensor
    assert out[:, 2:6, 3:7].eq(1).all()
    assert out[:, :2].eq(0).all() and out[:, 6:].eq(0).all()
    assert out[:, :, :3].eq(0).all() and out[:, :, 7:].eq(0).all()
    assert out.sum() == 2 * 4 * 4
    channels = ignore_margin(torch.ones(1, 2, 4, 8, 8), (0, 1, 1))  # synapse (B, C, z, y, x)
    assert channels[:, :, :, 1:7, 1:7].eq(1).all() and channels.sum() == 2 * 4 * 36
    assert ignore_margin(weights, (0, 0)) is weights


class BottomEdgeTeacher(torch.nn.Module):
    """Predicts background everywhere except the last 4 rows of whatever window it is shown:
    the window-frame bias the border artifact came from."""

    def forward(self, x, stage_hook=None):
        fg = torch.full_like(x, -5.0)
        fg[..., -4:, :] = 5.0
        return torch.cat([-fg, fg], dim=1)


class Student(torch.nn.Module):
    """Free logits on the target views; a constant on the source batch, so that only the
    pseudo-label term reaches the parameters."""

    def __init__(self, size, source):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(1, 2, size, size))
        self.source = source

    def forward(self, x, stage_hook=None):
        if x is self.source:
            return torch.zeros(x.shape[0], 2, *x.shape[2:])
        return self.logits.expand(x.shape[0], -1, -1, -1) + 0 * x


@pytest.mark.parametrize("margin, learns_edge", [((), True), ((8, 8), False)])
def test_student_learns_the_teachers_edge_only_without_a_margin(margin, learns_edge):
    method = replace(MethodSection(), adain=False, confidence="threshold", lambda_cm=0.0,
                     pseudo_margin=margin)
    batch = Batch(torch.randn(2, 1, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long),
                  torch.randn(2, 1, 32, 32))
    student = Student(32, batch.source)
    masktwins_losses(student, BottomEdgeTeacher(), batch, method,
                     torch.Generator().manual_seed(0))["loss"].backward()
    edge_grad = student.logits.grad[0, 1, -4:].abs().sum()
    assert (edge_grad > 0) == learns_edge
    assert student.logits.grad[0, 1, 8:-8, 8:-8].abs().sum() > 0  # the interior still teaches


def test_recipe_checks_the_margin(tmp_path):
    data = write_pair(tmp_path / "data")
    with pytest.raises(MaskTwinsError, match="method.pseudo_margin"):
        load_recipe(write_recipe(tmp_path / "a.toml", data, tmp_path / "a",
                                 method={"pseudo_margin": [4, 4, 4]}))
    with pytest.raises(MaskTwinsError, match="method.pseudo_margin"):
        load_recipe(write_recipe(tmp_path / "b.toml", data, tmp_path / "b",
                                 method={"pseudo_margin": [16, 4]}))
    recipe = load_recipe(write_recipe(tmp_path / "c.toml", data, tmp_path / "c",
                                      method={"pseudo_margin": [4, 4]}))
    assert recipe.method.pseudo_margin == (4, 4)


class Spy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, stage_hook=None):
        self.seen.append(x.shape)
        return torch.cat([x, -x], dim=1)


def test_teacher_context_teacher_sees_more_student_learns_the_centre(tmp_path):
    method = replace(MethodSection(), adain=False, teacher_context=(8, 8))
    batch = Batch(torch.randn(2, 1, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long),
                  torch.randn(2, 1, 48, 48))
    teacher, student = Spy(), Spy()
    masktwins_losses(student, teacher, batch, method, torch.Generator().manual_seed(0))
    assert teacher.seen == [(2, 1, 48, 48)]
    assert student.seen[-1] == (4, 1, 32, 32)  # the twins of the 32x32 centre


def test_teacher_context_replaces_the_edge_label_with_the_teachers_interior():
    """With context the student's last rows are labelled from the teacher's interior
    (background here): the gradient pushes the student's edge towards background."""
    method = replace(MethodSection(), adain=False, confidence="threshold", lambda_cm=0.0,
                     teacher_context=(8, 8))
    batch = Batch(torch.randn(2, 1, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long),
                  torch.randn(2, 1, 48, 48))
    student = Student(32, batch.source)
    masktwins_losses(student, BottomEdgeTeacher(), batch, method,
                     torch.Generator().manual_seed(0))["loss"].backward()
    assert (student.logits.grad[0, 1, -4:] > 0).all()  # raising foreground there costs


def test_training_with_teacher_context_runs(tmp_path):
    data = write_pair(tmp_path / "data", shape=(4, 48, 48))
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                      method={"teacher_context": [8, 8], "pseudo_margin": [2, 2]},
                                      train={"iterations": 2}))
    assert train(recipe).final_record["loss"] > 0
    with pytest.raises(MaskTwinsError, match="method.teacher_context"):
        load_recipe(write_recipe(tmp_path / "b.toml", data, tmp_path / "b",
                                 method={"teacher_context": [4, 4]}))


def test_a_target_smaller_than_the_teachers_crop_names_the_context(tmp_path):
    data = write_pair(tmp_path / "data")  # 32 x 32 slices
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                      method={"teacher_context": [8, 8]}))
    with pytest.raises(MaskTwinsError, match="method.teacher_context"):
        train(recipe)


@pytest.mark.parametrize("name", ["vnc3_to_cdeep3m.toml", "synthetic_mito2d.toml",
                                  "vnc3_to_lucchi.toml", "mitoem_r_to_h.toml"])
def test_shipped_2d_recipes_do_not_teach_the_teachers_window_edge(name):
    """The border artifact (foreground along the last rows of every slice after MaskTwins on the
    real pair) came from pseudo-labels at the teacher's window edge; the shipped 2-D recipes
    must label the student's whole patch from the teacher's interior."""
    from masktwins_cli.experiments.demo import shipped_recipe

    recipe = load_recipe(shipped_recipe(name))
    method = replace(recipe.method, adain=False, lambda_cm=0.0, confidence="threshold")
    size = recipe.data.patch_size[0] // 4  # a smaller patch keeps the test light
    context = recipe.method.teacher_context
    assert context and min(context) >= 8
    big = size + 2 * context[0]
    batch = Batch(torch.randn(1, 1, size, size), torch.zeros(1, size, size, dtype=torch.long),
                  torch.randn(1, 1, big, big))
    student = Student(size, batch.source)
    masktwins_losses(student, BottomEdgeTeacher(), batch, method,
                     torch.Generator().manual_seed(0))["loss"].backward()
    assert (student.logits.grad[0, 1, -4:] >= 0).all()  # never pulled towards foreground


def test_margins_may_differ_at_each_end_of_an_axis():
    """DAFormer's Cityscapes margins: (top, bottom, left, right) = (30, 240, 30, 30) on its
    crops; here (1, 3, 2, 0) on an 8 x 8 patch."""
    out = ignore_margin(torch.ones(2, 8, 8), (1, 3, 2, 0), spatial_dims=2)
    kept = out[0] > 0
    assert kept[1:5, 2:].all() and not kept[0].any() and not kept[5:].any()
    assert not kept[:, :2].any() and kept.sum() == 4 * 6
    from masktwins_cli.config.recipe import recipe_from_dict
    from masktwins_cli.errors import MaskTwinsError

    recipe_from_dict({"method": {"pseudo_margin": [30, 120, 30, 30]}})  # 256 x 256 patches
    with pytest.raises(MaskTwinsError, match="leaves no pseudo"):
        recipe_from_dict({"method": {"pseudo_margin": [30, 240, 0, 0]}})
    with pytest.raises(MaskTwinsError, match="needs 2"):
        recipe_from_dict({"method": {"pseudo_margin": [1, 2, 3]}})
