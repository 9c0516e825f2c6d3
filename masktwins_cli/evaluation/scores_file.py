"""The scores of ``masktwins evaluate`` as a JSON file (``--json``)."""

from __future__ import annotations

import json
from pathlib import Path

from ..io.atomic import write_text_atomic


def write_scores_json(path: str | Path, scores: dict) -> Path:
    """``scores`` (an evaluation's ``as_dict()``) as indented JSON at ``path``, written
    atomically; a non-finite number is an error rather than invalid JSON."""
    write_text_atomic(Path(path), json.dumps(scores, indent=2, allow_nan=False) + "\n")
    return Path(path)
