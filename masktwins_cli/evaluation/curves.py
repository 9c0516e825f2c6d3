"""Training curves: the loss terms, pseudo-label statistics and validation scores that
``masktwins train`` logs to ``log.jsonl``, one panel per term, one line per run, in a PNG.

The question this answers is the one a self-training run raises when it ends below its
target: did L_sup converge, did the twin loss and L_cm settle or grow, did the pseudo-labels
drift (``pseudo_foreground`` falling towards 0 is confirmation bias toward background), and
was the validation score still rising when training stopped.

Plotting uses matplotlib (the ``plot`` extra), imported only when a figure is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.atomic import atomic_open

NOT_TERMS = frozenset({"step", "seconds"})
# Shown first, in this order, when logged; any other logged term follows in log order.
PREFERRED_ORDER = ("loss", "loss_sup", "loss_cl", "loss_cm", "confident_fraction",
                   "teacher_confidence", "pseudo_foreground", "confident_pre", "confident_post",
                   "pseudo_pre_ppm", "pseudo_post_ppm", "val_iou", "val_f1", "val_mcc", "val_ap", "lr")
PANEL_INCHES = (4.2, 2.8)
MAX_COLUMNS = 3


@dataclass(frozen=True)
class RunLog:
    """One run's logged records: ``label`` for the legend, ``records`` in file order."""

    label: str
    path: Path
    records: list[dict]


def log_path_of(run: str | Path) -> Path:
    """A run folder (holding log.jsonl) or a log file itself -> the log file's path."""
    path = Path(run)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise MaskTwinsError(f"{run}: no log.jsonl (expected a run folder written by "
                             f"'masktwins train', or a log.jsonl file)")
    return path


def read_run_log(path: Path, label: str) -> RunLog:
    """Parse a JSONL training log; a line that is not a JSON object is an error naming it."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise MaskTwinsError(f"{path}: not a text log ({err.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MaskTwinsError(f"{path}:{number}: not a JSON record ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise MaskTwinsError(f"{path}:{number}: expected a JSON object with an integer 'step'")
        records.append(record)
    if not records:
        raise MaskTwinsError(f"{path}: the log is empty (has the run logged its first step yet?)")
    return RunLog(label, path, records)


def distinct_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts of each run's folder that tell the runs apart, e.g.
    ``seed0/masktwins`` and ``seed1/masktwins``; log files are named by their folder."""
    folders = [p.parent.resolve().parts for p in paths]
    for depth in range(1, max(len(f) for f in folders) + 1):
        labels = ["/".join(f[-depth:]) for f in folders]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]  # the same log given twice


def load_runs(runs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[RunLog]:
    """Read every run's log; ``labels`` (same length) replace the automatic legend names."""
    if not runs:
        raise MaskTwinsError("no runs given: name one or more run folders (or log.jsonl files)")
    paths = [log_path_of(run) for run in runs]
    if labels is not None and len(labels) != len(paths):
        raise MaskTwinsError(f"{len(labels)} labels for {len(paths)} runs; give one per run")
    names = list(labels) if labels is not None else distinct_labels(paths)
    return [read_run_log(path, name) for path, name in zip(paths, names)]


def logged_terms(runs: Sequence[RunLog]) -> list[str]:
    """Numeric terms logged by any run: the preferred ones in their order, then the rest."""
    seen: list[str] = []
    for run in runs:
        for record in run.records:
            for key, value in record.items():
                if key not in NOT_TERMS and key not in seen and _is_number(value):
                    seen.append(key)
    first = [t for t in PREFERRED_ORDER if t in seen]
    return first + [t for t in seen if t not in first]


def choose_terms(runs: Sequence[RunLog], requested: Sequence[str] | None) -> list[str]:
    """The requested terms (each must be logged by some run), or every logged term but ``lr``."""
    available = logged_terms(runs)
    if not requested:
        terms = [t for t in available if t != "lr"]
        if not terms:
            raise MaskTwinsError(f"{runs[0].path}: no numeric terms logged")
        return terms
    missing = [t for t in requested if t not in available]
    if missing:
        raise MaskTwinsError(f"--terms {','.join(missing)}: not logged by any run; logged terms: "
                             f"{', '.join(available)}")
    return list(requested)


def series(run: RunLog, term: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one term in one run; missing and non-finite values are skipped."""
    steps, values = [], []
    for record in run.records:
        value = record.get(term)
        if _is_number(value) and math.isfinite(value):
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def write_curves(out: str | Path, runs: Sequence[RunLog], terms: Sequence[str],
                 title: str = "") -> Path:
    """One panel per term (x: iteration), one line per run; PNG written atomically.

    Loss terms and ``*_ppm`` use a log y-axis when every plotted value is positive and they
    span more than a factor of 20 (L_cm and the pseudo-label counts grow by orders of
    magnitude in runs that drift); the rest are linear.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise MaskTwinsError(f"{out}: the curves figure is written as PNG; give a .png path")
    if not out.parent.is_dir():
        raise MaskTwinsError(f"{out.parent}: output folder does not exist")
    plt = _pyplot()
    columns = min(MAX_COLUMNS, len(terms))
    rows = math.ceil(len(terms) / columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows))
    try:
        for index, term in enumerate(terms):
            ax = axes[index // columns][index % columns]
            plotted = []
            for number, run in enumerate(runs):  # a run keeps its colour in every panel
                steps, values = series(run, term)
                if steps:
                    ax.plot(steps, values, color=f"C{number % 10}", label=run.label,
                            marker="." if len(steps) < 30 else None)
                    plotted.extend(values)
            if plotted and min(plotted) > 0 and max(plotted) / min(plotted) > 20 and (
                    term.startswith("loss") or term.endswith("_ppm")):
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_title(term, fontsize=10)
            ax.set_xlabel("iteration", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        for index in range(len(terms), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        handles = [plt.Line2D([], [], color=f"C{n % 10}", label=run.label) for n, run in enumerate(runs)]
        axes[0][0].legend(handles=handles, fontsize=7, frameon=False)
        if title:
            figure.suptitle(title, fontsize=11)
        figure.tight_layout()
        _save_atomic(figure, out)
    finally:
        plt.close(figure)
    return out


def _save_atomic(figure, out: Path) -> None:
    with atomic_open(out, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MaskTwinsError("training curves need matplotlib: pip install 'masktwins[plot]' "
                             "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
