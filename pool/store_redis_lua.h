/*
 * store_redis_lua: the Lua scripts of the Redis store, one per operation
 * that touches more than one key (so each is atomic), as C strings. Every
 * script starts with the common prelude and reads ARGV[1] (sandpool's own
 * key prefix), ARGV[2] (REDIS_CONTAINER_POOL_KEY), ARGV[3]
 * (REDIS_PORT_KEY); its own arguments start at ARGV[4]. Record keys are
 * container names, as in the Python server. The key schema is described in
 * runtime-sandbox-server-redis(7).
 */
#ifndef SANDPOOL_STORE_REDIS_LUA_H
#define SANDPOOL_STORE_REDIS_LUA_H

/* clang-format off */
#define SRL_PRELUDE \
"local P, POOL, PORTS = ARGV[1], ARGV[2], ARGV[3]\n" \
"local function nul(v) return v == nil or v == cjson.null end\n" \
"local function rec(name)\n" \
"  local j = redis.call('GET', name)\n" \
"  if not j then return nil end\n" \
"  local ok, o = pcall(cjson.decode, j)\n" \
"  if not ok or type(o) ~= 'table' then return 'error', j, {} end\n" \
"  local st = o.state\n" \
"  if nul(st) then st = 'running' end\n" \
"  return st, j, o\n" \
"end\n" \
"local function active(st) return st == 'warm' or st == 'running' end\n" \
"local function elname(el)\n" \
"  if string.sub(el, 1, 1) ~= '{' then return el end\n" \
"  local n = string.match(el, '^{\"session_id\":[^,]*,\"container_id\":[^,]*,' ..\n" \
"    '\"container_name\":\"([%w_.-]+)\",')\n" \
"  if n then return n end\n" \
"  local ok, o = pcall(cjson.decode, el)\n" \
"  if ok and type(o) == 'table' and type(o.container_name) == 'string'\n" \
"  then return o.container_name end\n" \
"  return nil\n" \
"end\n" \
"local function pend(name)\n" \
"  local v = redis.call('HGET', P .. 'pending', name)\n" \
"  if not v then return nil end\n" \
"  return string.match(v, '^(%S+) (%S+) (%S+)$')\n" \
"end\n" \
"local function port_free(name)\n" \
"  local p = redis.call('HGET', P .. 'port:of', name)\n" \
"  if not p then return end\n" \
"  if redis.call('HGET', P .. 'port:owner', p) == name then\n" \
"    redis.call('SREM', PORTS, p)\n" \
"    redis.call('HDEL', P .. 'port:owner', p)\n" \
"  end\n" \
"  redis.call('HDEL', P .. 'port:of', name)\n" \
"end\n" \
"local function sess_add(s, name)\n" \
"  local k = 'session_mapping:' .. s\n" \
"  local cur = redis.call('GET', k)\n" \
"  if not cur and string.find(name, '^[%w_.-]+$') then\n" \
"    redis.call('SET', k, '[\"' .. name .. '\"]')\n" \
"    redis.call('SADD', P .. 'sessions', s)\n" \
"    return\n" \
"  end\n" \
"  local a = {}\n" \
"  if cur then local ok, v = pcall(cjson.decode, cur)\n" \
"    if ok and type(v) == 'table' then a = v end end\n" \
"  for _, n in ipairs(a) do if n == name then return end end\n" \
"  table.insert(a, name)\n" \
"  redis.call('SET', k, cjson.encode(a))\n" \
"  redis.call('SADD', P .. 'sessions', s)\n" \
"end\n" \
"local function creating()\n" \
"  local n = 0\n" \
"  for _, v in ipairs(redis.call('HVALS', P .. 'pending')) do\n" \
"    if string.sub(v, 1, 6) ~= 'claim ' then n = n + 1 end\n" \
"  end\n" \
"  return n\n" \
"end\n" \
"local function hb_index(s, hb)\n" \
"  local cur = redis.call('ZSCORE', P .. 'heartbeats', s)\n" \
"  if not cur or tonumber(cur) < tonumber(hb) then\n" \
"    redis.call('ZADD', P .. 'heartbeats', hb, s) end\n" \
"end\n" \
"local function set_rec(name, json, act, sess, hb, dead)\n" \
"  redis.call('SET', name, json)\n" \
"  redis.call('SADD', P .. 'records', name)\n" \
"  if act == '1' then redis.call('SADD', P .. 'active', name)\n" \
"  else redis.call('SREM', P .. 'active', name) end\n" \
"  if sess ~= '' and hb ~= '' then hb_index(sess, hb) end\n" \
"  if dead ~= '' then redis.call('ZADD', P .. 'dead', dead, name)\n" \
"  else redis.call('ZREM', P .. 'dead', name) end\n" \
"end\n"

/*
 * PUT: name, json, active (1/0), expected state or "", then the record's
 * index entries: session, heartbeat ("" unless running in a session),
 * collect-after time ("" unless released, replaced or in error).
 */
#define SRL_PUT SRL_PRELUDE \
"local name, json, act, expect = ARGV[4], ARGV[5], ARGV[6], ARGV[7]\n" \
"if expect ~= '' then\n" \
"  local st = rec(name)\n" \
"  if st == nil then return 'NOENT' end\n" \
"  if st ~= expect then return 'CONFLICT' end\n" \
"end\n" \
"set_rec(name, json, act, ARGV[8], ARGV[9], ARGV[10])\n" \
"return 'OK'\n"

/* DEL: name. */
#define SRL_DEL SRL_PRELUDE \
"redis.call('SREM', P .. 'records', ARGV[4])\n" \
"redis.call('SREM', P .. 'active', ARGV[4])\n" \
"redis.call('ZREM', P .. 'dead', ARGV[4])\n" \
"return redis.call('DEL', ARGV[4])\n"

/* POOL_PUSH: type, name (the record snapshot is pushed, as Python does). */
#define SRL_POOL_PUSH SRL_PRELUDE \
"local j = redis.call('GET', ARGV[5])\n" \
"return redis.call('RPUSH', POOL .. ':' .. ARGV[4], j or ARGV[5])\n"

/*
 * CLAIM: type, owner, ttl ms, then the claim's pieces from
 * sbx_claim_patch (meta, state group, updated_at), session, heartbeat.
 * Pops until a record that is still warm and unbound, and binds it in
 * place. A record as sbx_gen writes it is recognised, warm and unbound,
 * without decoding it: its container_name, an empty meta, then the state
 * group of a warm unbound record, with no object opened before that
 * group but meta's own "{}" (so they are top-level members: a value never
 * holds an unescaped '"'). The pieces are spliced in where sbx_gen puts
 * them, the text is written back and the session maps to it: returns
 * { 1, new JSON }. A warm record in any other form (written by another
 * server) becomes a "claim" pending entry of owner instead, for the
 * caller to bind and COMMIT (a dead owner's claim goes back to the pool):
 * returns { 0, its JSON }.
 */
#define SRL_CLAIM SRL_PRELUDE \
"local typ, owner, ttl = ARGV[4], ARGV[5], ARGV[6]\n" \
"local meta, stp, upd, sess, hb = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]\n" \
"local M = ',\"meta\":{},\"timeout\":'\n" \
"local W = ',\"state\":\"warm\",\"session_ctx_id\":null,\"last_active_at\":null,'\n" \
"local function bind(name, j)\n" \
"  local a, b = string.find(j, M, 1, true)\n" \
"  if not a or string.find(j, '{', 2, true) ~= a + 8 then return nil end\n" \
"  local n = string.find(j, ',\"container_name\":\"' .. name .. '\",', 1, true)\n" \
"  if not n or n > a then return nil end\n" \
"  local c, d = string.find(j, W, b, true)\n" \
"  if not c then return nil end\n" \
"  local o = string.find(j, '{', b, true)\n" \
"  if o and o < d then return nil end\n" \
"  local e, f = string.find(j, ',\"updated_at\":[^,]*,', d)\n" \
"  if not e then return nil end\n" \
"  return string.sub(j, 1, a - 1) .. ',\"meta\":' .. meta .. ',\"timeout\":' ..\n" \
"    string.sub(j, b + 1, c - 1) .. stp .. string.sub(j, d + 1, e - 1) ..\n" \
"    upd .. string.sub(j, f + 1)\n" \
"end\n" \
"for _ = 1, 64 do\n" \
"  local el = redis.call('LPOP', POOL .. ':' .. typ)\n" \
"  if not el then return false end\n" \
"  local name = elname(el)\n" \
"  if name and redis.call('HEXISTS', P .. 'pending', name) == 0 then\n" \
"    local j = redis.call('GET', name)\n" \
"    local nj = j and bind(name, j)\n" \
"    if nj then\n" \
"      set_rec(name, nj, '1', sess, hb, '')\n" \
"      if sess ~= '' then sess_add(sess, name) end\n" \
"      return { 1, nj }\n" \
"    end\n" \
"    local st, j, o = rec(name)\n" \
"    if st == 'warm' and nul(o.session_ctx_id) then\n" \
"      redis.call('HSET', P .. 'pending', name, 'claim ' .. typ .. ' ' .. owner)\n" \
"      if redis.call('EXISTS', P .. 'owner:' .. owner) == 0 then\n" \
"        redis.call('SET', P .. 'owner:' .. owner, '1', 'PX', ttl) end\n" \
"      return { 0, j }\n" \
"    end\n" \
"  end\n" \
"end\n" \
"return false\n"

/* POOL_COUNT: type -> idle + reserved fill slots. */
#define SRL_POOL_COUNT SRL_PRELUDE \
"return redis.call('LLEN', POOL .. ':' .. ARGV[4]) +\n" \
"  redis.call('SCARD', P .. 'warming:' .. ARGV[4])\n"

/* POOL_REMOVE: type, name. */
#define SRL_POOL_REMOVE SRL_PRELUDE \
"local key, n = POOL .. ':' .. ARGV[4], 0\n" \
"for _, el in ipairs(redis.call('LRANGE', key, 0, -1)) do\n" \
"  if elname(el) == ARGV[5] then n = n + redis.call('LREM', key, 0, el) end\n" \
"end\n" \
"return n\n"

/* SESSION_ADD: session, name. */
#define SRL_SESSION_ADD SRL_PRELUDE \
"sess_add(ARGV[4], ARGV[5])\n" \
"return 1\n"

/* SESSION_DEL: session, name (the key goes when its list empties). */
#define SRL_SESSION_DEL SRL_PRELUDE \
"local k = 'session_mapping:' .. ARGV[4]\n" \
"local cur = redis.call('GET', k)\n" \
"if not cur then redis.call('SREM', P .. 'sessions', ARGV[4]) return 0 end\n" \
"local ok, a = pcall(cjson.decode, cur)\n" \
"if not ok or type(a) ~= 'table' then a = {} end\n" \
"local b = {}\n" \
"for _, n in ipairs(a) do if n ~= ARGV[5] then table.insert(b, n) end end\n" \
"if #b == 0 then\n" \
"  redis.call('DEL', k)\n" \
"  redis.call('SREM', P .. 'sessions', ARGV[4])\n" \
"else redis.call('SET', k, cjson.encode(b)) end\n" \
"return 1\n"

/*
 * PORT_LEASE: lo, hi, name. Next-fit over [lo, hi) from a shared cursor;
 * the claim is SADD on the Python server's port set, so a port is never
 * leased twice, whoever leased it. Returns the port or -1.
 */
#define SRL_PORT_LEASE SRL_PRELUDE \
"local lo, hi, name = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]\n" \
"local n = hi - lo\n" \
"if n <= 0 then return -1 end\n" \
"local cur = tonumber(redis.call('GET', P .. 'port:cursor') or lo) or lo\n" \
"if cur < lo or cur >= hi then cur = lo end\n" \
"for i = 0, n - 1 do\n" \
"  local p = lo + ((cur - lo + i) % n)\n" \
"  if redis.call('SADD', PORTS, tostring(p)) == 1 then\n" \
"    redis.call('HSET', P .. 'port:owner', p, name)\n" \
"    redis.call('HSET', P .. 'port:of', name, p)\n" \
"    redis.call('SET', P .. 'port:cursor', p + 1)\n" \
"    return p\n" \
"  end\n" \
"end\n" \
"return -1\n"

/* PORT_FREE: port, name ("" = whoever holds it); only its owner frees. */
#define SRL_PORT_FREE SRL_PRELUDE \
"local p, name = ARGV[4], ARGV[5]\n" \
"local o = redis.call('HGET', P .. 'port:owner', p)\n" \
"if o and name ~= '' and o ~= name then return 0 end\n" \
"redis.call('SREM', PORTS, p)\n" \
"redis.call('HDEL', P .. 'port:owner', p)\n" \
"if o and redis.call('HGET', P .. 'port:of', o) == p then\n" \
"  redis.call('HDEL', P .. 'port:of', o) end\n" \
"return 1\n"

/* PORT_TAKE: port, name (adopting state). */
#define SRL_PORT_TAKE SRL_PRELUDE \
"redis.call('SADD', PORTS, ARGV[4])\n" \
"redis.call('HSET', P .. 'port:owner', ARGV[4], ARGV[5])\n" \
"redis.call('HSET', P .. 'port:of', ARGV[5], ARGV[4])\n" \
"return 1\n"

/* COUNT_ACTIVE: warm + running records + creates in flight. */
#define SRL_COUNT_ACTIVE SRL_PRELUDE \
"return redis.call('SCARD', P .. 'active') + creating()\n"

/*
 * BEGIN: name, kind, type, owner, target, max, ttl ms. A fill takes a slot
 * only while idle + reserved < target (so workers and instances together
 * never overfill); any create only while warm + running + creating < max.
 */
#define SRL_BEGIN SRL_PRELUDE \
"local name, kind, typ, owner = ARGV[4], ARGV[5], ARGV[6], ARGV[7]\n" \
"local target, max, ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]\n" \
"if kind == 'fill' and redis.call('LLEN', POOL .. ':' .. typ) +\n" \
"   redis.call('SCARD', P .. 'warming:' .. typ) >= target then\n" \
"  return 'FULL' end\n" \
"if max > 0 and redis.call('SCARD', P .. 'active') + creating() >= max then\n" \
"  return 'LIMIT' end\n" \
"redis.call('HSET', P .. 'pending', name, kind .. ' ' .. typ .. ' ' .. owner)\n" \
"if kind == 'fill' then redis.call('SADD', P .. 'warming:' .. typ, name) end\n" \
"if redis.call('EXISTS', P .. 'owner:' .. owner) == 0 then\n" \
"  redis.call('SET', P .. 'owner:' .. owner, '1', 'PX', ttl) end\n" \
"return 'OK'\n"

/*
 * COMMIT: name, owner, json, active, session, heartbeat, collect-after
 * time (as PUT). Fenced: only while the pending entry is still this
 * owner's. A fill is pushed to its pool.
 */
#define SRL_COMMIT SRL_PRELUDE \
"local name, owner, json, act, sess = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]\n" \
"local kind, typ, o = pend(name)\n" \
"if not kind or o ~= owner then return 'FENCED' end\n" \
"redis.call('HDEL', P .. 'pending', name)\n" \
"if kind == 'fill' then redis.call('SREM', P .. 'warming:' .. typ, name) end\n" \
"set_rec(name, json, act, sess, ARGV[9], ARGV[10])\n" \
"if kind == 'fill' then redis.call('RPUSH', POOL .. ':' .. typ, json) end\n" \
"if sess ~= '' then sess_add(sess, name) end\n" \
"return 'OK'\n"

/* ABORT: name, owner. */
#define SRL_ABORT SRL_PRELUDE \
"local kind, typ, o = pend(ARGV[4])\n" \
"if not kind or o ~= ARGV[5] then return 0 end\n" \
"redis.call('HDEL', P .. 'pending', ARGV[4])\n" \
"if kind == 'fill' then redis.call('SREM', P .. 'warming:' .. typ, ARGV[4]) end\n" \
"return 1\n"

/*
 * REAP: takes over the pending entries of owners whose lease expired. A
 * claim goes back to the head of its pool; a half-made create loses its
 * port and slot, is remembered as a tombstone (its container may still
 * appear), and its name is returned for the caller to remove.
 */
#define SRL_REAP SRL_PRELUDE \
"local out = {}\n" \
"local now = tonumber(redis.call('TIME')[1])\n" \
"local all = redis.call('HGETALL', P .. 'pending')\n" \
"for i = 1, #all, 2 do\n" \
"  local name = all[i]\n" \
"  local kind, typ, owner = string.match(all[i + 1], '^(%S+) (%S+) (%S+)$')\n" \
"  if not owner or redis.call('EXISTS', P .. 'owner:' .. owner) == 0 then\n" \
"    redis.call('HDEL', P .. 'pending', name)\n" \
"    if kind == 'claim' then\n" \
"      local st, j, o = rec(name)\n" \
"      if st == 'warm' and nul(o.session_ctx_id) then\n" \
"        redis.call('LPUSH', POOL .. ':' .. typ, j) end\n" \
"    else\n" \
"      if kind == 'fill' then redis.call('SREM', P .. 'warming:' .. typ, name) end\n" \
"      port_free(name)\n" \
"      redis.call('ZADD', P .. 'tombstones', now, name)\n" \
"      table.insert(out, name)\n" \
"    end\n" \
"  end\n" \
"end\n" \
"redis.call('ZREMRANGEBYSCORE', P .. 'tombstones', '-inf', now - 3600)\n" \
"return out\n"

/*
 * ORPHANS: container names... Returns the names to remove: no pending
 * entry and a terminal record, or a tombstone; "~name" for a recycled
 * one (its workspace stays). A name with neither record nor tombstone
 * comes back as "?name" (its record was lost). Also frees
 * port leases whose holder is gone (terminal for 30 s, or unknown).
 */
#define SRL_ORPHANS SRL_PRELUDE \
"local out = {}\n" \
"local now = tonumber(redis.call('TIME')[1])\n" \
"for i = 4, #ARGV do\n" \
"  local name = ARGV[i]\n" \
"  if redis.call('HEXISTS', P .. 'pending', name) == 0 then\n" \
"    local st = rec(name)\n" \
"    if st == nil then\n" \
"      if redis.call('ZSCORE', P .. 'tombstones', name) then\n" \
"        table.insert(out, name)\n" \
"      else table.insert(out, '?' .. name) end\n" \
"    elseif st == 'recycled' then table.insert(out, '~' .. name)\n" \
"    elseif not active(st) then table.insert(out, name) end\n" \
"  end\n" \
"end\n" \
"local owners = redis.call('HGETALL', P .. 'port:owner')\n" \
"for i = 1, #owners, 2 do\n" \
"  local p, name = owners[i], owners[i + 1]\n" \
"  if redis.call('HEXISTS', P .. 'pending', name) == 0 then\n" \
"    local st, j, o = rec(name)\n" \
"    local t = o and tonumber(o.updated_at) or 0\n" \
"    if st == nil or (not active(st) and now - t > 30) then\n" \
"      redis.call('SREM', PORTS, p)\n" \
"      redis.call('HDEL', P .. 'port:owner', p)\n" \
"      redis.call('HDEL', P .. 'port:of', name)\n" \
"    end\n" \
"  end\n" \
"end\n" \
"return out\n"

/* UNLOCK: key, token (compare and delete). */
#define SRL_UNLOCK SRL_PRELUDE \
"if redis.call('GET', ARGV[4]) == ARGV[5] then\n" \
"  return redis.call('DEL', ARGV[4]) end\n" \
"return 0\n"

/*
 * The two watcher scripts below find their work in an index (a sorted set
 * kept by PUT and COMMIT), so a pass costs what it finds, not what Redis
 * holds. Each also sweeps one SSCAN batch of the whole set from the
 * cursor it is given, for entries the index lacks (written by another
 * server, or by hand), and returns { next cursor, names... }.
 */

/*
 * IDLE_SESSIONS: before, cursor, count -> sessions with a running sandbox
 * whose latest heartbeat is before it. Each session looked at gets its
 * true heartbeat in the index, or leaves it when nothing of it runs.
 */
#define SRL_IDLE_SESSIONS SRL_PRELUDE \
"local before, H, out = tonumber(ARGV[4]), P .. 'heartbeats', {'0'}\n" \
"local function idle(s)\n" \
"  local cur = redis.call('GET', 'session_mapping:' .. s)\n" \
"  local ok, a = false, nil\n" \
"  if cur then ok, a = pcall(cjson.decode, cur) end\n" \
"  local hb = 0\n" \
"  if ok and type(a) == 'table' then\n" \
"    for _, n in ipairs(a) do\n" \
"      local st, j, o = rec(n)\n" \
"      if st == 'running' then\n" \
"        local t = tonumber(o.last_active_at) or 0\n" \
"        if t > hb then hb = t end\n" \
"      end\n" \
"    end\n" \
"  end\n" \
"  if hb == 0 then redis.call('ZREM', H, s) return false end\n" \
"  redis.call('ZADD', H, hb, s)\n" \
"  return hb < before\n" \
"end\n" \
"for _, s in ipairs(redis.call('ZRANGEBYSCORE', H, '-inf', '(' .. ARGV[4],\n" \
"    'LIMIT', 0, ARGV[6])) do\n" \
"  if idle(s) then table.insert(out, s) end\n" \
"end\n" \
"local sc = redis.call('SSCAN', P .. 'sessions', ARGV[5], 'COUNT', ARGV[6])\n" \
"out[1] = sc[1]\n" \
"for _, s in ipairs(sc[2]) do\n" \
"  if not redis.call('ZSCORE', H, s) and idle(s) then\n" \
"    table.insert(out, s) end\n" \
"end\n" \
"return out\n"

/*
 * GC: before, cursor, count, max. Deletes (at most max) records released
 * before it (released_at) or replaced or in error before it (updated_at),
 * unless a create holds them; returns their names.
 */
#define SRL_GC SRL_PRELUDE \
"local before, D, out = tonumber(ARGV[4]), P .. 'dead', {'0'}\n" \
"local max = tonumber(ARGV[7])\n" \
"local function collect(n)\n" \
"  local st, j, o = rec(n)\n" \
"  local t = nil\n" \
"  if st == nil then redis.call('SREM', P .. 'records', n)\n" \
"  elseif st == 'released' then t = tonumber(o.released_at)\n" \
"  elseif st == 'replaced' or st == 'error' then\n" \
"    t = tonumber(o.updated_at) end\n" \
"  if not t then redis.call('ZREM', D, n) return end\n" \
"  if t >= before or redis.call('HEXISTS', P .. 'pending', n) == 1 then\n" \
"    redis.call('ZADD', D, t, n) return end\n" \
"  redis.call('DEL', n)\n" \
"  redis.call('SREM', P .. 'records', n)\n" \
"  redis.call('SREM', P .. 'active', n)\n" \
"  redis.call('ZREM', D, n)\n" \
"  table.insert(out, n)\n" \
"end\n" \
"for _, n in ipairs(redis.call('ZRANGEBYSCORE', D, '-inf', '(' .. ARGV[4],\n" \
"    'LIMIT', 0, max)) do\n" \
"  collect(n)\n" \
"end\n" \
"local sc = redis.call('SSCAN', P .. 'records', ARGV[5], 'COUNT', ARGV[6])\n" \
"out[1] = sc[1]\n" \
"for _, n in ipairs(sc[2]) do\n" \
"  if #out > max then break end\n" \
"  if not redis.call('ZSCORE', D, n) then collect(n) end\n" \
"end\n" \
"return out\n"
/* clang-format on */

#endif
