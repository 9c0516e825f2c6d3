"""``masktwins infer --workers N``: blockwise prediction by several worker processes on daisy.

daisy (funkelab, version 2) schedules the blocks; the durable per-block records of
:mod:`.records` stay the one source of truth, so daisy runs, single-process runs and ``--shard``
array jobs can finish one another's work.

* The coordinator (:func:`infer_with_daisy`) prepares the run exactly as a single-process run
  does (manifest, staging folder), describes our :class:`~.predict.BlockPlan` to daisy as a
  ``daisy.Task`` (write ROI = our chunk-aligned block, read ROI = block + halo, in voxels) with a
  check function that reports a block done when our marker exists, and runs daisy's scheduler
  with ``daisy.run_blockwise``. When daisy is finished it commits the output with the same
  protocol as a single-process run (:func:`~.predict.finish`).
* Each worker (:func:`serve_blocks`) loads the model once, connects to the scheduler as a
  ``daisy.Client`` (the address comes from the ``DAISY_CONTEXT`` environment variable that daisy
  sets for every worker it starts), and for each block it is handed runs the single-process
  steps: predict, write into the staging array, fsync, record.
* daisy starts every worker by calling a worker function in a process of its own
  (``python -m daisy._subprocess_worker``). Here that function either serves blocks itself
  (local workers) or runs a command template such as ``srun -N1 -n1 {cmd}``, where ``{cmd}``
  is ``masktwins infer-worker ...`` with the run's arguments; the template must block until
  its worker exits (``srun``, ``sbatch --wait``), as daisy tracks workers by that call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import MaskTwinsError

log = logging.getLogger(__name__)

TASK_ID = "masktwins-infer"
LOG_FOLDER = "daisy_logs"  # inside the staging folder: kept with a failed run, gone after commit
CMD = "{cmd}"
BLOCK_TIMEOUT_S = 3600.0  # daisy kills a worker whose block runs longer and retries the block
_ERROR_LINES = (re.compile(r"(?:masktwins: error: |.*MaskTwinsError: )(.*)"),
                re.compile(r"((?!_WorkerExitError)[\w.]*(?:Error|Exception|Exit): .*)"),
                re.compile(r"([\w.]*(?:Error|Exception|Exit): .*)"))


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to redo the coordinator's preparation (plain, picklable data).

    ``threads``: torch CPU threads (None: ``OMP_NUM_THREADS``, else every core this process may
    use). ``command``: a shell template with ``{cmd}``, or None to serve blocks in daisy's own
    worker process.
    """

    checkpoint: str
    input_uri: str
    output_uri: str
    overrides: tuple[str, ...] = ()
    weights: str = "student"
    device: str = "auto"
    threads: int | None = None
    command: str | None = None

    def argv(self) -> list[str]:
        """The ``masktwins infer-worker`` command line of this worker."""
        argv = [sys.executable, "-m", "masktwins_cli.cli", "infer-worker", self.checkpoint,
                self.input_uri, "-o", self.output_uri, "--weights", self.weights,
                "--device", self.device]
        for override in self.overrides:
            argv += ["--set", override]
        return argv + ([] if self.threads is None else ["--threads", str(self.threads)])


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_threads(workers: int) -> int:
    """Torch threads of each of ``workers`` local workers: ``OMP_NUM_THREADS`` when set, else
    max(1, cores // workers), so the workers share the cores instead of oversubscribing them."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, available_cores() // workers)


def check_options(workers: int, command: str | None) -> None:
    """MaskTwinsError for a worker count below 1 or a template without ``{cmd}``."""
    if workers < 1:
        raise MaskTwinsError(f"--workers {workers}: expected at least 1 worker process "
                             "(leave --workers out for a single-process run)")
    if command is not None and CMD not in command:
        raise MaskTwinsError(f"--worker-command {command!r}: the template must contain {CMD}, "
                             "where the worker command goes, e.g. 'srun -N1 -n1 {cmd}'")


def require_daisy() -> None:
    """MaskTwinsError unless daisy 2 is installed (its API differs from daisy 1's)."""
    try:
        import daisy
    except ImportError:
        raise MaskTwinsError("--workers needs daisy 2 (Python >= 3.11): pip install "
                             "'daisy>=2,<3'") from None
    if not str(daisy.__version__).startswith("2."):
        raise MaskTwinsError(f"--workers needs daisy 2, found daisy {daisy.__version__}: pip "
                             "install 'daisy>=2,<3'")


# --------------------------------------------------------------------------- coordinator
def infer_with_daisy(checkpoint: str | Path, input_uri: str, output_uri: str, workers: int,
                     overrides: Sequence[str] = (), weights: str = "student",
                     device: str = "auto", overwrite: bool = False, restart: bool = False,
                     worker_command: str | None = None, host: str | None = None,
                     threads: int | None = None, mask: str | None = None, tta: bool = False):
    """Predict ``input_uri`` into ``output_uri`` with ``workers`` daisy workers; an InferResult.

    Same output, records and resume behaviour as :func:`~.predict.infer_volume` (blocks already
    recorded are skipped, by daisy's check function). ``worker_command``: a shell template with
    ``{cmd}`` that starts one worker and blocks until it exits (e.g. ``srun -N1 -n1 {cmd}``);
    None starts the workers as local processes. ``host``: the address workers connect to
    (default: 127.0.0.1 for local workers, daisy's detected address of this machine, or
    ``DAISY_HOST``, with a template). ``threads``: torch threads per worker (default: see
    :func:`worker_threads` locally; the worker's own cores with a template). ``mask``, ``tta``:
    see :func:`~.checkpoint.infer_overrides`.
    """
    from .checkpoint import infer_overrides
    from .predict import InferResult, InferSetup, discard_if_empty, finish

    started = time.perf_counter()
    check_options(workers, worker_command)
    require_daisy()
    from ..runtime.device import resolve_device

    resolve_device(device, "--device")  # the workers resolve it again; a bad choice fails here
    overrides = infer_overrides(overrides, mask, tta)
    setup = InferSetup.prepare(checkpoint, input_uri, output_uri, overrides, weights)
    plan, target = setup.plan, setup.target
    result = InferResult(target.uri, tuple(setup.volume.shape), plan.count, 0.0,
                         f"{workers} daisy worker(s), device {device}", channels=target.channels,
                         unfinished=setup.unfinished)
    if threads is None and worker_command is None:
        threads = worker_threads(workers)
    spec = WorkerSpec(str(Path(checkpoint).resolve()), setup.manifest["input"]["uri"],
                      setup.manifest["output"]["uri"], tuple(overrides), weights, device, threads,
                      worker_command)
    with setup.lock() as lock:  # held for the workers too: they run only while this process does
        if setup.up_to_date(overwrite):
            result = setup.complete_class_map(replace(result, skipped=plan.count,
                                                      state="up-to-date"))
            return replace(result, seconds=time.perf_counter() - started)
        staging, created = setup.open_staging(lock, restart)
        lock.end_setup()
        done_before = len(staging.done())
        try:
            state = run_scheduler(setup, staging, spec, workers,
                                  host or (None if worker_command else "127.0.0.1"))
        except BaseException as err:
            if created and lock.exclusive():
                discard_if_empty(staging)
            if not isinstance(err, WorkersFailed):
                raise
            logs = staging.root / LOG_FOLDER
            where = f"; logs in {logs}" if logs.is_dir() else ""
            raise MaskTwinsError(f"{err}{where}; rerun the same command to resume") from None
        predicted = len(staging.done()) - done_before
        log.info("daisy: %d blocks, %d skipped as recorded by the check function, %d predicted, "
                 "%d worker start(s)", state.total_block_count, state.skipped_count, predicted,
                 state.worker_start_count)
        result = setup.complete_class_map(finish(staging, target, plan, replace(
            result, predicted=predicted, skipped=done_before), lock))
    return replace(result, seconds=time.perf_counter() - started)


def daisy_task(plan, staging_root: Path, worker, workers: int):
    """The daisy Task of a block plan, all in (z, y, x) voxels: the total ROI is the volume
    grown by the halo, each block's write ROI is our block and its read ROI the block grown by
    the halo; ``fit="shrink"`` clips the last block of every axis to the volume, as our plan
    does. Blocks never write where another block reads, hence no read/write conflicts."""
    import daisy.v2 as daisy

    halo = daisy.Coordinate(plan.halo)
    total = daisy.Roi((0,) * 3, plan.shape).grow(halo, halo)
    write = daisy.Roi((0,) * 3, plan.block)
    with warnings.catch_warnings():  # daisy advises its own done markers; ours are the record
        warnings.filterwarnings("ignore", r"Task\(check_function", UserWarning)
        return daisy.Task(
            TASK_ID, total, write.grow(halo, halo), write, process_function=worker,
            check_function=functools.partial(block_recorded, plan, str(staging_root)),
            read_write_conflict=False, fit="shrink", max_workers=workers, max_retries=1,
            timeout=BLOCK_TIMEOUT_S, tracking_path=False, max_worker_restarts=workers)


class WorkersFailed(MaskTwinsError):
    """daisy ended the run with blocks left: a worker kept failing."""


def run_scheduler(setup, staging, spec: WorkerSpec, workers: int, host: str | None):
    """Run daisy's scheduler over the plan's blocks until every block is done; daisy's TaskState.

    Worker output goes to log files in the staging folder (``daisy_logs/``), and so does what
    daisy's scheduler reports on this process's stderr (it writes there directly, from Rust).
    WorkersFailed, naming the worker's error, when blocks are left.
    """
    import daisy.v2 as daisy
    from daisy import logging as daisy_logging

    task = daisy_task(setup.plan, staging.root, functools.partial(run_worker, spec), workers)
    logs = staging.root / LOG_FOLDER
    logs.mkdir(exist_ok=True)
    previous = daisy_logging.get_log_basedir()
    daisy_logging.set_log_basedir(logs)
    try:
        with stderr_to(logs / "scheduler.log"):
            states = daisy.run_blockwise(task, progress=False, return_states=True, host=host,
                                         summary=False)
    except RuntimeError as err:  # daisy abandoned the task: workers failed too often
        raise WorkersFailed(f"daisy workers failed: {worker_error(str(err))}") from None
    finally:
        daisy_logging.set_log_basedir(previous)
    state = states[TASK_ID]
    if state.completed_count != state.total_block_count:
        missing = state.total_block_count - state.completed_count
        raise WorkersFailed(f"daisy: {missing} of {state.total_block_count} blocks failed: "
                            f"{worker_error(state.last_worker_error or '')}")
    return state


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Point this process's file descriptor 2 at the file ``path`` (appending) for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as stream:
            os.dup2(stream.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def worker_error(text: str) -> str:
    """The line that says why a worker failed, from daisy's error text (which ends with the
    worker's traceback): a masktwins error, else the last exception line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in _ERROR_LINES:
        for line in reversed(lines):
            match = pattern.match(line)
            if match:
                return match.group(1)
    return lines[0] if lines else "no error text"


def block_recorded(plan, staging_root: str, block) -> bool:
    """daisy's check function: whether our durable marker of ``block`` exists."""
    from .records import Staging

    return Staging(Path(staging_root)).is_done(block_index(plan, block))


def block_index(plan, block) -> int:
    """Our index of a daisy block, from its write ROI (voxels)."""
    import numpy as np

    start = tuple(int(value) for value in block.write_roi.offset)
    if any(s % b for s, b in zip(start, plan.block)):
        raise MaskTwinsError(f"daisy block at {start} is not on the block grid {plan.block}")
    return int(np.ravel_multi_index(tuple(s // b for s, b in zip(start, plan.block)), plan.grid))


# -------------------------------------------------------------------------------- workers
def run_worker(spec: WorkerSpec, *, context=None) -> None:
    """daisy's worker function, called once per worker in a process daisy started: serve blocks
    here, or run the worker command with this worker's ``DAISY_CONTEXT``."""
    log_to_stderr()
    if spec.command is None:
        serve_blocks(spec, context)
        return
    command = spec.command.replace(CMD, shlex.join(spec.argv()))
    env = {**os.environ, "DAISY_CONTEXT": context.to_env()} if context is not None else None
    log.info("starting worker: %s", command)
    code = subprocess.run(command, shell=True, env=env).returncode
    if code != 0:
        raise RuntimeError(f"worker command exited with code {code}: {command}")


def serve_blocks(spec: WorkerSpec, context=None) -> int:
    """Serve the blocks daisy's scheduler hands this worker; the number predicted.

    Loads the network once, checks that the run's staging folder was made for the same work,
    then, per block: predict, write, fsync, record (as a single-process run does) and release
    the block to the scheduler. ``context``: daisy's Context (default: from ``DAISY_CONTEXT``).
    """
    import daisy.v2 as daisy
    import torch

    from .blocks import ZyxView
    from .pipeline import predict_blocks
    from .predict import InferSetup, staging_sink

    if context is None:
        if daisy.Context.ENV_VARIABLE not in os.environ:
            raise MaskTwinsError(f"{daisy.Context.ENV_VARIABLE} is not set: infer-worker serves a "
                                 "running `masktwins infer --workers N`, which starts it (see "
                                 "--worker-command)")
        context = daisy.Context.from_env()
    worker = int(context["worker_id"])
    torch.set_num_threads(spec.threads or worker_threads(1))
    setup = InferSetup.prepare(spec.checkpoint, spec.input_uri, spec.output_uri, spec.overrides,
                               spec.weights)
    staging = attach_staging(setup)
    device = worker_device(spec.device, worker)
    predict = setup.predictor(device)
    plan, source = setup.plan, ZyxView(setup.volume)
    sink, record = staging_sink(plan, setup.volume, staging, setup.target)
    client = daisy.Client(context)
    log.info("worker %d: serving %s on %s, %d torch thread(s)", worker, staging.root,
             device, torch.get_num_threads())
    predicted = 0
    while True:
        with client.acquire_block() as block:
            if block is None:
                break
            index, started = block_index(plan, block), time.perf_counter()
            counts = predict_blocks(predict, plan, source, sink, str(setup.volume.uri), [index],
                                    staging.is_done, record, setup.mask, prefetch=1)
            predicted += counts.predicted
            state = ("predicted" if counts.predicted else
                     "is outside the mask" if counts.outside else "was already recorded")
            log.info("worker %d: block %d %s in %.2f s", worker, index, state,
                     time.perf_counter() - started)
    log.info("worker %d: %d blocks predicted", worker, predicted)
    return predicted


def log_to_stderr() -> None:
    """INFO logging to stderr in a worker process (daisy puts it in the worker's log file)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def attach_staging(setup):
    """The staging folder the coordinator created; MaskTwinsError when it is missing or was
    made for other work (e.g. a worker started with other arguments)."""
    from .records import Staging, manifest_difference

    staging = Staging(setup.target.staging_root)
    if not staging.root.is_dir():
        raise MaskTwinsError(f"{staging.root} does not exist: start workers through "
                             "`masktwins infer --workers N` with the same arguments")
    difference = manifest_difference(setup.manifest, staging.manifest())
    if difference:
        raise MaskTwinsError(f"{staging.root}: this worker's arguments differ from the "
                             f"coordinator's ({difference})")
    return staging


def worker_device(choice: str, worker: int):
    """The worker's torch device: ``choice`` resolved, and with several GPUs visible and no
    index given, GPU ``worker % count`` so local workers spread over the GPUs."""
    import torch

    from ..runtime.device import resolve_device

    device = resolve_device(choice, "--device")
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return torch.device("cuda", worker % torch.cuda.device_count())
    return device
