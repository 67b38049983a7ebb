"""The shared tier on TLS with an ACL user whose password is read from a file: it works for
reads, writes and scripts; a wrong password is an unavailable store, never a crash, and no
password ever reaches the log or the error readiness shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.shared_state import RedisSettings, open_shared_state
from policies.shared_state import SharedStateUnavailable
from tests.harness.redis_topologies import TlsRedisServer


def _settings(tls: TlsRedisServer, password_file: Path) -> RedisSettings:
    return RedisSettings(
        url=tls.url,
        username=tls.username,
        password_file=str(password_file),
        tls_ca_file=str(tls.ca_file),
        timeout_seconds=2,
        retry_seconds=0.05,
    )


async def test_tls_with_an_acl_user_and_a_password_file_reads_writes_and_runs_scripts(
    fresh_redis_tls: TlsRedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert fresh_redis_tls.url.startswith("rediss://")
    state = open_shared_state(_settings(fresh_redis_tls, fresh_redis_tls.password_file))
    strict = state.strict
    assert strict is not None
    with caplog.at_level(logging.DEBUG):
        await strict.set_many([("a", b"1", 60_000), ("b", b"2", None)])
        assert await strict.get_many(["a", "b", "c"]) == [b"1", b"2", None]
        assert await strict.swap_many([("a", b"9", 60_000)]) == [b"1"]
        strict.register_script("incr", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert await strict.run_script("incr", ["n"], [2]) == 2
        assert await strict.delete(["a", "b"]) == 2
        assert await state.ping()
    await state.aclose()
    with fresh_redis_tls.client() as admin:  # written as the ACL user, under the prefix
        assert admin.acl_whoami() in ("gw", b"gw")
        assert admin.get("erpgw:v1:n") == b"2"
    assert fresh_redis_tls.password not in caplog.text


async def test_a_wrong_password_is_unavailable_not_a_crash_and_never_logged(
    fresh_redis_tls: TlsRedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password-" + fresh_redis_tls.password[:4]
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong + "\n")
    state = open_shared_state(_settings(fresh_redis_tls, wrong_file))
    strict = state.strict
    assert strict is not None
    strict.register_script("incr", "return redis.call('INCR', KEYS[1])")
    with caplog.at_level(logging.DEBUG):
        assert await state.get_many(["a"]) is None  # the lenient port: a miss
        assert not state.available
        assert await state.ping() is False
        with pytest.raises(SharedStateUnavailable) as caught:  # the strict port: unavailable
            await strict.run_script("incr", ["n"], [])
        assert await state.run_script("incr", ["n"], []) is None
    await state.aclose()
    error = state.last_error or ""
    assert "WRONGPASS" in error or "invalid username-password" in error.lower() or "auth" in error.lower(), error
    assert "Redis unavailable" in caplog.text  # the failure was logged...
    for secret in (wrong, fresh_redis_tls.password):  # ...without a password, anywhere
        assert secret not in caplog.text
        assert secret not in error
        assert secret not in str(caught.value)
