/* libFuzzer target: fmd.json (bindings/lua_json.c through lib/fmd/json.lua).
 * A text either parses, and then encodes and parses again to the same
 * encoding, or fails with "<name>, line L, column C: invalid JSON"; any
 * other Lua error is a finding. */
#define FUZZ_WITH_LUA
#include "fuzz_common.h"

static const char *CHUNK =
    "local json = require 'fmd.json'\n"
    "return function(s)\n"
    "  local ok, v = pcall(json.decode, s, 'fuzz.json')\n"
    "  if not ok then\n"
    "    if type(v) ~= 'string' or not v:find('^fuzz%.json, line %d+, column %d+: invalid JSON') then\n"
    "      error('decode: unexpected error: ' .. tostring(v))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  local ok2, e1 = pcall(json.encode, v)\n"
    "  if not ok2 then\n"
    "    -- values JSON cannot hold back (none expected from a parse)\n"
    "    error('encode of a parsed value failed: ' .. tostring(e1))\n"
    "  end\n"
    "  local e2 = json.encode(json.decode(e1, 'again'))\n"
    "  if e1 ~= e2 then error('round trip differs:\\n' .. e1 .. '\\n' .. e2) end\n"
    "end\n";

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (!L) { L = fuzz_lua_new(); fuzz_lua_load(L, "fuzz", CHUNK); }
    fuzz_lua_call(L, "fuzz", data, n);
    if (lua_gc(L, LUA_GCCOUNT, 0) > 64 * 1024) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
