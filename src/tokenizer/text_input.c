/* Token streams from files: text through a vocabulary, or raw int32 ids
 * (see edgec/tokenizer.h). Shared by perplexity, imatrix, prune and
 * distill-export so that all of them cut text exactly as llama.cpp does. */
#include <stdlib.h>
#include <string.h>

#include "edgec/io.h"
#include "edgec/tokenizer.h"

#define EC_MAX_TEXT_BYTES (1ull << 31)

enum ec_status ec_tokens_from_text_file(const struct ec_vocab *v, const char *path,
                                        int32_t **out, int64_t *n, struct ec_diag *d)
{
    char *text = NULL;
    size_t len = 0;
    struct ec_tokenizer *tk = NULL;
    *out = NULL;
    *n = 0;
    enum ec_status st = ec_read_file(path, EC_MAX_TEXT_BYTES, &text, &len, d);
    if (st != EC_OK)
        return st;
    /* llama.cpp's -f drops exactly one trailing newline */
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if ((st = ec_tokenizer_new(&tk, v, d)) != EC_OK)
        goto out_free;
    size_t n_ids = 0;
    st = ec_tokenizer_encode(tk, text, len, true, false, out, &n_ids, d);
    if (st != EC_OK)
        ec_diag_prefix(d, "%s", path);
    *n = (int64_t)n_ids;
out_free:
    ec_tokenizer_free(tk);
    free(text);
    return st;
}

enum ec_status ec_tokens_from_i32_file(const char *path, int32_t **out, int64_t *n,
                                       struct ec_diag *d)
{
    struct ec_mapped_file mf;
    *out = NULL;
    *n = 0;
    enum ec_status st = ec_mapped_file_open(&mf, path, d);
    if (st != EC_OK)
        return st;
    if (mf.size_bytes % 4 != 0) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: at byte %llu: %llu bytes is not a whole number of int32 ids", path,
                     (unsigned long long)(mf.size_bytes - mf.size_bytes % 4),
                     (unsigned long long)mf.size_bytes);
        goto out_close;
    }
    *n = (int64_t)(mf.size_bytes / 4);
    *out = malloc(mf.size_bytes ? mf.size_bytes : 1);
    if (!*out) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %lld ids", path, (long long)*n);
        goto out_close;
    }
    if (mf.size_bytes)
        memcpy(*out, mf.data, mf.size_bytes);
out_close:
    ec_mapped_file_close(&mf);
    return st;
}
