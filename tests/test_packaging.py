"""The wheel carries every package of the source tree (pyproject lists them one by one)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "masktwins_cli").rglob("__init__.py")}
    assert folders - listed == set(), f"packages missing from pyproject.toml: {folders - listed}"
    assert config["package-dir"]["masktwins_cli.models"] == "models"
