/* libFuzzer target: the PyTorch checkpoint reader (engine/pth.c), zip and
 * legacy pickle: never code execution (only tensors and containers), memory
 * and recursion bounded; on error the dict is left empty. */
#include "fuzz_common.h"
#include "fmd_impl.h"   /* fmd_check_shape is internal */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fmd_tensor_dict d = {0};
    if (fmd_pth_load(fuzz_file(data, n), &d) == 0) {
        for (int i = 0; i < d.n; i++)
            if (fmd_check_shape("fuzz", d.tensors[i]->ndim, d.tensors[i]->shape, NULL) != 0) abort();
    } else if (d.n != 0) {
        abort();
    }
    fmd_tensor_dict_free(&d);
    return 0;
}
