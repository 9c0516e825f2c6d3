"""Shared by the recipe tests: validation must fail with one line naming what was wrong."""

from __future__ import annotations

import pytest

from masktwins_cli.config.recipe import recipe_from_dict
from masktwins_cli.errors import MaskTwinsError


def rejected(values: dict, *fragments: str) -> str:
    """Validate ``values``; it must fail with a one-line message containing ``fragments``."""
    with pytest.raises(MaskTwinsError) as info:
        recipe_from_dict(values)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message
