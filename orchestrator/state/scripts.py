"""The Lua scripts behind every state change of :mod:`orchestrator.state.store`.

Each script is one atomic step: it checks the writer's lease epoch, checks the
state machine, writes the hashes and appends the event to the run's stream.
Refusals come back as error replies whose first word :mod:`store` maps to an
error class: ``STALE_EPOCH``, ``ILLEGAL``, ``NO_TEAM``, ``NO_RUN``.

The statuses and the transition tables come from :mod:`orchestrator.state.status`:
the tables are passed to the scripts as JSON (``TEAM_TRANSITIONS_JSON``,
``RUN_TRANSITIONS_JSON``) and the few statuses a script names are spliced in
from the enums, so a status exists in one place only.

Every key a script touches is passed in ``KEYS`` and carries the run's hash
tag, so the scripts also run on Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TypeVar

from orchestrator.state.status import RUN_TRANSITIONS, TEAM_TRANSITIONS, RunStatus, TeamStatus

_S = TypeVar("_S", bound=str)


def _lua_table(transitions: Mapping[_S, tuple[_S, ...]]) -> str:
    return json.dumps({k: dict.fromkeys(v, True) for k, v in transitions.items()})


def _lua_in(var: str, statuses: Iterable[str]) -> str:
    """A Lua test that ``var`` is one of ``statuses`` (in a fixed order)."""
    return "(" + " or ".join(f"{var} == '{s}'" for s in sorted(statuses)) + ")"


_EPOCH_CHECK = """
local current_epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < current_epoch then
  return redis.error_reply('STALE_EPOCH ' .. epoch .. ' ' .. current_epoch)
end
"""

# KEYS: epoch, team hash, events, attempt hash, deliverables hash
# ARGV: epoch, team, to, attempt, now, reason, fields(json object), events cap, transitions(json),
#       deliverables(json object path -> hash, '' = leave them as they are)
TEAM_TRANSITION = (
    _EPOCH_CHECK
    + """
local team, to, attempt, now, reason = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local cur = redis.call('HMGET', KEYS[2], 'status', 'attempt')
local status = cur[1]
if not status then return redis.error_reply('NO_TEAM ' .. team) end
local cur_attempt = tonumber(cur[2] or '0')
if status == to and cur_attempt == attempt then return 0 end
local allowed = cjson.decode(ARGV[9])
if not (allowed[status] and allowed[status][to]) then
  return redis.error_reply('ILLEGAL ' .. team .. ' ' .. status .. ' ' .. to)
end
if attempt < cur_attempt then
  return redis.error_reply('ILLEGAL ' .. team .. ' attempt ' .. cur_attempt .. ' ' .. attempt)
end
local fields = cjson.decode(ARGV[7])
local set = {'status', to, 'attempt', tostring(attempt), 'updated', now}
for k, v in pairs(fields) do table.insert(set, k); table.insert(set, v) end
if reason ~= '' then table.insert(set, 'reason'); table.insert(set, reason) end
if to == '"""
    + TeamStatus.RUNNING
    + """' then
  table.insert(set, 'started'); table.insert(set, now)
  redis.call('HDEL', KEYS[2], 'finished')
end
if """
    + _lua_in("to", TeamStatus.FINAL)
    + """ then
  table.insert(set, 'finished'); table.insert(set, now)
end
if ARGV[10] and ARGV[10] ~= '' then
  redis.call('DEL', KEYS[5])
  local dset = {}
  for k, v in pairs(cjson.decode(ARGV[10])) do table.insert(dset, k); table.insert(dset, v) end
  if #dset > 0 then redis.call('HSET', KEYS[5], unpack(dset)) end
end
redis.call('HSET', KEYS[2], unpack(set))
if attempt > 0 then
  local aset = {'status', to, 'updated', now}
  if to == '"""
    + TeamStatus.RUNNING
    + """' then redis.call('HSETNX', KEYS[4], 'started', now) end
  if reason ~= '' then table.insert(aset, 'reason'); table.insert(aset, reason) end
  if """
    + _lua_in("to", TeamStatus.ENDS_ATTEMPT)
    + """ then
    redis.call('HSETNX', KEYS[4], 'finished', now)
  end
  for k, v in pairs(fields) do table.insert(aset, k); table.insert(aset, v) end
  redis.call('HSET', KEYS[4], unpack(aset))
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*',
  'type', 'team', 'team', team, 'from', status, 'to', to, 'attempt', tostring(attempt),
  'epoch', tostring(epoch), 'reason', reason, 'ts', now)
return 1
"""
)

# KEYS: epoch, meta, events
# ARGV: epoch, to, now, reason, fields(json), events cap, transitions(json)
RUN_TRANSITION = (
    _EPOCH_CHECK
    + """
local to, now, reason = ARGV[2], ARGV[3], ARGV[4]
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return redis.error_reply('NO_RUN') end
if status == to then return 0 end
local allowed = cjson.decode(ARGV[7])
if not (allowed[status] and allowed[status][to]) then
  return redis.error_reply('ILLEGAL run ' .. status .. ' ' .. to)
end
local set = {'status', to, 'updated', now}
for k, v in pairs(cjson.decode(ARGV[5])) do
  if k ~= '_created' then table.insert(set, k); table.insert(set, v) end
end
if reason ~= '' then table.insert(set, 'reason'); table.insert(set, reason) end
redis.call('HSET', KEYS[2], unpack(set))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
  'type', 'run', 'from', status, 'to', to, 'epoch', tostring(epoch), 'reason', reason, 'ts', now)
return 1
"""
)

# KEYS: meta, teams list, events, team hash 1..n
# ARGV: now, meta(json), events cap, team id 1..n
CREATE_RUN = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local set = {'status', '"""
    + RunStatus.PENDING
    + """', 'created', ARGV[1], 'updated', ARGV[1]}
for k, v in pairs(cjson.decode(ARGV[2])) do
  if k ~= 'status' and k ~= '_created' then table.insert(set, k); table.insert(set, v) end
end
-- Our own creation time, last: a caller's meta may hold a 'created' of its own.
table.insert(set, '_created'); table.insert(set, ARGV[1])
redis.call('HSET', KEYS[1], unpack(set))
redis.call('DEL', KEYS[2])
for i = 4, #ARGV do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  redis.call('HSET', KEYS[i], 'status', '"""
    + TeamStatus.PENDING
    + """', 'attempt', '0', 'updated', ARGV[1])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'type', 'run', 'from', '',
  'to', '"""
    + RunStatus.PENDING
    + """', 'epoch', '0', 'reason', 'created', 'ts', ARGV[1])
return 1
"""
)

# Writes guarded by the epoch. KEYS: epoch, then the keys the ops name by index.
# ARGV: epoch, ops(json list of [op, key index, args...]); op in hset, del, hincrby, hincrbyfloat
GUARDED_WRITE = (
    _EPOCH_CHECK
    + """
for _, op in ipairs(cjson.decode(ARGV[2])) do
  local name, key = op[1], KEYS[op[2]]
  if name == 'hset' then
    local args = {}
    for i = 3, #op do table.insert(args, op[i]) end
    if #args > 0 then redis.call('HSET', key, unpack(args)) end
  elseif name == 'del' then
    redis.call('DEL', key)
  elseif name == 'hincrby' then
    redis.call('HINCRBY', key, op[3], op[4])
  elseif name == 'hincrbyfloat' then
    redis.call('HINCRBYFLOAT', key, op[3], op[4])
  else
    return redis.error_reply('BAD_OP ' .. tostring(name))
  end
end
return 1
"""
)

# KEYS: lock, epoch, events
# ARGV: holder(json, unique token inside), ttl ms, now, events cap, holder description
LEASE_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if held then return {0, held, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local epoch = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'lease', 'to', 'acquired',
  'epoch', tostring(epoch), 'reason', ARGV[5], 'ts', ARGV[3])
return {1, epoch}
"""

# KEYS: lock. ARGV: holder, ttl ms
LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock, events. ARGV: holder, now, events cap, epoch
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'lease', 'to', 'released',
    'epoch', ARGV[4], 'reason', '', 'ts', ARGV[2])
  return 1
end
return 0
"""

# Agent output lines. KEYS: log stream, attempt hash. ARGV: attempt, cap, lines...
# Each entry is {a: attempt, n: line number, l: line}; n counts the attempt's lines from 1
# (the counter is the attempt hash's ``log_lines``), so a reader can tell what it missed.
APPEND_LOG = """
local count = #ARGV - 2
if count <= 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[2], 'log_lines', count) - count
for i = 3, #ARGV do
  n = n + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'a', ARGV[1], 'n', n, 'l', ARGV[i])
end
return n
"""

TEAM_TRANSITIONS_JSON = _lua_table(TEAM_TRANSITIONS)
RUN_TRANSITIONS_JSON = _lua_table(RUN_TRANSITIONS)
