"""The README stays true: every setting is listed with its default."""

from __future__ import annotations

import json
from pathlib import Path

from bot.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        default = json.dumps(field.default) if isinstance(field.default, list) else field.default
        row = f"| `SUPPORTBOT_{name.upper()}` | `{default}` |"
        assert row in README, f"README settings table lacks {row}"
