/* libFuzzer target: an edgec-distill shard file -> records. The expectations
 * are taken from the input's own header (when it has one) so that mutations
 * reach the payload checks instead of stopping at the manifest comparison. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgec/distill.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_distill_shard_expect ex = {.seq_len = 8, .top_k = 4, .id_bytes = 2, .n_vocab = 512,
                                         .n_seqs = 1};
    if (size >= EC_DISTILL_HEADER_BYTES) {
        ex.index = le32(data + 12);
        ex.first_seq = (uint64_t)le32(data + 16) | (uint64_t)le32(data + 20) << 32;
        ex.n_seqs = le32(data + 24);
        ex.seq_len = le32(data + 28);
        ex.top_k = le32(data + 32);
        ex.id_bytes = le32(data + 36);
        ex.n_vocab = le32(data + 44);
        /* keep the fuzzer's allocations small */
        if ((uint64_t)ex.n_seqs * ex.seq_len * (ex.top_k + 1) > (1u << 22))
            return 0;
    }
    struct ec_distill_records rec;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_distill_shard_decode(data, size, "fuzz.ecds", &ex, &rec, &d) == EC_OK)
        ec_distill_records_release(&rec);
    return 0;
}
