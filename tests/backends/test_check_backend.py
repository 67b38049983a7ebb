"""``erp-gateway check-backend`` against every backend: what a platform team runs on its own ERP."""

from __future__ import annotations

from pathlib import Path

import pytest

from erp_backends.errors import ErpUnavailable
from erp_backends.port import CallContext, ErpBackend
from erp_backends.sample import SampleBackend, SampleSettings
from gateway import cli
from gateway.check_backend import Subjects, check_backend, run_checks


async def test_every_check_passes_on_a_backend_seeded_from_the_dataset(backend: ErpBackend) -> None:
    results = await run_checks(backend, with_dataset=True)
    assert [(r.name, r.outcome, r.detail) for r in results if r.outcome != "pass"] == []
    assert any(r.name.startswith("dataset:") for r in results)


async def test_structural_checks_need_no_known_data(backend: ErpBackend) -> None:
    results = await run_checks(backend, Subjects())
    outcomes = {r.name: r.outcome for r in results}
    assert "fail" not in outcomes.values()
    assert outcomes["an unknown order is NotFound"] == "pass"
    assert outcomes["availability answers per warehouse"] == "skip"
    assert not any(name.startswith("dataset:") for name in outcomes)


class _BrokenReturns(SampleBackend):
    async def get_return(self, rma_number: str, ctx: CallContext) -> object:  # type: ignore[override]
        raise ErpUnavailable("returns module not installed")


def test_a_failing_check_fails_the_run(tmp_path: Path) -> None:
    table, ok = check_backend(
        _BrokenReturns(SampleSettings(path=str(tmp_path / "erp.sqlite"))), None, with_dataset=True
    )
    assert not ok
    assert "FAIL  an unknown return is NotFound" in table
    assert "ErpUnavailable: returns module not installed" in table


def test_the_command_prints_a_table_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ERPGW_SAMPLE__PATH", str(tmp_path / "erp.sqlite"))
    assert cli.main(["check-backend", "--dataset"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("check-backend: sample")
    assert "14 passed, 0 failed, 0 skipped" in out


def test_the_command_exits_1_when_the_erp_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = tmp_path / "password"
    password.write_text("secret\n")
    monkeypatch.setenv("ERPGW_BACKEND", "tryton")
    monkeypatch.setenv("ERPGW_TRYTON__URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("ERPGW_TRYTON__PASSWORD_FILE", str(password))
    assert cli.main(["check-backend"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ERP answers (readiness)" in out
    assert "ErpUnavailable: Tryton cannot be reached (ConnectError)" in out
    assert "secret" not in out
