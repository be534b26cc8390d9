"""The Redis Lua scripts. Every key of one call shares the tenant's hash tag, so the scripts run on one
Redis Cluster slot. Numbers are integers (tokens, requests, nano-dollars), exact in Lua's doubles up to
2^53. Arguments are packed into comma-separated strings: one argument to encode instead of dozens, read
by the reserve function with one ``cjson.decode`` (Redis' built-in JSON library). The
reservation comes back as an array of integers, which hiredis parses in C and Redis writes for less
than the string a format call makes (without hiredis, the client's own parser reads it a number at a
time: the redis extra installs hiredis)."""

from __future__ import annotations

#: KEYS[1] the tenant's override hash, KEYS[2..n+1] the slot counters, KEYS[n+2] (with ARGV[3]) the
#: reservation's marker.
#: ARGV[1] "limit_1,...,limit_n,amount_1,...,amount_n,expireat_1,...,expireat_n" (limit -1: none);
#: ARGV[2] "name_1,...,name_n", the windows' names (fields of the override hash);
#: ARGV[3] (optional) when the marker expires (epoch seconds): a reservation made is marked, so that
#: the same call run twice reserves once, and its settlement applies once and only if it was made
#: (see SETTLE).
#: Returns {allowed, used_1, limit_1, ..., used_n, limit_n} (allowed 1/0): used is after the reservation
#: when allowed, else the usage that refused it; a window with no limit that the call adds nothing to
#: reports 0 (its counter is not read: no limit needs it, and most windows of a cache hit are such).
_RESERVE_FUNCTION = """
local function reserve(keys, packed, names, expiry, record)
  local n = #keys - 1
  if expiry then n = n - 1 end
  -- the same call again (a client retried after losing the reply): the reservation stands, add nothing
  local repeated = expiry and redis.call('EXISTS', keys[n + 2]) == 1
  -- one C call: a loop of string.gmatch and tonumber over the 21 numbers of seven windows took more
  -- than twice as long
  local nums = cjson.decode('[' .. packed .. ']')
  -- live overrides are rare: the names are split and the hash read only when it exists
  local overrides = {}
  if redis.call('EXISTS', keys[1]) == 1 then
    local fields = {}
    for v in string.gmatch(names, '[^,]+') do fields[#fields + 1] = v end
    overrides = redis.call('HMGET', keys[1], unpack(fields))
  end
  local used, limits = {}, {}
  local allowed = 1
  for i = 1, n do
    local limit = nums[i]
    if overrides[i] then limit = tonumber(overrides[i]) end
    local amount = nums[n + i]
    local current = 0
    if limit >= 0 or amount > 0 then current = tonumber(redis.call('GET', keys[i + 1]) or '0') end
    used[i], limits[i] = current, limit
    if limit >= 0 and amount > 0 and current + amount > limit and not repeated then allowed = 0 end
  end
  if allowed == 1 and not repeated then
    for i = 1, n do
      local amount = nums[n + i]
      if amount > 0 then
        used[i] = redis.call('INCRBY', keys[i + 1], amount)
        if used[i] == amount then redis.call('EXPIREAT', keys[i + 1], nums[2 * n + i]) end
      end
    end
    if expiry then
      redis.call('SET', keys[n + 2], record)
      redis.call('EXPIREAT', keys[n + 2], expiry)
    end
  end
  local out = {allowed}
  for i = 1, n do
    out[2 * i] = used[i]
    out[2 * i + 1] = limits[i]
  end
  return out
end
"""

RESERVE = _RESERVE_FUNCTION + "return reserve(KEYS, ARGV[1], ARGV[2], ARGV[3], '1')\n"

#: RESERVE with a lookup: KEYS as for RESERVE, then the exact cache entry, then ``ARGV[5]`` markers of
#: earlier hits to delete; ARGV[1..2] as for RESERVE, ARGV[3] the marker's expiry or "" (no marker),
#: ARGV[4] the packed numbers to reserve instead when the entry is found ("": the same as ARGV[1]),
#: ARGV[6] and ARGV[7] what the marker holds when ARGV[1], or ARGV[4], is reserved: the amounts
#: ("a_1,...,a_n", written by the client, which formats them once a minute, not by the script on every
#: call), so that a reservation whose reply was lost is given back exactly (GIVE_BACK) whether it was a
#: hit's or a miss's; a hit's marker is not settled but deleted by the client's next lookup for the
#: tenant. Returns {RESERVE's reply, the entry or nil, "1" when ARGV[4] was reserved}.
LOOKUP_RESERVE = (
    _RESERVE_FUNCTION
    + """
local stale = tonumber(ARGV[5] or '0')
local last = #KEYS - stale
for i = last + 1, #KEYS do redis.call('DEL', KEYS[i]) end
local keys = {}
for i = 1, last - 1 do keys[i] = KEYS[i] end
local entry = redis.call('GET', KEYS[last])
local expiry = ARGV[3] ~= '' and ARGV[3] or nil
local packed, hit, record = ARGV[1], '0', ARGV[6]
if entry and ARGV[4] ~= '' then packed, hit, record = ARGV[4], '1', ARGV[7] end
return {reserve(keys, packed, ARGV[2], expiry, record), entry, hit}
"""
)

#: KEYS: the reservation's marker, the slot counters; gives back what the marker says was reserved
#: (a reservation whose reply was lost: nothing when it was never made, or was settled), and deletes it.
GIVE_BACK = """
local held = redis.call('GET', KEYS[1])
if not held or held == '1' then return 0 end
redis.call('DEL', KEYS[1])
local i = 1
for v in string.gmatch(held, '[^,]+') do
  i = i + 1
  local amount = tonumber(v)
  if amount ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local value = redis.call('INCRBY', KEYS[i], -amount)
    if value < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""

#: KEYS: [the reservation's marker,] slot counters; ARGV[1] "delta_1,...,delta_n"; ARGV[2] "1" when
#: KEYS[1] is a marker: the deltas then apply only if it exists, and it is deleted, so a settlement sent
#: again (its first reply was lost) or for a reservation that was never made changes nothing. A key
#: that expired (its window is long over) is left alone rather than created without an expiry; counters
#: never go below zero.
SETTLE = """
local i = 0
if ARGV[2] == '1' then
  if redis.call('DEL', KEYS[1]) == 0 then return 0 end
  i = 1
end
for v in string.gmatch(ARGV[1], '[^,]+') do
  i = i + 1
  local delta = tonumber(v)
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local value = redis.call('INCRBY', KEYS[i], delta)
    if value < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""
