"""A torchrun worker for tests/test_train_distributed.py (a script, not a test module).

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/ddp_worker.py \
        FULL_RECIPE SPLIT_RECIPE REPORT_DIR

In one gloo process group, every rank:
1. checks that the DDP gradients of one MaskTwins step (several student forwards: teacher pass,
   source with AdaIN, masked views; one backward) equal the mean over ranks of the gradients the
   plain network gets from the same batch and masks;
2. trains FULL_RECIPE, rank 0 copying its step-2 checkpoint into SPLIT_RECIPE's run folder;
3. resumes SPLIT_RECIPE from that checkpoint to the end.
Each rank writes REPORT_DIR/grad_rank<r>.json; weight digests go to REPORT_DIR/{full,split}/.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.training.distributed import DIGEST_ENV, from_environment
from masktwins_cli.training.run import build_run, train


def gradient_check(recipe_path: Path, scratch: Path) -> dict:
    """Max |DDP gradient - mean of the ranks' plain gradients| over all parameters."""
    ctx = from_environment()
    run = build_run(load_recipe(recipe_path), scratch, ctx)
    plain = copy.deepcopy(run.model)
    rngs = (run.state.data_rng.bit_generator.state, run.state.mask_generator.get_state(),
            torch.get_rng_state())
    run.losses(0)["loss"].backward()
    ddp_grads = [p.grad.clone() for p in run.model.parameters()]
    run.state.data_rng.bit_generator.state = rngs[0]
    run.state.mask_generator.set_state(rngs[1])
    torch.set_rng_state(rngs[2])
    run.model, run.ddp = plain, None  # the same step through the plain network
    run.losses(0)["loss"].backward()
    local = [p.grad.clone() for p in plain.parameters()]
    for g in local:
        dist.all_reduce(g)
        g /= ctx.world_size
    diff = max(float((a - b).abs().max()) for a, b in zip(ddp_grads, local))
    scale = max(float(g.abs().max()) for g in local)
    own = max(float((a - p.grad).abs().max()) for a, p in zip(ddp_grads, plain.parameters()))
    return {"max_diff": diff, "scale": scale, "differs_from_own": own}


def main(full: Path, split: Path, report: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        check = gradient_check(full, report / "scratch")
        (report / f"grad_rank{rank}.json").write_text(json.dumps(check))
        split_out = Path(load_recipe(split).train.output_dir)

        def snapshot(step: int, total: int, record: dict) -> None:
            if step == 3:  # the step-2 checkpoint is on disk: an interrupted run, in effect
                shutil.copytree(Path(load_recipe(full).train.output_dir), split_out)

        os.environ[DIGEST_ENV] = str(report / "full")
        train(load_recipe(full), report=snapshot)
        os.environ[DIGEST_ENV] = str(report / "split")
        train(load_recipe(split), resume=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:4]))
