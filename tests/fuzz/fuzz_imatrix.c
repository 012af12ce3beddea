/* libFuzzer target: llama.cpp legacy importance-matrix (.dat) reader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "edgec/imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_imatrix im;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_imatrix_parse(&im, data, size, "fuzz.imatrix", &d) == EC_OK) {
        for (size_t i = 0; i < im.n; i++) {
            float *w = malloc((im.entries[i].nval ? im.entries[i].nval : 1) * sizeof *w);
            if (w) {
                ec_imatrix_entry_weights(&im.entries[i], w);
                free(w);
            }
        }
        ec_imatrix_release(&im);
    }
    return 0;
}
