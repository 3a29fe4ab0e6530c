/* stub: filled in by the conv work */
#include "fmd_lua.h"
void fmd_lua_open_conv(lua_State *L) { (void)L; }
