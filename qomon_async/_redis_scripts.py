"""The shared bucket's Lua scripts: one per operation, each atomic inside Redis.

The bucket of a space is one Redis hash (see :mod:`qomon_async._redis_keys`) with the fields:

* ``tat``: the *theoretical arrival time* of the bucket (GCRA, virtual time), in Redis seconds.
  The bucket holds ``cap - (tat - now) * rate`` tokens; a ``tat`` in the past is a full bucket;
  a ``tat`` beyond ``now + cap / rate`` is a queue of bookings waiting for tokens.
* ``cap``, ``rate``: the shape (tokens, tokens per second), from ``X-Ratelimit-Limit``.
* ``paused``: the Redis time until which a 429 holds every request.
* ``epoch``: bumped by each 429 that extends the pause; bookings of an older epoch are void.
* ``booked``: tokens booked so far (refunds deducted): a permit remembers the figure right
  after its booking (its *mark*), so that the tokens booked after it are a difference.
* ``informed``: ``"1"`` once an answer of the space has carried the rate-limit headers.
* ``probe``: during slow start (not yet informed), the Redis time until which the one request
  allowed out is awaited; nobody else books meanwhile.

Beside it, the hash ``members`` (``KEYS[2]`` of the scripts that take it) keeps one field per
process sharing the bucket (a random id per :class:`~qomon_async.redis.RedisBucket`), valued
``"<service> <seen> <in flight> <weight>"``: its *service*, the sum of ``cost / weight`` over
its bookings (virtual time: tokens received per token of demand), the Redis time it last
spoke, its requests booked and not yet answered, and its *weight*, the tokens its requests
waiting or in flight added up to at its last booking (its demand). A process *competes* while
it has requests in flight (for at most ``stale`` seconds of silence: a dead process stops
counting) or spoke within the last ``window`` seconds.

Every script reads the time with Redis's ``TIME``, never the callers' clocks, and returns
numbers as strings (Lua numbers would be truncated to integers by the protocol).

A reservation of ``cost`` tokens advances ``tat`` by ``cost / rate``; the request may go at
``tat - cap / rate`` (and never during a pause). Reservations are therefore served in the order
Redis received them, whatever their cost: a 5-token create is never overtaken by 1-token calls
booked after it.

Arrival order alone is not a fair share while the bucket holds tokens: nobody queues then, and
a process that comes back sooner (a shorter round trip, a warm connection, a CPU it was not
descheduled from, the slow-start probe's owner who learns first that the space is informed)
takes more of the burst; in arrival order afterwards, every process gets one turn per round,
so that lead is never made up. So a booking also keeps, for every other competing process,
the tokens that process needs to catch up with the booker's service at its own weight (the
*claims*): a booking is made when the bucket will hold its cost and the headroom at once,
the claims still in it. Until then the process books nothing (it asks again later), so that
the others' next bookings, in the burst or in the queue, come before its own; if they do not
come, it books when the bucket would be full at the latest (claims never exceed
``cap - headroom - cost``), so no refill is lost. A request's service is counted at its
booking (at the weight then) and counted again when it ends (at the weight then: a starting
process's weight understates its demand); a process's first request is not counted at all.
With equal demands the shares are equal; with unequal ones, proportional to the tokens each
process has waiting or in flight, as arrival order gives them once requests queue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["INDOUBT_RECORD", "OBSERVE", "PAUSE", "RELEASE", "RESERVE", "Script"]


@dataclass(frozen=True)
class Script:
    """One Lua script and its SHA1 (for ``EVALSHA``)."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()  # Redis's id of the script


# Shared prologue: the clock and the state. ARGV[1], ARGV[2]: default capacity and rate.
_PROLOGUE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local key = KEYS[1]
local s = redis.call('HMGET', key, 'tat', 'cap', 'rate', 'paused', 'epoch', 'informed', 'probe',
  'booked')
local cap = tonumber(s[2]) or tonumber(ARGV[1])
local rate = tonumber(s[3]) or tonumber(ARGV[2])
local tat = tonumber(s[1]) or now
local paused = tonumber(s[4]) or 0
local epoch = tonumber(s[5]) or 0
local informed = s[6] == '1'
local probe = tonumber(s[7]) or 0
local booked = tonumber(s[8]) or 0
local ttl = tonumber(ARGV[3])
local function f(x) return string.format('%.6f', x) end
local mkey = KEYS[2]
local function keep()
  local ms = ttl
  if paused > now then ms = ms + math.ceil((paused - now) * 1000) end
  if tat > now then ms = ms + math.ceil((tat - now) * 1000) end
  redis.call('PEXPIRE', key, ms)
  if mkey and redis.call('EXISTS', mkey) == 1 then redis.call('PEXPIRE', mkey, ms) end
end
local function parse_member(raw)
  local sv, seen, fl, w = string.match(raw, '^(%S+) (%S+) (%S+) (%S+)$')
  return {tonumber(sv), tonumber(seen), tonumber(fl), tonumber(w)}
end
local function put_member(id, m)
  redis.call('HSET', mkey, id, f(m[1]) .. ' ' .. f(m[2]) .. ' ' .. tostring(m[3]) .. ' '
    .. f(m[4]))
end
-- A request of member ``id`` (``cost`` tokens, ``charged`` service counted at its booking)
-- is over: ``refund``: it never left, its service is taken back; else its service is counted
-- again at ``weight``, its process's weight now. At its booking the process's other requests
-- may not have been asked for yet (a process starting, a slow-start probe): the weight then
-- understates its demand.
local function member_done(id, refund, cost, weight, charged)
  if not mkey or id == '' then return end
  local raw = redis.call('HGET', mkey, id)
  if not raw then return end
  local m = parse_member(raw)
  m[3] = math.max(m[3] - 1, 0)
  m[2] = now
  if charged < 0 then
    -- not counted
  elseif refund then
    m[1] = m[1] - charged
  elseif weight > 0 then
    local amount = math.min(cost, cap)
    m[1] = m[1] + amount / math.max(weight, amount) - charged
  end
  put_member(id, m)
end
"""

#: KEYS: the bucket, the members (optional). ARGV: cap, rate, ttl_ms, cost, max_wait (-1:
#: none), max_pause (-1: none), probe_ttl, epoch (-1: a new booking; else confirm the booking
#: ``mark`` of that epoch), mark, headroom, member id ('': no share kept), window (0: arrival
#: order only), stale, weight (the tokens of this process's requests waiting or in flight,
#: this one included).
#: Returns {status, wait, mark, epoch, probe}: status "ok" (booked, go after ``wait`` seconds),
#: "timeout" (the wait would exceed max_wait: nothing booked), "pause" (a 429 pause longer
#: than max_pause: ``wait`` is what is left of it), "probe" (slow start: poll after ``wait``),
#: "defer" (this process is ahead of its share: nothing booked, ask again after ``wait``);
#: ``probe`` is "1" when this booking is the one request let out during slow start; a sixth
#: item, when "ok", is the service counted for this booking (see RELEASE and OBSERVE).
RESERVE = Script(
    "reserve",
    _PROLOGUE
    + """
local cost = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local max_pause = tonumber(ARGV[6])
local probe_ttl = tonumber(ARGV[7])
local want_epoch = tonumber(ARGV[8])
local mark = tonumber(ARGV[9])
local headroom = tonumber(ARGV[10])
if want_epoch >= 0 and want_epoch == epoch and paused <= now then
  keep()
  return {'ok', '0', f(mark), tostring(epoch), '0'}
end
local me = ARGV[11] or ''
local window = tonumber(ARGV[12]) or 0
local stale = tonumber(ARGV[13]) or 0
local weight = tonumber(ARGV[14]) or 0
local amount = cost
if amount > cap then amount = cap end
if weight < amount then weight = amount end
local fair = mkey ~= nil and me ~= '' and window > 0 and amount > 0
local mine = nil
local newcomer = false
local others = {}
if fair then
  -- The other processes competing now, and this one's record. One back from silence starts
  -- level with the least served of those competing (or with the most served of the recent
  -- ones, when nobody competes): no claim on what it did not ask for. A newcomer may claim
  -- up to a bucket's worth of what the others took before it came: processes started
  -- together reach Redis some milliseconds apart, and the first takes the burst meanwhile.
  local all = redis.call('HGETALL', mkey)
  local low = nil
  local high = nil
  for i = 1, #all, 2 do
    local m = parse_member(all[i + 1])
    local present = m[2] >= now - window or (m[3] > 0 and m[2] >= now - stale)
    if all[i] == me then
      mine = m
      mine[5] = present
    elseif m[2] < now - stale and not present then
      redis.call('HDEL', mkey, all[i])
    else
      if high == nil or m[1] > high then high = m[1] end
      if present then
        others[#others + 1] = m
        if low == nil or m[1] < low then low = m[1] end
      end
    end
  end
  local level = low or high
  if mine == nil then
    newcomer = true
    mine = {0, now, 0, weight, true}
    if level ~= nil then mine[1] = math.max(level - cap / weight, 0) end
  elseif not mine[5] and level ~= nil and level > mine[1] then
    mine[1] = level
  end
  mine[2] = now
  mine[4] = weight
end
-- Record this process (``booked``: a new booking was made; ``dropped``: a booking voided by
-- a 429 is given up). A slow-start probe's service is counted when it ends; a process's first
-- request is not counted (``charged`` -1): its demand is not known yet (a starting process
-- asks for its other requests after the first answer).
local probing = not informed and probe_ttl > 0
local charged = 0
local function save(booked, dropped)
  if not fair then return end
  if booked then
    if newcomer then
      charged = -1
    elseif not probing then
      charged = amount / weight
    end
    mine[1] = mine[1] + math.max(charged, 0)
    mine[3] = mine[3] + 1
  end
  if dropped then mine[3] = math.max(mine[3] - 1, 0) end
  put_member(me, mine)
end
local pause_left = paused - now
if pause_left < 0 then pause_left = 0 end
if max_pause >= 0 and pause_left > max_pause then
  save(false, want_epoch >= 0)
  if fair then keep() end
  return {'pause', f(pause_left), '0', tostring(epoch), '0'}
end
if not informed and probe_ttl > 0 and probe > now then
  save(false, false)
  if fair then keep() end
  local poll = probe - now
  if poll > 0.002 then poll = 0.002 end
  return {'probe', f(poll), '0', tostring(epoch), '0'}
end
local base = tat
if base < now then base = now end
local new_tat = base + amount / rate
-- A request goes when ``headroom`` tokens remain after it: what requests lose on their way
-- while the server's bucket is full (refill it cannot hold) must not make a 429.
if headroom > cap - amount then headroom = cap - amount end
if headroom < 0 then headroom = 0 end
-- The claims: what each other competing process needs to catch up with this one's service at
-- its own weight stays in the bucket for it, up to the point where the bucket would be full.
local claims = 0
if fair then
  for _, m in ipairs(others) do
    local lead = mine[1] - m[1]
    if lead > 0 then claims = claims + lead * m[4] end
  end
  if claims > cap - headroom - amount then claims = cap - headroom - amount end
  if claims < 0 then claims = 0 end
end
local allow = new_tat - (cap - headroom) / rate
if allow < paused then allow = paused end
if allow < now then allow = now end
local fair_allow = allow
if claims > 0 then
  fair_allow = new_tat - (cap - headroom - claims) / rate
  if fair_allow < allow then fair_allow = allow end
end
local wait = fair_allow - now
if max_wait >= 0 and wait > max_wait then
  save(false, want_epoch >= 0)
  if fair then keep() end
  return {'timeout', f(wait), '0', tostring(epoch), '0'}
end
if fair_allow > allow + 1e-6 then
  -- Ahead of its share: book nothing yet (a booking would take a place in the queue before
  -- the others' next ones); ask again when the claims allow it, or after one request's worth
  -- of refill (the others may have claimed theirs by then).
  save(false, false)
  keep()
  local poll = math.min(fair_allow - allow, amount / rate)
  return {'defer', f(math.max(poll, 0.002)), '0', tostring(epoch), '0'}
end
wait = allow - now
-- A booking voided by a 429 and made again is counted once.
if want_epoch < 0 then booked = booked + amount end
save(want_epoch < 0, false)
redis.call('HSET', key, 'tat', f(new_tat), 'cap', f(cap), 'rate', f(rate), 'booked', f(booked))
local is_probe = '0'
if probing then
  redis.call('HSET', key, 'probe', f(now + probe_ttl))
  is_probe = '1'
end
tat = new_tat
keep()
return {'ok', f(wait), f(booked), tostring(epoch), is_probe, f(charged)}
""",
)

#: KEYS: the bucket, the members (optional). ARGV: cap, rate, ttl_ms, cost, epoch, refund
#: (0/1), probe (0/1: this permit was the probe), member id ('': none), the process's weight
#: now, the service counted at the booking. A request is over
#: without an answer: gives back an unsent booking of the current epoch (and the member's
#: service for it, whatever the epoch); ends a slow-start probe.
RELEASE = Script(
    "release",
    _PROLOGUE
    + """
local cost = tonumber(ARGV[4])
local permit_epoch = tonumber(ARGV[5])
if ARGV[7] == '1' and not informed then redis.call('HDEL', key, 'probe') end
member_done(ARGV[8] or '', ARGV[6] == '1', cost, tonumber(ARGV[9]) or 0,
  tonumber(ARGV[10]) or 0)
if ARGV[6] == '1' and permit_epoch == epoch and s[1] then
  local amount = cost
  if amount > cap then amount = cap end
  local back = tat - amount / rate
  if back < now then back = now end
  redis.call('HSET', key, 'tat', f(back), 'booked', f(booked - amount))
  tat = back
  keep()
  return '1'
end
return '0'
""",
)

#: KEYS: the bucket, the members (optional). ARGV: cap, rate, ttl_ms, mark (``booked`` after
#: the permit's booking), epoch, server tokens after the request (-1: unknown), new capacity
#: (-1), new rate (-1), age (seconds since the answer reached its process), member id ('':
#: none), cost, the process's weight now, the service counted at the booking.
#: Returns {lowered (0/1), reshaped (0/1), tokens taken off}. Only ever lowers the bucket: an
#: answer that says "more" than Redis knows is ignored (other processes may have spent since);
#: a lowering needs two answers in a row that call for it, and takes the smaller of the two.
OBSERVE = Script(
    "observe",
    _PROLOGUE
    + """
local mark = tonumber(ARGV[4])
local permit_epoch = tonumber(ARGV[5])
local server = tonumber(ARGV[6])
local new_cap = tonumber(ARGV[7])
local new_rate = tonumber(ARGV[8])
local age = tonumber(ARGV[9])
member_done(ARGV[10] or '', false, tonumber(ARGV[11]) or 0, tonumber(ARGV[12]) or 0,
  tonumber(ARGV[13]) or 0)
local reshaped = 0
local lowered = 0
local excess = 0
if new_cap > 0 and new_rate > 0 and (math.abs(new_cap - cap) > 1e-9
    or math.abs(new_rate - rate) > 1e-9) then
  local level = cap - math.max(tat - now, 0) * rate
  if level > new_cap then level = new_cap end
  tat = now + (new_cap - level) / new_rate
  cap = new_cap
  rate = new_rate
  reshaped = 1
  redis.call('HSET', key, 'tat', f(tat), 'cap', f(cap), 'rate', f(rate))
end
if server >= 0 then
  if not informed then
    redis.call('HSET', key, 'informed', '1')
    redis.call('HDEL', key, 'probe')
  end
  if server > cap then server = cap end
  do
    -- Any answer may lower, even one to a request sent before the latest 429 pause: what it
    -- says was spent, was spent. Everything booked after this request (sent or still
    -- waiting) counts as spent. The refill is credited from when the answer reached its
    -- process (``age`` seconds ago), not for its way from the server: a margin of half a
    -- round trip.
    local later = booked - mark
    if later < 0 then later = 0 end
    local target = now - age + (cap - server + later) / rate
    -- A correction needs two answers in a row that call for it: an answer that its process
    -- observed late (a stalled event loop) looks like spending by others once, a real
    -- consumer outside Redis shows in every answer that follows.
    local seen = (target - tat) * rate
    local before = tonumber(redis.call('HGET', key, 'excess')) or 0
    excess = math.min(seen, before)
    if excess > 1e-6 then
      tat = tat + excess / rate
      redis.call('HSET', key, 'tat', f(tat), 'cap', f(cap), 'rate', f(rate))
      lowered = 1
    else
      excess = 0
    end
    redis.call('HSET', key, 'excess', f(seen - excess))
  end
end
keep()
return {tostring(lowered), tostring(reshaped), f(excess)}
""",
)

#: ARGV: cap, rate, ttl_ms, seconds. A 429: hold every request for ``seconds``; the bucket is
#: empty now, and bookings made before are void (their owners book again). Returns
#: {seconds left of the pause, 1 when this call extended it}.
PAUSE = Script(
    "pause",
    _PROLOGUE
    + """
local seconds = tonumber(ARGV[4])
local untl = now + seconds
local extended = 0
if untl > paused then
  paused = untl
  epoch = epoch + 1
  tat = now + cap / rate
  extended = 1
  redis.call('HSET', key, 'paused', f(paused), 'epoch', tostring(epoch), 'tat', f(tat),
    'cap', f(cap), 'rate', f(rate), 'informed', '1', 'excess', '0')
  redis.call('HDEL', key, 'probe')
end
keep()
return {f(paused - now), tostring(extended)}
""",
)

#: KEYS[1]: the record; ARGV: start (UTC, seconds since the epoch), ttl_ms. Keeps the earliest
#: start of several records and renews the expiry.
INDOUBT_RECORD = Script(
    "indoubt_record",
    """
local old = tonumber(redis.call('GET', KEYS[1]))
local start = tonumber(ARGV[1])
if old and old < start then start = old end
redis.call('SET', KEYS[1], string.format('%.6f', start), 'PX', tonumber(ARGV[2]))
return '1'
""",
)
