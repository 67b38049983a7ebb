"""The former name of ``policies.shared_state.LenientState``, kept only while ``policies.chain``
imports it (issue 15: remove once the chain takes ``LenientState``). No logic, no client."""

from policies.shared_state import LenientState as RedisLink

__all__ = ["RedisLink"]
