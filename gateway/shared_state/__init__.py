"""The shared state of every worker and instance, kept in Redis: ``connect`` (the one place
that knows the deployment mode) and ``RedisSharedState`` (the port of ``policies.shared_state``)."""

from gateway.shared_state.connect import RedisSettings, connect
from gateway.shared_state.redis import RedisSharedState, client_of, open_shared_state

__all__ = ["RedisSettings", "RedisSharedState", "client_of", "connect", "open_shared_state"]
