"""The run's JSONL log: one JSON object per logged iteration or validation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..io.atomic import write_text_atomic


def _record(line: str) -> dict[str, Any] | None:
    """One log line as a record; None for a line torn by a crash mid-write (or otherwise not
    a JSON object)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JsonlLog:
    """Append-only JSONL file. On resume, lines from iterations after the resume step are dropped
    (they were logged after the checkpoint that is resumed from), and so is a line torn by the
    crash that made the resume necessary; the kept lines are rewritten atomically."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            write_text_atomic(path, "")
        elif path.exists():
            kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if (record := _record(line)) is not None and record.get("step", 0) <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a run's log.jsonl."""
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
