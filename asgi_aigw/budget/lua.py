"""The Redis Lua scripts. Every key of one call shares the tenant's hash tag, so the scripts run on one
Redis Cluster slot. Numbers are integers (tokens, requests, nano-dollars), exact in Lua's doubles."""

from __future__ import annotations

#: KEYS[1] the tenant's override hash, KEYS[2..n+1] the slot counters.
#: ARGV[1] n, then per slot: window name, default limit (-1: none), amount, expire-at (epoch seconds).
#: Returns {allowed (1/0), used_1, limit_1, ..., used_n, limit_n}.
RESERVE = """
local n = tonumber(ARGV[1])
local names = {}
for i = 1, n do names[i] = ARGV[2 + (i - 1) * 4] end
local overrides = redis.call('HMGET', KEYS[1], unpack(names))
local used, limits, amounts = {}, {}, {}
local allowed = 1
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local limit = tonumber(ARGV[base + 1])
  if overrides[i] then limit = tonumber(overrides[i]) end
  local amount = tonumber(ARGV[base + 2])
  local current = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  used[i], limits[i], amounts[i] = current, limit, amount
  if limit >= 0 and amount > 0 and current + amount > limit then allowed = 0 end
end
if allowed == 1 then
  for i = 1, n do
    if amounts[i] > 0 then
      local key = KEYS[i + 1]
      used[i] = redis.call('INCRBY', key, amounts[i])
      if used[i] == amounts[i] then redis.call('EXPIREAT', key, ARGV[2 + (i - 1) * 4 + 3]) end
    end
  end
end
local out = {allowed}
for i = 1, n do
  out[#out + 1] = used[i]
  out[#out + 1] = limits[i]
end
return out
"""

#: KEYS: slot counters; ARGV: one delta per key. A key that expired (its window is long over) is left
#: alone rather than created without an expiry; counters never go below zero.
SETTLE = """
for i = 1, #KEYS do
  local delta = tonumber(ARGV[i])
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local value = redis.call('INCRBY', KEYS[i], delta)
    if value < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""
