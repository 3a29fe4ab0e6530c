/* stub: filled in by the faces work */
#include "fmd_lua.h"
void fmd_lua_open_faces(lua_State *L) { (void)L; }
