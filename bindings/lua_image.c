/* stub: filled in by the image work */
#include "fmd_lua.h"
void fmd_lua_open_image(lua_State *L) { (void)L; }
