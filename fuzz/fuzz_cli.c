/* libFuzzer target: the command-line parser of every script (fmd.cli,
 * lib/fmd/cli.lua). The input is split into arguments at NUL bytes and
 * newlines and parsed against a definition with every kind of flag. A
 * user's mistake must be an error without a position ending in
 * "(see --help)"; --help must print usage and exit; anything else (a Lua
 * runtime error in cli.lua, a value of the wrong type) is a finding. */
#define FUZZ_WITH_LUA
#include "fuzz_common.h"

static const char *CHUNK =
    "local cli = require 'fmd.cli'\n"
    "local def = {name = 'fuzz.lua', description = 'fuzz',\n"
    "  {'--lr', type = 'number', default = 0.001},\n"
    "  {'--batch_size', '-b', type = 'integer', default = 4, min = 1},\n"
    "  {'--model', '-m', default = 'SimpleNet', choices = {'SimpleNet', 'XceptionBased'}},\n"
    "  {'--data-root', metavar = 'DIR'},\n"
    "  {'--resume', type = 'boolean'},\n"
    "  {'-x', type = 'number'},\n"
    "}\n"
    "local EXIT = {}\n"
    "os.exit = function() error(EXIT, 0) end\n"
    "print = function() end\n"
    "return function(s)\n"
    "  local argv = {}\n"
    "  for a in (s .. '\\n'):gmatch('([^%z\\n]*)[%z\\n]') do argv[#argv + 1] = a end\n"
    "  if #argv > 64 then return end\n"
    "  local ok, opts, pos = pcall(cli.parse, argv, def)\n"
    "  if not ok then\n"
    "    if opts == EXIT then return end\n"
    "    if type(opts) ~= 'string' or opts:find('^[^\\n]*%.lua:%d+:') or not opts:find('\\n%(see %-%-help%)$') then\n"
    "      error('parse: not a user error: ' .. tostring(opts))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  if type(opts.lr) ~= 'number' or math.type(opts.batch_size) ~= 'integer' or opts.batch_size < 1 then\n"
    "    error('parse: bad values')\n"
    "  end\n"
    "  if opts.model ~= 'SimpleNet' and opts.model ~= 'XceptionBased' then error('parse: bad choice') end\n"
    "  if opts.resume ~= nil and type(opts.resume) ~= 'boolean' then error('parse: bad boolean') end\n"
    "  if type(pos) ~= 'table' then error('parse: no positional list') end\n"
    "end\n";

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n > 1024) return 0;   /* suggestions are Levenshtein in Lua: quadratic */
    if (!L) { L = fuzz_lua_new(); fuzz_lua_load(L, "fuzz", CHUNK); }
    fuzz_lua_call(L, "fuzz", data, n);
    if (lua_gc(L, LUA_GCCOUNT, 0) > 64 * 1024) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
