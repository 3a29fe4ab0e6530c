/* libFuzzer target: the JPEG decoder (fmd_image_decode, engine/image.c) on
 * arbitrary bytes; a decoded image must have the shape its header allows. */
#include "fuzz_common.h"
#include "fmd_impl.h"   /* the image limit is internal */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fmd_tensor *t = fmd_image_decode(data, n, "fuzz.jpg");
    if (t) {
        if (t->ndim != 3 || t->shape[0] != 3 || fmd_numel(t) > fmd_max_image_pixels() * 3) abort();
        fmd_release(t);
    }
    return 0;
}
