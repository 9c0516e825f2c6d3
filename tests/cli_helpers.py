"""Shared helpers of the CLI bad-input tests (imported by test_cli_errors_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from masktwins_cli.cli import app
from masktwins_cli.io.volumes import write_volume


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)   # click < 8.2 mixes stderr into stdout by default
    except TypeError:                        # click >= 8.2 always keeps stderr apart
        return CliRunner()


RUNNER = _runner()


def invoke(*args: object):
    return RUNNER.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes), plus the empty folders."""
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file():
            files[rel] = path.read_bytes()
        elif path.is_dir() and not any(path.iterdir()):
            files[rel + "/"] = b""
    return files


def assert_user_error(result, *names: object) -> str:
    """Exit code 2, exactly one stderr line 'masktwins: error: ...' naming ``names``."""
    output = result.output + (result.stderr or "")
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("masktwins: error: "), lines[0]
    for name in names:
        assert str(name) in lines[0], f"{name!s} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


def write(uri: str, array: np.ndarray) -> str:
    write_volume(uri, array, (1.0,) * min(array.ndim, 3))
    return uri


RNG = np.random.default_rng(0)


def random_image(shape, dtype=np.float32) -> np.ndarray:
    return RNG.random(shape).astype(dtype)




def corrupt_checkpoint_bytes(kind: str, good: bytes) -> bytes:
    """Bytes of a broken checkpoint; the seeds are fixed so torch.load fails the same way."""
    return {"random": np.random.default_rng(0).bytes(1000),        # UnpicklingError
            "empty": b"",                                            # EOFError
            "text": b"hello\n",                                      # KeyError(101)
            "random-index": np.random.default_rng(21).bytes(1000),   # IndexError
            "truncated": good[: len(good) // 2]}[kind]               # OSError (EINVAL)


CORRUPT_KINDS = ["random", "empty", "text", "random-index", "truncated"]


def not_hdf5(folder: Path) -> str:
    (folder / "bad.h5").write_bytes(b"this is not HDF5\n" * 10)
    return f"{folder}/bad.h5:/raw"
