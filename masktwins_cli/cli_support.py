"""What every ``masktwins`` verb shares: user errors as one line on stderr and an exit code."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from .errors import MaskTwinsError


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    typer.echo(f"masktwins: error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn user errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MaskTwinsError as err:
            fail(str(err).replace("\n", " "), err.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
            fail(f"{err.filename or ''}: {err.strerror or err}")
        except OSError as err:
            fail(f"{getattr(err, 'filename', None) or 'I/O'}: {err.strerror or err}")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def refuse_existing_outputs(file: Path | None, folder: Path | None, overwrite: bool,
                            file_option: str = "--json") -> None:
    """Without ``--overwrite``: an existing output file, or a folder already holding overlay
    PNGs, is an error before any work is done (nothing is replaced)."""
    if overwrite:
        return
    if file is not None and file.exists():
        raise MaskTwinsError(f"{file_option} {file} exists: pass --overwrite to replace it "
                             "(nothing was written)")
    if folder is not None and folder.is_dir() and any(
            next(folder.glob(pattern), None) for pattern in ("overlay_z*.png", "synapses_z*.png")):
        raise MaskTwinsError(f"--overlay {folder} already holds overlay PNGs: pass --overwrite to "
                             "replace them, or choose another folder (nothing was written)")
