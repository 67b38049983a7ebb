"""The Redis topology harness itself (tests/harness/redis_topologies.py): a real Cluster fails
over when a primary dies, Sentinel promotes a replica, TLS with an ACL user refuses strangers,
and a paused deployment comes back with its data."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from tests.harness.redis_topologies import RedisClusterHarness, RedisSentinelHarness, TlsRedisServer


def _primary_via_sentinel(deployment: RedisSentinelHarness, **kwargs: Any) -> redis.Redis:
    """``Sentinel(...).master_for(...)`` as the gateway builds it (redis.sentinel is untyped)."""
    sentinel = Sentinel(deployment.sentinel_addresses, socket_timeout=1, sentinel_kwargs={"socket_timeout": 1})  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        deployment.service_name, socket_timeout=1, decode_responses=True, **kwargs
    )
    return client


def _master_address(client: redis.Redis) -> tuple[str, int]:
    """Where a ``master_for`` client's pool now sends commands (it asks the Sentinels)."""
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    address: tuple[str, int] = pool.get_master_address()  # type: ignore[no-untyped-call]
    return address


def _keys_on_every_primary(cluster: RedisClusterHarness) -> dict[int, str]:
    """One key per primary (so at least three slots), by the owner's port."""
    keys: dict[int, str] = {}
    index = 0
    while len(keys) < 3:
        key = f"k{index}"
        keys.setdefault(cluster.primary_for(key)[0], key)
        index += 1
    return keys


def test_cluster_primary_killed_a_replica_takes_over_and_the_node_rejoins(
    fresh_redis_cluster: RedisClusterHarness,
) -> None:
    cluster = fresh_redis_cluster
    keys = _keys_on_every_primary(cluster)
    with cluster.client(decode_responses=True, socket_timeout=2, socket_connect_timeout=1) as client:
        for key in keys.values():
            assert client.set(key, "v")
        assert len({client.keyslot(key) for key in keys.values()}) == 3

        victim = next(iter(keys.values()))
        port, pid = cluster.kill_primary_for(victim)
        seconds = cluster.wait_promoted(victim, timeout=15)
        assert seconds < 15
        new_port, new_pid = cluster.primary_for(victim)
        assert (new_port, new_pid) != (port, pid)

        # The slot is served again (the value may be lost: replication is asynchronous).
        with cluster.client(decode_responses=True, socket_timeout=2) as fresh:
            assert fresh.get(victim) in ("v", None)
            assert fresh.set(victim, "w")
            assert fresh.get(victim) == "w"
        # Keys on the other primaries never moved.
        for key in list(keys.values())[1:]:
            assert client.get(key) == "v"

    cluster.restart_killed()
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as node:
        assert node.execute_command("ROLE")[0] == "slave"
    assert cluster.primary_for(victim)[0] == new_port


def test_cluster_paused_whole_then_resumed_keeps_its_data(fresh_redis_cluster: RedisClusterHarness) -> None:
    cluster = fresh_redis_cluster
    keys = _keys_on_every_primary(cluster)
    with cluster.client(decode_responses=True, socket_timeout=1, socket_connect_timeout=1) as client:
        for key in keys.values():
            client.set(key, "v")
    with cluster.paused():
        with (
            redis.Redis(port=next(iter(keys)), socket_timeout=0.5, retry=Retry(NoBackoff(), 0)) as node,
            pytest.raises(redis.TimeoutError),
        ):
            node.ping()
        time.sleep(2)
    cluster.wait_healthy(timeout=20)
    with cluster.client(decode_responses=True, socket_timeout=2) as client:
        assert [client.get(key) for key in keys.values()] == ["v", "v", "v"]


def test_sentinel_primary_killed_a_replica_is_promoted(fresh_redis_sentinel: RedisSentinelHarness) -> None:
    deployment = fresh_redis_sentinel
    primary = _primary_via_sentinel(deployment)
    assert primary.set("k", "v")
    old_port, _ = deployment.primary()
    assert _master_address(primary) == ("127.0.0.1", old_port)

    deployment.kill_primary()
    seconds = deployment.wait_failover(timeout=20)
    assert seconds < 20
    new_port, _ = deployment.primary()
    assert new_port != old_port

    fresh = _primary_via_sentinel(deployment)
    assert fresh.set("k", "w")
    assert fresh.get("k") == "w"
    fresh.close()
    # The client made before the failover finds the new primary too (redis-py re-asks Sentinel).
    assert primary.set("k2", "x")
    assert _master_address(primary) == ("127.0.0.1", new_port)
    primary.close()

    deployment.restart_killed()
    with redis.Redis(port=old_port, socket_timeout=1, decode_responses=True) as node:
        assert node.execute_command("ROLE")[0] == "slave"
    assert deployment.primary()[0] == new_port


def test_sentinel_deployment_paused_whole_then_resumed_keeps_its_data(
    fresh_redis_sentinel: RedisSentinelHarness,
) -> None:
    deployment = fresh_redis_sentinel
    port, _ = deployment.primary()
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        client.set("k", "v")
        client.execute_command("WAIT", "2", "1000")
    with deployment.paused():  # the data nodes hang; the Sentinels keep running
        with (
            redis.Redis(port=port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)) as node,
            pytest.raises(redis.TimeoutError),
        ):
            node.ping()
        # Shorter than down-after-milliseconds (2 s): a longer pause sometimes makes the Sentinels
        # fail over just as everything resumes (the replica they pick is back), ~20 s to settle.
        time.sleep(1.0)
    deployment.wait_healthy(timeout=30)
    primary = _primary_via_sentinel(deployment)
    assert primary.get("k") == "v"
    primary.close()


def test_tls_with_an_acl_user_refuses_strangers(fresh_redis_tls: TlsRedisServer) -> None:
    server = fresh_redis_tls
    assert server.url.startswith("rediss://127.0.0.1:")
    password = server.password_file.read_text()
    assert password.endswith("\n")
    with redis.Redis.from_url(
        server.url, username=server.username, password=password.strip(), ssl_ca_certs=str(server.ca_file)
    ) as client:
        assert client.set("k", "v")
        assert client.acl_whoami() == "gw"

    with server.client(password="wrong") as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    for anonymous in ({}, {"password": server.password_file.read_text().strip()}):  # the default user is off
        with (
            redis.Redis.from_url(server.url, ssl_ca_certs=str(server.ca_file), **anonymous) as client,
            pytest.raises(redis.AuthenticationError),
        ):
            client.ping()
    with (
        redis.Redis.from_url(server.url, socket_timeout=2, retry=Retry(NoBackoff(), 0)) as untrusting,
        pytest.raises(redis.ConnectionError, match="certificate verify failed"),
    ):
        untrusting.ping()
