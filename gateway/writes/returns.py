"""Creating a return authorization: the idempotency record in front of the ERP port's write."""

from __future__ import annotations

import msgspec

from contracts.v1 import ReturnAuthorization, ReturnRequest
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, ReturnOutcome
from gateway.writes.idempotency import IdempotentWrites, StoredAnswer, record_key

__all__ = ["ReturnWrites"]

_decode = msgspec.json.Decoder(ReturnAuthorization).decode


class ReturnWrites:
    """``create``: one ERP return per ``Idempotency-Key``, however many retries race."""

    def __init__(self, backend: ErpBackend, writes: IdempotentWrites) -> None:
        self._backend = backend
        self._writes = writes

    async def create(self, request: ReturnRequest, key: str, ctx: CallContext) -> ReturnOutcome:
        token = IdempotencyToken.for_request(record_key(ctx.client_id, key), request)
        found_in_erp = False

        async def perform() -> StoredAnswer:
            nonlocal found_in_erp
            outcome = await self._backend.create_return(request, token, ctx)
            found_in_erp = outcome.replayed  # an earlier attempt's answer was lost; the ERP had it
            rma = outcome.authorization
            return StoredAnswer(status=201, body=msgspec.json.encode(rma), location=f"/v1/returns/{rma.rma_number}")

        answer, replayed = await self._writes.run("returns", token.key, token.fingerprint, perform)
        return ReturnOutcome(authorization=_decode(answer.body), replayed=replayed or found_in_erp)
