"""Terminal presentation for the CLI: progress bars on a terminal, plain lines in batch logs."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

SHOWN_TERMS = ("loss", "loss_sup", "loss_cl", "loss_cm", "confident_fraction", "lr")


def _fmt(record: dict, keys=SHOWN_TERMS) -> str:
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), (int, float)))


class TrainProgress:
    """A rich progress bar when stderr is a terminal; otherwise one line per logged iteration."""

    def __init__(self, total: int, log_every: int, label: str = "train"):
        self.total = total
        self.label = label
        self.console = Console(stderr=True)
        self.interactive = self.console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.started = time.perf_counter()

    def __enter__(self) -> TrainProgress:
        if self.interactive:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[terms]}"), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total, terms="")
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, total: int, record: dict) -> None:
        """Called by the training loop for every logged record (losses or validation)."""
        validation = {k: v for k, v in record.items() if k.startswith("val_")}
        if self.progress is not None:
            self.progress.update(self.task, completed=step, total=total,
                                 terms=_fmt(record) if not validation else "")
            if validation:
                self.progress.console.print(f"step {step}: " + _fmt(validation, tuple(validation)))
            return
        elapsed = time.perf_counter() - self.started
        text = _fmt(validation, tuple(validation)) if validation else _fmt(record)
        print(f"[{self.label}] step {step}/{total} {text} elapsed={elapsed:.0f}s",
              file=sys.stderr, flush=True)


class StageLog:
    """Prints the demo's stages (one line each) and forwards training progress."""

    def __init__(self):
        self.console = Console(stderr=True)
        self.current: TrainProgress | None = None

    def __enter__(self) -> StageLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.current is not None:
            self.current.__exit__(*exc)

    def update(self, stage: str, step: int | None = None, total: int | None = None,
               record: dict | None = None) -> None:
        if step is None:
            if self.current is not None:
                self.current.__exit__(None, None, None)
                self.current = None
            self.console.print(f"[bold cyan]>>[/] {stage}")
            return
        if self.current is None or self.current.label != stage:
            self.current = TrainProgress(total or 0, 1, label=stage).__enter__()
        self.current.update(step, total or 0, record or {})


def print_scores(result) -> None:
    """A table of the evaluation scores (binary, or per class for a K-class evaluation)."""
    if hasattr(result.scores, "miou"):
        print_class_scores(result)
        return
    s = result.scores
    table = Table(title=f"{result.prediction} vs {result.ground_truth} ({s.mode}, threshold {s.threshold})")
    for column in ("IoU", "F1", "MCC", "mAP", "slices"):
        table.add_column(column, justify="right")
    ap = "n/a" if s.ap is None else f"{s.ap:.4f}"
    table.add_row(f"{s.iou:.4f}", f"{s.f1:.4f}", f"{s.mcc:.4f}", ap, str(s.n_slices))
    Console().print(table)


def print_class_scores(result) -> None:
    """One row per class (IoU, truth voxels), then mIoU (over the chosen classes) and pixel
    accuracy."""
    s = result.scores
    ignored = "" if result.ignore is None else f", {result.ignore} ignored"
    table = Table(title=f"{result.prediction} vs {result.ground_truth} ({s.num_classes} classes, "
                        f"{result.source}{ignored})")
    for column, justify in (("class", "right"), ("IoU", "right"), ("truth voxels", "right"),
                            ("in mIoU", "center")):
        table.add_column(column, justify=justify)
    voxels = s.matrix.sum(axis=1)
    for c, iou in enumerate(s.iou):
        table.add_row(str(c), "n/a" if iou is None else f"{iou:.4f}", f"{int(voxels[c]):,}",
                      "yes" if c in s.classes else "")
    miou = "n/a" if s.miou is None else f"{s.miou:.4f}"
    accuracy = "n/a" if s.pixel_accuracy is None else f"{s.pixel_accuracy:.4f}"
    table.add_row("mIoU", miou, "", f"{len(s.classes)} classes")
    table.add_row("pixel acc.", accuracy, f"{int(voxels.sum()):,}", "")
    Console().print(table)
    if getattr(result, "protocol", None):
        print_protocol_row(result.protocol)


SHORT_NAMES = {"sidewalk": "sidew.", "building": "build.", "traffic light": "light",
               "traffic sign": "sign", "vegetation": "veget.", "motorcycle": "mbike",
               "bicycle": "bike"}


def print_protocol_row(figures: dict) -> None:
    """A benchmark's figures as the papers lay them out, IoU in %, as a Markdown table (it
    pastes into a README and keeps every column on a narrow terminal): SYNTHIA -> Cityscapes,
    the 13 classes, mIoU13, mIoU16 (Table 1)."""
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.1f}"

    names = [SHORT_NAMES.get(name, name) for name in figures["table"]] + ["mIoU13", "mIoU16"]
    values = [percent(v) for v in figures["table"].values()]
    values += [percent(figures["miou13"]), percent(figures["miou16"])]
    Console().print("SYNTHIA -> Cityscapes, the papers' Table 1 layout (IoU %):", highlight=False)
    for row in (names, ["---"] * len(names), values):
        Console(width=400).print("| " + " | ".join(row) + " |", highlight=False, soft_wrap=True)


def print_synapse_scores(result) -> None:
    """The WASP-SYN scores: one row per volume, then the mean over volumes."""
    first = result.volumes[0].scores
    table = Table(title=f"Synapse detection (WASP-SYN rules, radii pre {first.pre_radius:g}, "
                        f"post {first.post_radius:g} voxels)")
    table.add_column("prediction vs truth")
    for column in ("F1_pre", "F1_post", "score", "pre TP/FP/FN", "post TP/FP/FN"):
        table.add_column(column, justify="right")
    for volume in result.volumes:
        s = volume.scores
        table.add_row(f"{volume.prediction} vs {volume.ground_truth}", f"{s.f1_pre:.4f}",
                      f"{s.f1_post:.4f}", f"{s.score:.4f}", f"{s.tp_pre}/{s.fp_pre}/{s.fn_pre}",
                      f"{s.tp_post}/{s.fp_post}/{s.fn_post}")
    if len(result.volumes) > 1:
        m = result.mean
        table.add_row(f"mean of {m.n_volumes} volumes", f"{m.f1_pre:.4f}", f"{m.f1_post:.4f}",
                      f"{m.score:.4f}", "", "")
    console = Console()
    (console if console.is_terminal else Console(width=160)).print(table)  # logs: keep paths whole
    for path in result.overlays:
        print(f"overlay: {path}")


SINGLE_SEED_NOTE = (
    "One seed cannot rank NoAdapt and MaskTwins: each seed draws new data and a new start, and "
    "the same seed gives other figures on another processor. The README's table averages 5 "
    "seeds; for your own mean run e.g. --seed 0 --seed 1 --seed 2 --seed 3 --seed 4.")


def print_demo_table(result) -> None:
    """The demo's comparison: one row per method, mean and spread over seeds (the mean alone,
    and a note that one seed cannot rank the methods, for a single seed)."""
    from .experiments.comparison import stat_cell

    table = Table(title=f"Synthetic mitochondria, target test volume ({result.dims}-D, "
                        f"seeds {', '.join(map(str, result.seeds))})")
    table.add_column("method")
    for column in ("IoU", "F1", "MCC", "mAP", "train s"):
        table.add_column(column, justify="right")
    for row in result.summary:
        cells = [stat_cell(row[m], row["seeds"]) for m in ("iou", "f1", "mcc", "ap")]
        table.add_row(row["method"], *cells, f"{row['train_seconds']:.0f}")
    Console().print(table)
    if len(result.seeds) < 2:
        print(SINGLE_SEED_NOTE)
    print(f"results: {result.results_json}")
