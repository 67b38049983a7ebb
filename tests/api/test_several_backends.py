"""Several named backends behind one app: the default one serves, /readyz reports each."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gateway.settings import SampleBackendSettings, Settings
from tests.conftest import AppClient


def test_readyz_reports_every_backend_and_the_default_one_serves(
    settings: Settings, app_client: AppClient, tmp_path: Path
) -> None:
    several = msgspec.structs.replace(
        settings,
        backends={
            "legacy": SampleBackendSettings(path=str(tmp_path / "legacy.sqlite")),
            "next": SampleBackendSettings(path=str(tmp_path / "next.sqlite")),
        },
        default_backend="next",
    )
    with app_client(several) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert checks["backend:next"]["ok"]
        assert checks["backend:next"]["required"]
        assert checks["backend:legacy"]["ok"]
        assert not checks["backend:legacy"]["required"]  # serves no operation yet
        assert {"breaker:legacy:reads", "breaker:next:reads", "breaker:next:writes"} <= set(checks)
        assert client.get("/v1/availability/MUG-SND").status_code == 200
        runtime = client.app.state.runtime
        assert runtime.erp.default.name == "next"
    assert (tmp_path / "next.sqlite").exists()
