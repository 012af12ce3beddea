/* libFuzzer target: an edgec-distill manifest.json -> validated manifest
 * (counts, shard list, names, hashes). */
#include <stddef.h>
#include <stdint.h>

#include "edgec/distill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_distill_manifest m;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_distill_manifest_parse(&m, "fuzz", (const char *)data, size, &d) == EC_OK)
        ec_distill_manifest_release(&m);
    return 0;
}
