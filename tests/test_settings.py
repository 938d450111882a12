"""Settings validation: out-of-range values are refused when the settings are read."""

import pytest
from pydantic import ValidationError

from bot.settings import Settings


def test_candidates_must_be_positive():
    for bad in (0, -5, 10_001):
        with pytest.raises(ValidationError):
            Settings(candidates=bad)
    assert Settings(candidates=1).candidates == 1
