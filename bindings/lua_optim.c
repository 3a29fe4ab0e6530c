/* stub: filled in by the optim work */
#include "fmd_lua.h"
void fmd_lua_open_optim(lua_State *L) { (void)L; }
