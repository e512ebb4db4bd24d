"""Matching settings of the service reach the matcher and the season jobs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reid.side import DEFAULT_SIDE_THRESHOLD
from serve.settings import Settings


def test_side_threshold_is_a_setting_of_the_service(world, monkeypatch, tmp_path):
    from serve import create_app

    assert world.app.state.reid.matcher.config.side_threshold == DEFAULT_SIDE_THRESHOLD
    monkeypatch.setenv("REID_SERVE_SIDE_THRESHOLD", "1")
    settings = Settings(**{k: v for k, v in world.app.state.reid.settings.model_dump().items()
                           if k != "side_threshold"}, _env_file=None)  # fmt: skip
    assert settings.side_threshold == 1.0
    app = create_app(settings)
    from fastapi.testclient import TestClient

    with TestClient(app):
        assert app.state.reid.matcher.config.side_threshold == 1.0


@pytest.mark.parametrize("value", [0.2, 1.5])
def test_side_threshold_below_a_coin_or_above_one_is_refused(value):
    with pytest.raises(ValidationError):
        Settings(side_threshold=value, _env_file=None)
