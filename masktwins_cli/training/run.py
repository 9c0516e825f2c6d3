"""``masktwins train``: build the parts of a run from a validated recipe and run the loop."""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config.recipe import recipe_to_dict, recipe_to_toml
from ..config.schema import Recipe
from ..errors import MaskTwinsError
from ..io.atomic import write_text_atomic
from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..method.teacher import ema_alpha_at, make_teacher, update_ema
from ..runtime.device import autocast_for, resolve_device
from ..runtime.networks import build_from_recipe, load_pretrained_encoder
from .batches import draw_batch, memory_format
from .compatibility import check_resume_compatible
from .data import TrainingData, open_training_data
from .distributed import (
    Distributed,
    barrier,
    broadcast_buffers,
    from_environment,
    gather_objects,
    mean_over_ranks,
    process_group,
    rank_device,
    wrap_student,
    write_rank_digest,
)
from .loop import LoopParts, LoopSchedule, run_loop
from .metrics_log import JsonlLog
from .step import Objective, masktwins_losses, objective_for
from .validation import Validator

log = logging.getLogger(__name__)

Reporter = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind."""

    output_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    final_record: dict
    best_score: float | None
    iterations: int
    seconds: float
    device: str


@dataclass
class RunState:
    """Mutable state the loop's parts share: RNGs and the best validation score."""

    data_rng: np.random.Generator
    mask_generator: torch.Generator
    best_score: float | None = None
    last_score: float | None = None


def _optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam(W) over parameter groups (see :func:`parameter_groups`); the loop sets each
    group's learning rate to the schedule's times its ``lr_mult``."""
    t = recipe.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    fused = next(model.parameters()).device.type == "cuda"  # one kernel for the whole update
    groups = parameter_groups(model, t.lr, t.weight_decay, t.decoder_lr_mult, t.norm_weight_decay)
    return cls(groups, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)


def parameter_groups(model: torch.nn.Module, lr: float, weight_decay: float,
                     decoder_lr_mult: float = 1.0, norm_weight_decay: bool = True) -> list[dict]:
    """The parameters by (decoder or not, normalisation layer or not): decoder parameters (the
    module ``decoder``, or the network's ``decoder_prefixes``: HRDA's attention head too) learn
    at ``decoder_lr_mult`` x ``lr``; normalisation layers get no weight decay unless
    ``norm_weight_decay`` (DAFormer: none on norms). Empty groups are
    left out; one group when nothing differs (the optimiser state of older runs still fits)."""
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)
    in_norm = {id(p) for module in model.modules() if isinstance(module, norms)
               for p in module.parameters(recurse=False)}
    groups: dict[tuple[bool, bool], list] = {}
    prefixes = tuple(getattr(model, "decoder_prefixes", ("decoder.",)))
    for name, parameter in model.named_parameters():
        decoder = name.startswith(prefixes)
        key = (decoder and decoder_lr_mult != 1.0, id(parameter) in in_norm and not norm_weight_decay)
        groups.setdefault(key, []).append(parameter)
    return [{"params": params, "lr": lr * (decoder_lr_mult if decoder else 1.0),
             "lr_mult": decoder_lr_mult if decoder else 1.0,
             "weight_decay": 0.0 if no_decay else weight_decay}
            for (decoder, no_decay), params in groups.items()]


def _rng_payload(state: RunState) -> dict:
    return {"numpy": state.data_rng.bit_generator.state, "mask": state.mask_generator.get_state(),
            "torch": torch.get_rng_state()}


def _restore_rng(state: RunState, payload: dict) -> None:
    state.data_rng.bit_generator.state = payload["numpy"]
    state.mask_generator.set_state(payload["mask"])
    torch.set_rng_state(payload["torch"])


def _rank_rng(payload: dict, rank: int) -> dict:
    """This rank's RNG states in a checkpoint (``rng_ranks`` exists for distributed runs)."""
    ranks = payload.get("rng_ranks")
    return ranks[rank] if ranks else payload["rng"]


def check_world_size(payload: dict, world_size: int, path: Path) -> None:
    """Resuming is exact only with the world size that wrote the checkpoint (per-rank RNGs)."""
    saved = int(payload.get("world_size", 1))
    if saved != world_size:
        raise MaskTwinsError(f"checkpoint {path} was written by {saved} training process(es), this "
                             f"run has {world_size}: resume with torchrun --nproc_per_node={saved}"
                             + (" (or without torchrun)" if saved == 1 else ""))


def _prepare_output(recipe: Recipe, resume: bool, world_size: int = 1) -> tuple[Path, dict | None]:
    out = Path(recipe.train.output_dir)
    last = out / "last.pt"
    if resume:
        if not last.exists():
            if _started_without_checkpoint(out, recipe):
                log.info("%s: the run was stopped before its first checkpoint; starting it over",
                         out)
                return out, None
            raise MaskTwinsError(f"--resume: no checkpoint {last} to resume from")
        payload = load_checkpoint(last)
        check_resume_compatible(payload["recipe"], recipe_to_dict(recipe), last)
        check_world_size(payload, world_size, last)
        return out, payload
    if last.exists():
        raise MaskTwinsError(f"run folder {out} already holds a checkpoint: pass --resume to continue "
                             "it, or choose another train.output_dir (nothing was overwritten)")
    for name in ("recipe.toml", "log.jsonl"):  # an earlier run's files, or the input recipe itself
        if (out / name).exists():
            raise MaskTwinsError(f"{out / name} exists (an earlier run's, or the recipe given): a "
                                 "new run would replace it; choose another train.output_dir (or "
                                 "--output-dir), or remove it (nothing was overwritten)")
    return out, None


def _started_without_checkpoint(out: Path, recipe: Recipe) -> bool:
    """Whether ``out`` holds only what this very run writes before its first checkpoint (its
    resolved recipe.toml, log.jsonl, hidden temporaries of writes a kill interrupted), so
    --resume may start it over."""
    try:
        names = [path.name for path in out.iterdir()]
        own_recipe = "recipe.toml" not in names or \
            (out / "recipe.toml").read_text(encoding="utf-8") == recipe_to_toml(recipe)
    except (OSError, UnicodeDecodeError):
        return False
    return own_recipe and all(name.startswith(".") or name in ("recipe.toml", "log.jsonl")
                              for name in names)


@dataclass
class Run:
    """The parts of one training run; its methods are what the loop calls (see LoopParts).

    ``model`` is the plain student (checkpoints, EMA, validation); ``ddp`` wraps it under
    torchrun and is what the loss forwards go through (see :mod:`.distributed`).
    """

    recipe: Recipe
    out: Path
    device: torch.device
    data: TrainingData
    model: torch.nn.Module
    teacher: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    state: RunState
    validator: Validator | None
    jsonl: JsonlLog | None = None
    report: Reporter | None = None
    dist: Distributed = field(default_factory=Distributed)
    ddp: torch.nn.Module | None = None
    imagenet: torch.nn.Module | None = None  # frozen ImageNet network (method.feature_distance)

    compiled: dict = field(default_factory=dict)

    @property
    def student(self) -> torch.nn.Module:
        """The module the training forwards and the optimiser step go through."""
        return self._forward("student", self.ddp if self.ddp is not None else self.model)

    @property
    def labeler(self) -> torch.nn.Module:
        """The pseudo-labelling network: the EMA teacher, or the student itself without EMA."""
        if self.teacher is None:
            return self._forward("self-labeler", self.model)
        return self._forward("teacher", self.teacher)

    def _forward(self, name: str, module: torch.nn.Module) -> torch.nn.Module:
        """``module``, torch.compile'd once when ``train.compile`` is on (weights stay shared)."""
        if not self.recipe.train.compile:
            return module
        if name not in self.compiled:
            self.compiled[name] = torch.compile(module)
        return self.compiled[name]

    def losses(self, step: int) -> dict[str, torch.Tensor]:
        r = self.recipe
        self.model.train()
        adapting = step >= r.method.adapt_start  # before: source-only warm-up, no target drawn
        batch = draw_batch(self.data, r, self.state.data_rng, self.device, with_target=adapting)
        with autocast_for(self.device, r.train.amp):
            # views in one forward only where normalisation is per sample (not BatchNorm)
            per_sample = r.model.norm == "instance" and r.model.name != "segformer"
            return masktwins_losses(self.student, self.labeler, batch, r.method, self.state.mask_generator,
                                    batched_views=per_sample, objective=self.objective,
                                    ignore_label=r.data.ignore_label,
                                    reference=self.imagenet_features, num_classes=r.model.num_classes)

    def imagenet_features(self, images: torch.Tensor) -> torch.Tensor | None:
        """The frozen ImageNet encoder's deepest features (None without the feature distance)."""
        if self.imagenet is None:
            return None
        with autocast_for(self.device, self.recipe.train.amp):
            return self.imagenet.encode(images)[-1]

    @functools.cached_property
    def objective(self) -> Objective:
        """The task's loss maths, with the class-weight tensor on the device: built once."""
        r = self.recipe
        weights = (torch.tensor(r.method.class_weights, dtype=torch.float32, device=self.device)
                   if r.method.class_weights else None)
        return objective_for(r.model.task, r.method, weights, r.data.cube_size, r.data.ignore_label)

    def after_step(self, step: int) -> None:
        broadcast_buffers(self.model, self.dist)
        if self.teacher is not None:
            update_ema(self.teacher, self.model, ema_alpha_at(step + 1, self.recipe.method.ema_alpha))

    def validate(self, step: int) -> dict:
        if self.validator is None:
            return {}
        scores = self.validator(self.model)
        self.state.last_score = scores[self.validator.score_key]
        return scores

    def checkpoint(self, step: int, final: bool) -> None:
        """last.pt always; best.pt when the latest validation beat the best so far (rank 0 writes,
        with every rank's RNG states)."""
        state = self.state
        rngs = gather_objects(_rng_payload(state), self.dist)
        if not self.dist.main:
            return
        improved = state.last_score is not None and (state.best_score is None
                                                     or state.last_score > state.best_score)
        if improved:
            state.best_score = state.last_score
        payload = {"recipe": recipe_to_dict(self.recipe), "model": self.model.state_dict(),
                   "teacher": None if self.teacher is None else self.teacher.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "scaler": None, "step": step,
                   "rng": rngs[0], "best_score": state.best_score,
                   "world_size": self.dist.world_size}
        if self.dist.enabled:
            payload["rng_ranks"] = rngs
        save_checkpoint(self.out / "last.pt", payload)
        if improved:
            save_checkpoint(self.out / "best.pt", payload)
        state.last_score = None

    def on_record(self, step: int, record: dict) -> None:
        """Log a record (rank 0); loss terms become their mean over the ranks, in place."""
        if "loss" in record:
            terms = {k: v for k, v in record.items() if k not in ("step", "lr", "seconds")}
            record.update(mean_over_ranks(terms, self.dist, self.device))
        if self.dist.main and len(record) > 1:
            self.jsonl.write(record)
            if self.report is not None:
                self.report(step, self.recipe.train.iterations, record)

    def restore(self, payload: dict) -> int:
        """Load a checkpoint's weights, optimiser and RNG states; returns its step."""
        self.model.load_state_dict(payload["model"])
        if self.teacher is not None:
            self.teacher.load_state_dict(payload["teacher"])
        self.optimizer.load_state_dict(payload["optimizer"])
        _restore_rng(self.state, _rank_rng(payload, self.dist.rank))
        self.state.best_score = payload.get("best_score")
        return int(payload["step"])


def build_run(recipe: Recipe, out: Path, ctx: Distributed | None = None,
              device: torch.device | None = None, fresh: bool = True) -> Run:
    """Open the data and build the networks (seeded; a ``fresh`` run loads
    ``model.pretrained``, a resumed one its checkpoint instead); nothing is written yet.

    Every rank builds the same initial weights; data, mask and dropout RNGs are per rank
    (``ctx.seed``). Under torchrun the process group must already exist (see :func:`train`).
    """
    ctx = ctx or Distributed()
    device = device or rank_device(resolve_device(recipe.train.device), ctx)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed = recipe.train.seed
    torch.manual_seed(seed)
    data = open_training_data(recipe)
    model = build_from_recipe(recipe)
    if fresh and recipe.model.pretrained:
        load_pretrained_encoder(model, recipe.model.pretrained, recipe.model.encoder)
    imagenet = imagenet_network(recipe, device, model if fresh else None)
    model = model.to(device, memory_format=memory_format(recipe, device))
    teacher = make_teacher(model) if recipe.method.adapt and recipe.method.ema else None
    if ctx.rank:
        torch.manual_seed(ctx.seed(seed))  # dropout differs per rank; rank 0 keeps its stream
    generator = torch.Generator(device="cpu").manual_seed(ctx.seed(seed) + 1)
    state = RunState(np.random.default_rng(ctx.seed(seed)), generator)
    validator = Validator.from_recipe(recipe, device) if ctx.main else None
    return Run(recipe, out, device, data, model, teacher, _optimizer(recipe, model), state,
               validator, dist=ctx, ddp=wrap_student(model, ctx, device),
               imagenet=imagenet)


def imagenet_network(recipe: Recipe, device: torch.device,
                     pretrained: torch.nn.Module | None = None) -> torch.nn.Module | None:
    """The frozen network holding ``model.pretrained``'s ImageNet encoder, for the feature
    distance (None when it is off): a copy of ``pretrained`` (a fresh student that has just
    loaded the file), else (a resumed run) built and loaded from the file."""
    if recipe.method.feature_distance <= 0:
        return None
    if pretrained is not None:
        network = copy.deepcopy(pretrained)
    else:
        network = build_from_recipe(recipe)
        load_pretrained_encoder(network, recipe.model.pretrained, recipe.model.encoder)
    return network.eval().requires_grad_(False).to(device)


def _start_outputs(run: Run, resumed_step: int | None, report: Reporter | None) -> None:
    """Rank 0: the run folder, its recipe.toml and log.jsonl, and the progress callback."""
    if not run.dist.main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run.out / "recipe.toml", recipe_to_toml(run.recipe))
    run.jsonl = JsonlLog(run.out / "log.jsonl", resume_step=resumed_step)
    run.report = report


def train(recipe: Recipe, resume: bool = False, report: Reporter | None = None) -> TrainResult:
    """Train a model as the recipe says; returns where the checkpoints are and the final scores.

    Under torchrun (WORLD_SIZE > 1) this process is one rank of a DistributedDataParallel run:
    it joins the process group here and leaves it on return or error (see :mod:`.distributed`).
    """
    ctx = from_environment()
    device = rank_device(resolve_device(recipe.train.device), ctx)
    with process_group(ctx, device):
        return _train(recipe, resume, report, ctx, device)


def _train(recipe: Recipe, resume: bool, report: Reporter | None, ctx: Distributed,
           device: torch.device) -> TrainResult:
    started = time.perf_counter()
    out, payload = _prepare_output(recipe, resume, ctx.world_size)
    run = build_run(recipe, out, ctx, device, fresh=payload is None)
    start = run.restore(payload) if payload is not None else 0
    _start_outputs(run, start if payload is not None else None, report)
    t = recipe.train
    plan = LoopSchedule(start, t.iterations, t.lr, t.poly_power, t.warmup_iterations, t.grad_clip,
                        t.log_every, t.checkpoint_every, t.val_every)
    history = run_loop(LoopParts(run.student, run.optimizer, run.losses, run.after_step,
                                 run.checkpoint, run.validate, run.on_record), plan)
    write_rank_digest(ctx, run.model, run.teacher)
    barrier(ctx, run.device)  # rank 0 has written last.pt before any rank returns
    best = out / "best.pt"
    return TrainResult(out, out / "last.pt", best if best.exists() else None,
                       history[-1] if history else {}, run.state.best_score, t.iterations,
                       time.perf_counter() - started, str(run.device))
