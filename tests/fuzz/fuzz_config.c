/* libFuzzer target: config.json -> hyper-parameters. */
#include <stddef.h>
#include <stdint.h>

#include "edgec/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_hparams hp;
    struct ec_diag d;
    ec_diag_clear(&d);
    (void)ec_hparams_from_config_json(&hp, (const char *)data, size, "fuzz/config.json", &d);
    return 0;
}
