/* stub: filled in by the serialize work */
#include "fmd_lua.h"
void fmd_lua_open_serialize(lua_State *L) { (void)L; }
