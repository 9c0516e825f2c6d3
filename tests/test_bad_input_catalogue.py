"""One table of bad input over every verb of the CLI: each row is refused the same way.

For every case: exit code 2, no traceback, exactly one stderr line ``masktwins: error: ...``
naming the offending file, option or recipe key; and "nothing written, nothing changed": the
case's whole folder (inputs, existing outputs, the checkpoint copy) is byte-identical afterwards
(sha256 of every file, empty folders included), and nothing appears at the output path.

A row is ``case(verb, id, setup, *expected)``: ``setup(ctx)`` builds the inputs inside the case's
own ``tmp_path`` (the working directory while the command runs) and returns the argv; the
expected substrings may hold ``{tmp}``, the case's folder. No case trains: infer cases use a
copy of the session's tiny trained checkpoint.

The command runs in-process (CliRunner), with log records and warnings printed on stderr as in
a ``masktwins`` process (pytest would capture them), so "exactly one stderr line" holds for the
real command line too.

The only thing a refused command may leave is the hidden staging folder of an ``infer`` that met
damage in its input after finishing other blocks (``kept``): it keeps them for a rerun, and its
error line says so. A case that reveals a bug may be marked ``xfail(strict=True)`` with what
happens instead (none is now).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import warnings
from pathlib import Path

import pytest
from bad_input_cases import VERBS, Case, Ctx
from bad_input_prepare_train import PREPARE_AND_TRAIN_CASES
from bad_input_run import RUN_CASES
from cli_helpers import assert_user_error, invoke, snapshot

CASES = [*PREPARE_AND_TRAIN_CASES, *RUN_CASES]


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def printed_as_in_a_process():
    """Log records and warnings reach stderr as they do in a ``masktwins`` process, instead of
    being captured by pytest: no logging handler configured (``logging.lastResort`` prints
    WARNING and above) and Python's default warning filters, shown on stderr."""
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_on_stderr
            yield
    finally:
        root.handlers = handlers


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (and '' for each empty folder)."""
    return {path: hashlib.sha256(data).hexdigest() if not path.endswith("/") else ""
            for path, data in snapshot(folder).items()}


@pytest.mark.parametrize("row", CASES)
def test_bad_input_is_refused_and_nothing_changes(row: Case, tmp_path, tiny_trained_run,
                                                  monkeypatch):
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    monkeypatch.chdir(case_dir)
    ctx = Ctx(case_dir, tiny_trained_run)
    argv = [str(a) for a in row.setup(ctx)]
    assert argv[: len(row.verb.split())] == row.verb.split(), (argv, row.verb)
    before = hashes(case_dir)
    existed = {path: path.exists() for path in ctx.outputs}
    trained = hashes(tiny_trained_run)

    with printed_as_in_a_process():
        result = invoke(*argv)

    expected = [*row.expected, *([row.kept, "kept"] if row.kept else [])]
    assert_user_error(result, *(text.format(tmp=case_dir) for text in expected))
    after = {path: digest for path, digest in hashes(case_dir).items()
             if not (row.kept and str(path).startswith(row.kept))}
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    assert (sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys()),
            changed) == ([], [], []), "(written, removed, changed)"
    for path, was_there in existed.items():
        assert path.exists() == was_there, path
    assert hashes(tiny_trained_run) == trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_the_catalogue_covers_every_verb():
    rows = [param.values[0] for param in CASES]
    ids = [param.id for param in CASES]
    assert len(rows) >= 45
    assert len(set(ids)) == len(ids)
    assert {row.verb for row in rows} == set(VERBS)
