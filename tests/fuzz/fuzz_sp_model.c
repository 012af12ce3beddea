/* libFuzzer target: SentencePiece tokenizer.model protobuf, then encoding with it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "edgec/model.h"
#include "edgec/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_vocab v = {0};
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_vocab_from_sp_model(&v, data, size, "fuzz/tokenizer.model", &d) == EC_OK) {
        struct ec_tokenizer *tk = NULL;
        ec_diag_clear(&d);
        if (ec_tokenizer_new(&tk, &v, &d) == EC_OK) {
            static const char text[] = " Once upon a time, ü 日本 <s>\n\n";
            int32_t *ids = NULL;
            size_t n = 0;
            if (ec_tokenizer_encode(tk, text, sizeof text - 1, true, false, &ids, &n, &d) == EC_OK)
                free(ids);
            ec_tokenizer_free(tk);
        }
        ec_vocab_release(&v);
    }
    return 0;
}
