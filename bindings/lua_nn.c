/* stub: filled in by the nn work */
#include "fmd_lua.h"
void fmd_lua_open_nn(lua_State *L) { (void)L; }
