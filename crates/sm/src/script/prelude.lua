-- The sandbox every script runs in, built once per VM (see script/vm.rs).
--
-- Redis 7.0 builds this in C on a patched Lua that has read-only tables. Stock
-- Lua 5.1 has none, so each protected table is an empty proxy whose metatable
-- reads through to the real table and refuses writes; the few builtins that
-- bypass metatables (rawset, rawget, next, pairs, ipairs, getmetatable,
-- setmetatable, table.insert) are replaced by Rust versions that see through
-- proxies (script/sandbox.rs). The chunk is
-- loaded under the name "=?", by which the error handler below recognizes its
-- frames and skips them the way Redis skips its C frames.
--
-- Arguments: P, the Rust primitives; G, the real globals table (all libraries
-- loaded, `debug` included). Returns the exports table.
local P, G = ...

local type, select, error, tostring_raw = type, select, error, tostring
local rawget_raw, rawset_raw, next_raw, pairs_raw, ipairs_raw =
  rawget, rawset, next, pairs, ipairs
local setmetatable_raw = setmetatable
local pcall_raw, xpcall_raw, load_raw, loadstring_raw = pcall, xpcall, load, loadstring
local floor, ceil = math.floor, math.ceil
local format, byte = string.format, string.byte
local resume_raw = coroutine.resume
local getinfo = debug.getinfo
local debug_getmetatable = debug.getmetatable
local killed, take_error = P.killed, P.take_error

local READONLY = 'Attempt to modify a readonly table'
-- Raised again by every catcher once the run is over budget; its value never
-- reaches a reply (Rust composes the error from its own record of the kill).
local KILL = {}

-- proxy -> the real table it protects (weak keys; every proxy is permanent anyway)
local backing = setmetatable_raw({}, { __mode = 'k' })
-- proxy -> what getmetatable(proxy) shows (absent: nil)
local visible_meta = {}

local function refuse_write()
  error(READONLY, 2)
end

local function protect(real)
  local proxy = {}
  backing[proxy] = real
  setmetatable_raw(proxy, { __index = real, __newindex = refuse_write, __metatable = false })
  return proxy
end

local function typename(v)
  return type(v)
end

-- Raises luaL_argerror's text at the user's line: `level` 3 when called by a
-- wrapper the script called, 4 from a helper of such a wrapper.
local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), level or 3)
end

local function expect(n, fname, want, v)
  if type(v) ~= want then
    argerror(n, fname, want .. ' expected, got ' .. typename(v), 4)
  end
end

---------------------------------------------------------------------------
-- Deterministic replacements for address-revealing and GC-revealing builtins.

-- tostring(table/function/thread/userdata) shows a per-run sequence number
-- instead of an address: the first such value printed in a run is 0x00000001.
-- RUN[1] maps the values printed so far to their numbers (weak keys), RUN[2]
-- is the last number given; Rust resets both before every run.
local RUN = { nil, 0 }
local null = P.null
local function tostring_det(...)
  if select('#', ...) == 0 then
    argerror(1, 'tostring', 'value expected')
  end
  local v = ...
  local t = type(v)
  if t == 'table' or t == 'function' or t == 'thread' or (t == 'userdata' and v ~= null) then
    local mt = debug_getmetatable(v)
    if mt and rawget_raw(mt, '__tostring') ~= nil then
      return tostring_raw(v)
    end
    local ids = RUN[1]
    if ids == nil then
      ids = setmetatable_raw({}, { __mode = 'k' })
      RUN[1] = ids
    end
    local id = ids[v]
    if id == nil then
      id = RUN[2] + 1
      RUN[2] = id
      ids[v] = id
    end
    return format('%s: 0x%08x', t, id)
  end
  return tostring_raw(v)
end

local GC_OPTIONS = {
  stop = true, restart = true, collect = true, count = true, step = true,
  setpause = true, setstepmul = true,
}
local function collectgarbage_det(opt, arg)
  if opt == nil then opt = 'collect' end
  if type(opt) ~= 'string' and type(opt) ~= 'number' then
    argerror(1, 'collectgarbage', 'string expected, got ' .. typename(opt))
  end
  opt = tostring_raw(opt)
  if not GC_OPTIONS[opt] then
    argerror(1, 'collectgarbage', "invalid option '" .. opt .. "'")
  end
  return P.gc(opt)
end

local function gcinfo_det()
  return floor(P.gc('count'))
end

---------------------------------------------------------------------------
-- Error catchers: as Lua's, but a run that is over its budget stays dead.

local function pcall_finish(ok, ...)
  if killed() then error(KILL, 0) end
  if ok then return true, ... end
  local e = take_error((...))
  -- Redis 7: an error table raised by redis.call reaches pcall as its message.
  if type(e) == 'table' then
    local m = e.err
    if type(m) == 'string' or type(m) == 'number' then e = m end
  end
  return false, e
end

local function pcall_det(...)
  if select('#', ...) == 0 then
    -- What Redis's pcall (C, calling its own result placeholder) returns.
    return false, 'attempt to call a boolean value'
  end
  return pcall_finish(pcall_raw(...))
end

local function pass_unless_killed(...)
  if killed() then error(KILL, 0) end
  return ...
end

local function xpcall_det(...)
  if select('#', ...) < 2 then
    argerror(2, 'xpcall', 'value expected')
  end
  local f, h = ...
  local function handle(e)
    return h(take_error(e))
  end
  return pass_unless_killed(xpcall_raw(f, handle))
end

local function resume_finish(ok, ...)
  if killed() then error(KILL, 0) end
  if ok then return true, ... end
  return false, take_error((...))
end

local function resume_det(co, ...)
  if type(co) ~= 'thread' then
    argerror(1, 'resume', 'coroutine expected')
  end
  return resume_finish(resume_raw(co, ...))
end

-- Redis's Lua refuses precompiled chunks (it parses everything as text); a
-- leading space makes stock Lua do the same, with the same error.
local function loadstring_det(s, name)
  if type(s) ~= 'string' and type(s) ~= 'number' then
    argerror(1, 'loadstring', 'string expected, got ' .. typename(s))
  end
  s = tostring_raw(s)
  if byte(s, 1) == 27 then
    return loadstring_raw(' ' .. s, name or s)
  end
  return loadstring_raw(s, name)
end

local function load_det(f, name)
  expect(1, 'load', 'function', f)
  local first = true
  local function reader()
    local piece = f()
    if first then
      first = false
      if type(piece) == 'string' and byte(piece, 1) == 27 then
        return ' ' .. piece
      end
    end
    return piece
  end
  local f2, e = load_raw(reader, name)
  if killed() then error(KILL, 0) end
  if f2 == nil then return nil, take_error(e) end
  return f2
end

---------------------------------------------------------------------------
-- The redis table: the functions that can raise are Rust (C functions, as in
-- Redis, so a tail call to them keeps the caller's frame for error reports);
-- these never raise.

local redis = P.redis
local error_text = P.error_text

redis.error_reply = function(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then
    return { err = 'ERR wrong number or type of arguments' }
  end
  if byte(s, 1) ~= 45 then s = '-' .. s end
  return { err = error_text(s) }
end

redis.status_reply = function(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then
    return { err = 'ERR wrong number or type of arguments' }
  end
  return { ok = s }
end

redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end

redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL =
  0, 1, 2, 2, 3
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3

---------------------------------------------------------------------------
-- Assemble the globals.

local math_real = G.math
math_real.random = P.random
math_real.randomseed = P.randomseed

local table_real = G.table

local coroutine_real = G.coroutine
coroutine_real.resume = resume_det

G.tostring = tostring_det
G.collectgarbage = collectgarbage_det
G.gcinfo = gcinfo_det
G.pcall = pcall_det
G.xpcall = xpcall_det
G.loadstring = loadstring_det
G.load = load_det

-- Not in Redis 7.0.15 as shipped (file access, output, environments, finalizers).
for _, name in ipairs_raw({ 'debug', 'print', 'dofile', 'loadfile', 'getfenv', 'setfenv',
  'newproxy', 'module', 'require', 'package', 'os', 'io' }) do
  G[name] = nil
end

local env = protect(G)
G._G = env

local function handler(err)
  -- As Redis's __redis__err__handler: report the frame that raised, or its
  -- caller when that was a C function. Our wrapper frames (source "=?")
  -- stand in for Redis's C functions, so they are skipped too.
  local level = 2
  local i = getinfo(level, 'Sl')
  if i and i.what == 'C' then
    level = level + 1
    i = getinfo(level, 'Sl')
  end
  while i and i.source == '=?' do
    level = level + 1
    i = getinfo(level, 'Sl')
  end
  err = take_error(err)
  if type(err) ~= 'table' then
    err = { err = 'ERR ' .. tostring_det(err) }
  end
  if i then
    err.source = i.source
    err.line = i.currentline
  end
  return err
end
G.__redis__err__handler = handler

for name, lib in pairs_raw({ redis = redis, cjson = P.cjson, bit = P.bit, cmsgpack = P.cmsgpack,
  struct = P.struct }) do
  G[name] = lib
end
for _, name in ipairs_raw({ 'string', 'math', 'table', 'coroutine', 'redis', 'cjson', 'bit',
  'cmsgpack', 'struct' }) do
  G[name] = protect(G[name])
end

-- The global table's own metatable is visible (and read-only), as in Redis.
-- Reading a global that does not exist is an error, as in Redis.
local meta_G = { __index = P.nonexistent }
setmetatable_raw(G, meta_G)
visible_meta[env] = protect(meta_G)

-- Strings' metatable: read-only, its __index the protected string table.
local string_meta = debug_getmetatable('')
string_meta.__index = G.string
local string_meta_proxy = protect(string_meta)

-- The builtins that bypass metatables, taught about the proxies (in Rust, so
-- that they are C functions as in Redis).
local raw = P.sandbox(backing, visible_meta, string_meta_proxy, next_raw, ipairs_raw)
for _, name in ipairs_raw({ 'rawget', 'rawset', 'next', 'pairs', 'ipairs', 'getmetatable',
  'setmetatable' }) do
  G[name] = raw[name]
end
table_real.insert = raw.insert

local exports = {}
exports.env = env

-- A run (script/vm.rs) is Redis's luaCallFunction: KEYS and ARGV set in G,
-- RUN reset, the script called by lua_pcall with `handler` as its message
-- handler, keeping its first result.
exports.handler = handler
exports.run_state = RUN

return exports
