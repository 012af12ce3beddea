/* libFuzzer target: GGUF reader (header, kvs, tensor infos, offsets). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "edgec/gguf.h"
#include "edgec/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_gguf g;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_gguf_parse(&g, data, size, "fuzz.gguf", &d) == EC_OK) {
        volatile uint8_t acc = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++)
            if (g.tensors[i].n_bytes)
                acc ^= g.tensors[i].data[g.tensors[i].n_bytes - 1];
        (void)acc;
        /* the metadata consumers must cope with whatever parsed */
        struct ec_hparams hp;
        ec_diag_clear(&d);
        (void)ec_hparams_from_gguf(&hp, &g, &d);
        struct ec_vocab v = {0};
        ec_diag_clear(&d);
        if (ec_vocab_from_gguf(&v, &g, &d) == EC_OK)
            ec_vocab_release(&v);
        ec_gguf_close(&g);
    }
    return 0;
}
