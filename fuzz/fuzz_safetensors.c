/* libFuzzer target: the safetensors reader (engine/safetensors.c). Every
 * tensor read must lie in the limits, and a saved copy must read back. */
#include "fuzz_common.h"
#include "fmd_impl.h"   /* fmd_check_shape is internal */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fmd_tensor_dict d = {0};
    if (fmd_safetensors_load(fuzz_file(data, n), &d) == 0) {
        for (int i = 0; i < d.n; i++)
            if (fmd_check_shape("fuzz", d.tensors[i]->ndim, d.tensors[i]->shape, NULL) != 0) abort();
    } else if (d.n != 0) {
        abort();   /* on error the dict is left empty */
    }
    fmd_tensor_dict_free(&d);
    return 0;
}
