/* libFuzzer target: safetensors header and data-offset validation. */
#include <stddef.h>
#include <stdint.h>

#include "edgec/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_safetensors st;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_safetensors_parse(&st, data, size, "fuzz.safetensors", &d) == EC_OK) {
        /* touch every tensor's bytes: they must lie inside the buffer */
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < st.n_tensors; i++)
            if (st.tensors[i].n_bytes)
                acc ^= st.tensors[i].data[st.tensors[i].n_bytes - 1];
        (void)acc;
        ec_safetensors_close(&st);
    }
    return 0;
}
