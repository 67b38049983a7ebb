"""``IntakeStore`` on Redis (the strict ``SharedState``), for many instances: every step is one
Lua script, so it is atomic, and each is safe to run twice (redis-py's Cluster client resends a
command that timed out, which may have run).

Key layout. Every key carries the hash tag ``{intake}``, so all of them live in one hash slot and
each script is legal on Redis Cluster: a script gets one key, the base ``intake:{intake}:``
(``SharedState`` puts its own prefix in front, which must not contain ``{``), and builds every
other key in Lua by appending to it. The price: all intake traffic goes to the one shard that
owns that slot, so intake throughput is bounded by one Redis primary (the other shards serve
the cache, quotas and idempotency records). Below, ``B`` is the base::

    B rec:<intake_id>     hash: fixed (msgspec JSON: id, reference, key, fingerprint,
                          accepted_at), request (raw bytes), fp, status, attempts,
                          replayed_after (attempts before the latest replay), holds
                          ("sku TAB warehouse TAB units" lines), order_number, last_error,
                          posted_at, accepted_at, member (its entry in the status indexes)
    B hist:<intake_id>    list: the history, one msgspec-JSON ``Transition`` each (encoded in
                          Python: Lua's cjson keeps 14 digits of an epoch float)
    B key:<key>           string: the intake of a client-scoped idempotency key
    B ref:<reference>     string: the intake of a client-scoped storefront reference
                          (``IntakeRecord.reference``)
    B active:<sku>        hash: warehouse -> units held by accepted/posting intakes (a field
                          is deleted at 0)
    B posted:<sku>        sorted set: "warehouse TAB intake_id TAB units" scored by posted_at;
                          entries older than ``posted_hold_seconds`` are ignored by readers,
                          pruned when the SKU next posts; the key expires a keep time (and a
                          minute) after its newest entry
    B queue               sorted set: accepted intakes by due time, posting ones by lease end
    B claim:<token>       string: "intake_id TAB lease_until" of a claim, for one lease
    B seq                 counter: accept order, ties on accepted_at broken by it
    B all, B status:<s>   sorted sets: "seq TAB intake_id" scored by accepted_at (``list``)

An intake that ended is kept ``retention_seconds`` (``ERPGW_INTAKE__RETENTION_DAYS``) with its
key and reference (expiries set when it ends, removed when it is replayed); the next accept
prunes the oldest index entries whose record has expired (a bounded number each time).

Holds are per SKU (hash field or member names the warehouse) rather than one hash keyed
"sku TAB warehouse": ``ledger(skus)`` must find every warehouse of a SKU without reading all
holds. SKUs and warehouse codes never contain a tab or a newline (the contract's patterns).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Sequence
from typing import Any, Literal, cast

import msgspec

from contracts.v1.intake import IntakeStatus
from gateway.intake.store import (
    Accepted,
    AlreadySubmitted,
    Claimed,
    Hold,
    HoldLedger,
    IntakeRecord,
    IntakeStore,
    IntakeStoreUnavailable,
    KeyReused,
    LineNeed,
    Outcome,
    Replayed,
    Short,
    ShortLine,
    Stale,
    Transition,
)
from policies.shared_state import SharedState, SharedStateUnavailable

__all__ = ["RedisIntakeStore"]

log = logging.getLogger("erp_gateway.intake")

#: The base key every script receives (``KEYS[1]``); every key it touches starts with it.
BASE = "intake:{intake}:"

#: Margin on the expiry of a SKU's posted holds beyond ``posted_hold_seconds`` (callers' clocks
#: and Redis's differ; readers ignore old entries by score anyway).
POSTED_EXPIRY_MARGIN_MS = 60_000

# Shared by every script. ``record(id)``: the record as the reply carries it (false: unknown).
# ``release``/``rehold`` move active holds; a release that would go below zero is a bug
# elsewhere: it clamps at zero and is reported (``bad``) so Python logs it.
_PRELUDE = r"""
local B = KEYS[1]
local FIELDS = {'fixed', 'request', 'status', 'attempts', 'holds', 'order_number', 'last_error', 'posted_at',
                'replayed_after'}
local function record(id)
  local r = redis.call('HMGET', B .. 'rec:' .. id, unpack(FIELDS))
  if not r[1] then return false end
  r[#FIELDS + 1] = redis.call('LRANGE', B .. 'hist:' .. id, 0, -1)
  return r
end
local function holds_of(text)
  local out = {}
  for sku, wh, units in string.gmatch(text or '', '([^\t\n]+)\t([^\t\n]+)\t(%d+)') do
    out[#out + 1] = {sku, wh, tonumber(units)}
  end
  return out
end
local function rehold(holds)
  for _, h in ipairs(holds) do redis.call('HINCRBY', B .. 'active:' .. h[1], h[2], h[3]) end
end
local function release(holds)
  local bad = {}
  for _, h in ipairs(holds) do
    local key = B .. 'active:' .. h[1]
    local held = tonumber(redis.call('HGET', key, h[2]) or '0')
    if held < h[3] then bad[#bad + 1] = h[1] .. '\t' .. h[2] .. ' held ' .. held .. ', releasing ' .. h[3] end
    if held <= h[3] then redis.call('HDEL', key, h[2]) else redis.call('HINCRBY', key, h[2], -h[3]) end
  end
  return bad
end
local function move(id, from, to)
  if from == to then return end
  local r = redis.call('HMGET', B .. 'rec:' .. id, 'member', 'accepted_at')
  redis.call('ZREM', B .. 'status:' .. from, r[1])
  redis.call('ZADD', B .. 'status:' .. to, r[2], r[1])
end
-- An intake that ended (posted, rejected, dead-lettered, cancelled) is kept until ``at_ms``
-- (epoch ms: the caller's now + the retention), with its key and reference; a replayed one is
-- kept again (nil). Index entries go by accepted_at (prune).
local function keep_until(id, at_ms)
  local fixed = cjson.decode(redis.call('HGET', B .. 'rec:' .. id, 'fixed'))
  for _, k in ipairs({B .. 'rec:' .. id, B .. 'hist:' .. id, B .. 'key:' .. fixed.key,
                      B .. 'ref:' .. (fixed.ref_key or fixed.external_ref)}) do
    if at_ms then redis.call('PEXPIREAT', k, at_ms) else redis.call('PERSIST', k) end
  end
end
-- Index entries accepted before ``before`` whose record has expired (an intake accepted long
-- ago may have ended lately: it is kept), at most 20 per index each time.
local function prune(before)
  for _, index in ipairs({'all', 'status:posted', 'status:cancelled', 'status:rejected',
                          'status:dead_lettered'}) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', B .. index, '-inf', '(' .. before, 'LIMIT', 0, 20)) do
      local id = string.sub(member, string.find(member, '\t', 1, true) + 1)
      if redis.call('EXISTS', B .. 'rec:' .. id) == 0 then redis.call('ZREM', B .. index, member) end
    end
  end
end
-- No attempt was ever sent to the ERP (no ``posting`` entry in the history).
local function never_sent(id)
  for _, entry in ipairs(redis.call('LRANGE', B .. 'hist:' .. id, 0, -1)) do
    if string.sub(entry, 1, 10) == '["posting"' then return false end
  end
  return true
end
-- The holds ``accept`` (and ``replay``) take: ARGV[at] is the line count, then per line: line,
-- sku, quantity, snapshot_at, candidate count, (warehouse, stock) per candidate. Answers the
-- holds ({sku, wh, units}), their text for the record, and the short lines ({line, sku, could}).
local function allocate(at, floor)
local taken, merged, order, short = {}, {}, {}, {}
local i = at + 1
for _ = 1, tonumber(ARGV[at]) do
  local line, sku, quantity = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local since, candidates = math.max(tonumber(ARGV[i + 3]), floor), tonumber(ARGV[i + 4])
  local late = {}
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', B .. 'posted:' .. sku, since, '+inf')) do
    local wh, units = string.match(member, '^([^\t]+)\t[^\t]+\t(%d+)$')
    late[wh] = (late[wh] or 0) + tonumber(units)
  end
  -- the pool: every candidate's free units, a warehouse below zero counting against the others
  -- (an ERP may ship a whole order from one warehouse, whatever was held where)
  local frees, pool = {}, 0
  for c = 0, candidates - 1 do
    local wh, stock = ARGV[i + 5 + 2 * c], tonumber(ARGV[i + 6 + 2 * c])
    local slot = sku .. '\t' .. wh
    local active = tonumber(redis.call('HGET', B .. 'active:' .. sku, wh) or '0')
    frees[c] = stock - active - (late[wh] or 0) - (taken[slot] or 0)
    pool = pool + frees[c]
  end
  local left = math.min(quantity, math.max(pool, 0))
  local wanted = left
  for c = 0, candidates - 1 do
    local wh = ARGV[i + 5 + 2 * c]
    if left > 0 and frees[c] > 0 then
      local slot = sku .. '\t' .. wh
      local take = math.min(frees[c], left)
      left = left - take
      taken[slot] = (taken[slot] or 0) + take
      if not merged[slot] then
        merged[slot] = 0
        order[#order + 1] = {sku, wh, slot}
      end
      merged[slot] = merged[slot] + take
    end
  end
  if wanted < quantity then short[#short + 1] = {line, sku, tostring(wanted)} end
  i = i + 5 + 2 * candidates
end
local holds, lines = {}, {}
for _, o in ipairs(order) do
  holds[#holds + 1] = {o[1], o[2], merged[o[3]]}
  lines[#lines + 1] = o[1] .. '\t' .. o[2] .. '\t' .. merged[o[3]]
end
return holds, table.concat(lines, '\n'), short
end
local function become(id, from, to, entry)
  redis.call('HSET', B .. 'rec:' .. id, 'status', to)
  redis.call('RPUSH', B .. 'hist:' .. id, entry)
  move(id, from, to)
end
"""

# ARGV: id, key, fingerprint, reference (client-scoped), now, accepted_at, fixed, request, history entry,
# posted floor (now - posted_hold_seconds), line count, then per line: line, sku, quantity,
# snapshot_at, candidate count, (warehouse, stock) per candidate; last: retention seconds.
_ACCEPT = r"""
local id, key, fp, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local known = redis.call('GET', B .. 'key:' .. key)
if known then
  if known == id then return {'accepted', record(id)} end
  if redis.call('HGET', B .. 'rec:' .. known, 'fp') == fp then return {'replayed', record(known)} end
  return {'key_reused'}
end
local owner = redis.call('GET', B .. 'ref:' .. ref)
if owner then return {'already_submitted', owner} end
prune(ARGV[5] - tonumber(ARGV[#ARGV]))
local holds, text, short = allocate(11, tonumber(ARGV[10]))
if #short > 0 then return {'short', short} end
rehold(holds)
local member = string.format('%016d', redis.call('INCR', B .. 'seq')) .. '\t' .. id
redis.call('HSET', B .. 'rec:' .. id, 'fixed', ARGV[7], 'request', ARGV[8], 'fp', fp, 'status', 'accepted',
  'attempts', '0', 'holds', text, 'accepted_at', ARGV[6], 'member', member)
redis.call('RPUSH', B .. 'hist:' .. id, ARGV[9])
redis.call('SET', B .. 'key:' .. key, id)
redis.call('SET', B .. 'ref:' .. ref, id)
redis.call('ZADD', B .. 'queue', ARGV[5], id)
redis.call('ZADD', B .. 'all', ARGV[6], member)
redis.call('ZADD', B .. 'status:accepted', ARGV[6], member)
return {'accepted', record(id)}
"""

# ARGV: now, lease_until, token, token milliseconds, history entry. A token seen before
# answers its claim again (the same call, resent); the token lives one lease.
_CLAIM = r"""
local token = B .. 'claim:' .. ARGV[3]
local prior = redis.call('GET', token)
if prior then
  local tab = string.find(prior, '\t', 1, true)
  return {'claimed', record(string.sub(prior, 1, tab - 1)), string.sub(prior, tab + 1)}
end
for _ = 1, 100 do
  local due = redis.call('ZRANGEBYSCORE', B .. 'queue', '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #due == 0 then return {'none'} end
  local id = due[1]
  local status = redis.call('HGET', B .. 'rec:' .. id, 'status')
  if status == 'accepted' or status == 'posting' then
    redis.call('HINCRBY', B .. 'rec:' .. id, 'attempts', 1)
    redis.call('ZADD', B .. 'queue', ARGV[2], id)
    if status == 'accepted' then become(id, status, 'posting', ARGV[5]) end  -- a lease run out: still posting
    redis.call('SET', token, id .. '\t' .. ARGV[2], 'PX', ARGV[4])
    return {'claimed', record(id), ARGV[2]}
  end
  redis.call('ZREM', B .. 'queue', id)  -- not queueable (a bug elsewhere): never hand it out
end
return {'none'}
"""

# ARGV: id, attempt, order_number, now, history entry, posted floor, posted expiry ms,
# kept until (epoch ms).
# Already ``posted`` at that attempt: this step, resent. The last error is cleared.
_POSTED = r"""
local id = ARGV[1]
local r = redis.call('HMGET', B .. 'rec:' .. id, 'status', 'attempts', 'holds')
if r[1] == 'posted' and r[2] == ARGV[2] then return {'ok', record(id), {}} end
if r[1] ~= 'posting' or r[2] ~= ARGV[2] then return {'stale', record(id)} end
local holds = holds_of(r[3])
local bad = release(holds)
for _, h in ipairs(holds) do
  local key = B .. 'posted:' .. h[1]
  redis.call('ZADD', key, ARGV[4], h[2] .. '\t' .. id .. '\t' .. h[3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[6])
  redis.call('PEXPIRE', key, ARGV[7])
end
redis.call('ZREM', B .. 'queue', id)
redis.call('HSET', B .. 'rec:' .. id, 'order_number', ARGV[3], 'posted_at', ARGV[4])
redis.call('HDEL', B .. 'rec:' .. id, 'last_error')
become(id, 'posting', 'posted', ARGV[5])
local out = record(id)  -- before the expiry: a long-ago post (a test's clock) expires at once
keep_until(id, ARGV[8])
return {'ok', out, bad}
"""

# ARGV: id, attempt, error, due_at, history entry, spent ('1', or '0': the ERP was never asked,
# the attempt is given back). Already ``accepted`` at that attempt (or, not spent, one below it):
# this step, resent.
_RETRY = r"""
local id = ARGV[1]
local spent = ARGV[6] == '1'
local r = redis.call('HMGET', B .. 'rec:' .. id, 'status', 'attempts')
if r[1] == 'accepted' and (r[2] == ARGV[2] or (not spent and tonumber(r[2]) == tonumber(ARGV[2]) - 1)) then
  return {'ok', record(id)}
end
if r[1] ~= 'posting' or r[2] ~= ARGV[2] then return {'stale', record(id)} end
if not spent then redis.call('HINCRBY', B .. 'rec:' .. id, 'attempts', -1) end
redis.call('HSET', B .. 'rec:' .. id, 'last_error', ARGV[3])
redis.call('ZADD', B .. 'queue', ARGV[4], id)
become(id, 'posting', 'accepted', ARGV[5])
return {'ok', record(id)}
"""

# ARGV: id, attempt ('' for an operator), status, last_error ('' to keep it), history entry,
# kept until (epoch ms).
# Already in that status (at that attempt): this step, resent.
_GIVE_UP = r"""
local id, attempt, to = ARGV[1], ARGV[2], ARGV[3]
local r = redis.call('HMGET', B .. 'rec:' .. id, 'status', 'attempts', 'holds')
if not r[1] then return {'unknown'} end
local from = r[1]
if from == to and (attempt == '' or r[2] == attempt) then return {'ok', record(id), {}} end
if attempt ~= '' then
  if from ~= 'posting' or r[2] ~= attempt then return {'stale', record(id)} end
elseif not (from == 'rejected' or (from == 'accepted' and never_sent(id))) then
  return {'stale', record(id)}  -- an ERP order may exist: only posting finds it by its key
end
local bad = {}
if from == 'accepted' or from == 'posting' then bad = release(holds_of(r[3])) end
redis.call('ZREM', B .. 'queue', id)
if ARGV[4] ~= '' then redis.call('HSET', B .. 'rec:' .. id, 'last_error', ARGV[4]) end
become(id, from, to, ARGV[5])
local out = record(id)
keep_until(id, ARGV[6])
return {'ok', out, bad}
"""

# ARGV: id, now, history entry, posted floor, then the lines as ``allocate`` reads them. Accepted,
# posting or posted: as it is (a replay resent, or one of an intake already on its way).
_REPLAY = r"""
local id = ARGV[1]
local r = redis.call('HMGET', B .. 'rec:' .. id, 'status', 'holds', 'attempts')
if not r[1] then return {'unknown'} end
if r[1] == 'cancelled' then return {'stale', record(id)} end
if r[1] ~= 'rejected' and r[1] ~= 'dead_lettered' then return {'ok', record(id)} end
local holds, text, short = allocate(5, tonumber(ARGV[4]))
if #short > 0 then return {'short', short} end
rehold(holds)
redis.call('HSET', B .. 'rec:' .. id, 'replayed_after', r[3], 'holds', text)
redis.call('ZADD', B .. 'queue', ARGV[2], id)
become(id, r[1], 'accepted', ARGV[3])
keep_until(id, nil)
return {'ok', record(id)}
"""

# Reads: one script each, so each answers one consistent state.
_GET = r"""
return {record(ARGV[1])}
"""

# ARGV: key ('' for none), reference ('' for none): the key's intake, else the reference's.
_FIND = r"""
local id = false
if ARGV[1] ~= '' then id = redis.call('GET', B .. 'key:' .. ARGV[1]) end
if not id and ARGV[2] ~= '' then id = redis.call('GET', B .. 'ref:' .. ARGV[2]) end
if not id then return {false} end
return {record(id)}
"""

# ARGV: index ('all' or 'status:<s>'), limit.
_LIST = r"""
local out = {}
for _, member in ipairs(redis.call('ZREVRANGE', B .. ARGV[1], 0, tonumber(ARGV[2]) - 1)) do
  local found = record(string.sub(member, string.find(member, '\t', 1, true) + 1))
  if found then out[#out + 1] = found end
end
return out
"""

# ARGV: posted floor, then the SKUs.
_LEDGER = r"""
local out = {}
for j = 2, #ARGV do
  out[#out + 1] = {
    redis.call('HGETALL', B .. 'active:' .. ARGV[j]),
    redis.call('ZRANGEBYSCORE', B .. 'posted:' .. ARGV[j], ARGV[1], '+inf', 'WITHSCORES'),
  }
end
return out
"""

_NEXT_DUE = r"""
return redis.call('ZRANGE', B .. 'queue', 0, 0, 'WITHSCORES')
"""

_SCRIPTS = {
    "intake-accept": _ACCEPT,
    "intake-claim": _CLAIM,
    "intake-posted": _POSTED,
    "intake-retry": _RETRY,
    "intake-give-up": _GIVE_UP,
    "intake-replay": _REPLAY,
    "intake-get": _GET,
    "intake-find": _FIND,
    "intake-list": _LIST,
    "intake-ledger": _LEDGER,
    "intake-next-due": _NEXT_DUE,
}


class _Fixed(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a record no step changes (``request`` is stored raw beside them)."""

    intake_id: str
    external_ref: str
    key: str
    fingerprint: str
    accepted_at: float
    ref_key: str = ""


_fixed_decoder = msgspec.json.Decoder(_Fixed)
_transition_decoder = msgspec.json.Decoder(Transition)
_encoder = msgspec.json.Encoder()


class RedisIntakeStore(IntakeStore):
    """Intakes in Redis through the strict ``SharedState``; a failure raises
    ``IntakeStoreUnavailable``. ``posted_hold_seconds``: how long a posted hold counts against
    snapshots read before it (longer than any snapshot intake accepts)."""

    def __init__(
        self, shared: SharedState, *, posted_hold_seconds: float, retention_seconds: float = 30 * 86_400
    ) -> None:
        if posted_hold_seconds <= 0 or retention_seconds <= posted_hold_seconds:
            raise ValueError("posted_hold_seconds must be > 0 and retention_seconds longer")
        self._shared = shared
        self._posted_hold = float(posted_hold_seconds)
        self._retention = float(retention_seconds)
        for name, source in _SCRIPTS.items():
            shared.register_script(name, _PRELUDE + source)

    async def _run(self, script: str, *args: Any) -> Any:
        try:
            return await self._shared.run_script(script, [BASE], args)
        except SharedStateUnavailable as exc:
            raise IntakeStoreUnavailable(str(exc)) from exc

    def _kept_until_ms(self, now: float) -> int:
        return int((float(now) + self._retention) * 1000)

    def _floor(self, now: float) -> float:
        return float(now) - self._posted_hold

    async def accept(self, draft: IntakeRecord, needs: Sequence[LineNeed], now: float) -> Outcome:
        fixed = _Fixed(
            intake_id=draft.intake_id,
            external_ref=draft.external_ref,
            key=draft.key,
            fingerprint=draft.fingerprint,
            accepted_at=draft.accepted_at,
            ref_key=draft.reference,
        )
        lines = _lines(needs)
        reply = await self._run(
            "intake-accept",
            draft.intake_id,
            draft.key,
            draft.fingerprint,
            draft.reference,
            float(now),
            float(draft.accepted_at),
            _encoder.encode(fixed),
            draft.request,
            _entry("accepted", now),
            self._floor(now),
            *lines,
            self._retention,
        )
        tag = _text(reply[0])
        if tag == "accepted":
            return Accepted(record=_record(reply[1]))
        if tag == "replayed":
            return Replayed(record=_record(reply[1]))
        if tag == "key_reused":
            return KeyReused()
        if tag == "already_submitted":
            return AlreadySubmitted(intake_id=_text(reply[1]))
        return _short(reply[1])

    async def get(self, intake_id: str) -> IntakeRecord | None:
        reply = await self._run("intake-get", intake_id)
        return _record(reply[0]) if reply and reply[0] else None

    async def find(self, *, key: str | None = None, reference: str | None = None) -> IntakeRecord | None:
        if not key and not reference:
            return None
        reply = await self._run("intake-find", key or "", reference or "")
        return _record(reply[0]) if reply and reply[0] else None

    async def list(self, status: IntakeStatus | None, limit: int) -> builtins.list[IntakeRecord]:
        if limit <= 0:
            return []
        reply = await self._run("intake-list", "all" if status is None else f"status:{status}", limit)
        return [_record(raw) for raw in reply]

    async def ledger(self, skus: Sequence[str], now: float) -> HoldLedger:
        wanted = builtins.list(dict.fromkeys(skus))
        if not wanted:
            return HoldLedger(active={}, posted={})
        reply = await self._run("intake-ledger", self._floor(now), *wanted)
        active: dict[tuple[str, str], int] = {}
        posted: dict[tuple[str, str], builtins.list[tuple[float, int]]] = {}
        for sku, (fields, entries) in zip(wanted, reply, strict=True):
            for warehouse, units in zip(fields[::2], fields[1::2], strict=True):
                if int(units) > 0:
                    active[(sku, _text(warehouse))] = int(units)
            for member, score in zip(entries[::2], entries[1::2], strict=True):
                warehouse, _, units = _text(member).split("\t")
                posted.setdefault((sku, warehouse), []).append((float(score), int(units)))
        return HoldLedger(active=active, posted={place: tuple(held) for place, held in posted.items()})

    async def claim(self, now: float, lease_seconds: float, token: str) -> Claimed | None:
        lease_until = float(now) + float(lease_seconds)
        token_ms = max(1, int(lease_seconds * 1000))
        reply = await self._run("intake-claim", float(now), lease_until, token, token_ms, _entry("posting", now))
        if _text(reply[0]) == "none" or not reply[1]:
            return None
        return Claimed(record=_record(reply[1]), lease_until=float(reply[2]))

    async def next_due(self) -> float | None:
        reply = await self._run("intake-next-due")
        return float(reply[1]) if reply else None

    async def posted(self, intake_id: str, attempt: int, order_number: str, now: float) -> IntakeRecord:
        expiry_ms = int(self._posted_hold * 1000) + POSTED_EXPIRY_MARGIN_MS
        reply = await self._run(
            "intake-posted",
            intake_id,
            attempt,
            order_number,
            float(now),
            _entry("posted", now, order_number),
            self._floor(now),
            expiry_ms,
            self._kept_until_ms(now),
        )
        return _settled(reply, intake_id, "posted")

    async def retry(
        self, intake_id: str, attempt: int, error: str, due_at: float, now: float, *, spent: bool = True
    ) -> IntakeRecord:
        entry = _entry("accepted", now, error)
        reply = await self._run("intake-retry", intake_id, attempt, error, float(due_at), entry, "1" if spent else "0")
        return _settled(reply, intake_id, "retry")

    async def give_up(
        self,
        intake_id: str,
        attempt: int | None,
        status: Literal["rejected", "dead_lettered", "cancelled"],
        detail: str,
        now: float,
    ) -> IntakeRecord:
        # the ERP's refusal or the last failure is the intake's error; an operator's reason is not
        last_error = "" if status == "cancelled" else detail
        reply = await self._run(
            "intake-give-up",
            intake_id,
            "" if attempt is None else attempt,
            status,
            last_error,
            _entry(status, now, detail),
            self._kept_until_ms(now),
        )
        return _settled(reply, intake_id, "give_up")

    async def replay(self, intake_id: str, detail: str, now: float, needs: Sequence[LineNeed]) -> IntakeRecord | Short:
        entry = _entry("accepted", now, detail)
        reply = await self._run("intake-replay", intake_id, float(now), entry, self._floor(now), *_lines(needs))
        if _text(reply[0]) == "short":
            return _short(reply[1])
        return _settled(reply, intake_id, "replay")


def _short(lines: Any) -> Short:
    return Short(lines=tuple(ShortLine(line=int(n), sku=_text(sku), available=int(a)) for n, sku, a in lines))


def _lines(needs: Sequence[LineNeed]) -> list[Any]:
    """The lines as the scripts' ``allocate`` reads them: their count, then each line."""
    lines: list[Any] = [len(needs)]
    for need in needs:
        _check_name(need.sku)
        lines += [need.line, need.sku, need.quantity, float(need.snapshot_at), len(need.stock)]
        for warehouse, stock in need.stock:
            _check_name(warehouse)
            lines += [warehouse, stock]
    return lines


def _settled(reply: Any, intake_id: str, step: str) -> IntakeRecord:
    """The record a transition answered; ``Stale``/``KeyError`` for a refusal; a release that
    would have gone below zero (a bug: releases happen exactly once) is logged."""
    tag = _text(reply[0])
    if tag == "unknown":
        raise KeyError(intake_id)
    if tag == "stale":
        raise Stale(_record(reply[1]) if reply[1] else None)
    if len(reply) > 2 and reply[2]:
        log.error("intake %s: %s released more than was held: %s", intake_id, step, [_text(b) for b in reply[2]])
    return _record(reply[1])


def _record(raw: Sequence[Any]) -> IntakeRecord:
    fixed_json, request, status, attempts, holds, order_number, last_error, posted_at, replayed_after, history = raw
    fixed = _fixed_decoder.decode(fixed_json)
    return IntakeRecord(
        intake_id=fixed.intake_id,
        external_ref=fixed.external_ref,
        key=fixed.key,
        fingerprint=fixed.fingerprint,
        request=bytes(request),
        holds=_holds(_text(holds or b"")),
        status=cast(IntakeStatus, _text(status)),  # written by these scripts only
        accepted_at=fixed.accepted_at,
        attempts=int(attempts),
        order_number=_text(order_number) if order_number else None,
        last_error=_text(last_error) if last_error else None,
        posted_at=float(posted_at) if posted_at else None,
        history=tuple(_transition_decoder.decode(entry) for entry in history),
        ref_key=fixed.ref_key or fixed.external_ref,
        replayed_after=int(replayed_after or 0),
    )


def _holds(text: str) -> tuple[Hold, ...]:
    holds = []
    for row in text.split("\n") if text else ():
        sku, warehouse, units = row.split("\t")
        holds.append(Hold(sku=sku, warehouse=warehouse, quantity=int(units)))
    return tuple(holds)


def _entry(status: IntakeStatus, now: float, detail: str | None = None) -> bytes:
    return _encoder.encode(Transition(status=status, at=float(now), detail=detail))


def _check_name(name: str) -> None:
    if "\t" in name or "\n" in name:
        raise ValueError(f"{name!r}: SKUs and warehouse codes carry no tab or newline")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
