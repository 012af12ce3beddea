/* formats/vocab_gguf.c: struct ec_vocab from a GGUF's tokenizer.ggml.* keys.
 *
 * The inverse of what ec_model_write_gguf_kvs writes: model ("llama" = SPM,
 * "gpt2" = BPE), pre, tokens, scores, token_type, merges, special ids and the
 * add_bos/add_eos/add_space_prefix flags. A GGUF without a tokenizer gives an
 * empty vocabulary (type EC_VOCAB_NONE), not an error.
 */
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_priv.h"

static enum ec_status copy_strs(const struct ec_gguf_kv *kv, char ***out, const char *path,
                                struct ec_diag *d)
{
    *out = calloc(kv->arr_n ? kv->arr_n : 1, sizeof **out);
    if (!*out)
        return ec_fail(d, EC_ERR_NOMEM, "%s: key '%s': out of memory", path, kv->key);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        (*out)[i] = strndup(kv->arr_strs[i].data, (size_t)kv->arr_strs[i].len);
        if (!(*out)[i])
            return ec_fail(d, EC_ERR_NOMEM, "%s: key '%s': out of memory", path, kv->key);
    }
    return EC_OK;
}

static int32_t get_id(const struct ec_gguf *g, const char *key)
{
    uint64_t v;
    return ec_gguf_get_u64(g, key, &v) && v <= INT32_MAX ? (int32_t)v : -1;
}

enum ec_status ec_vocab_from_gguf(struct ec_vocab *v, const struct ec_gguf *g, struct ec_diag *d)
{
    const char *path = g->file.path ? g->file.path : "gguf";
    enum ec_status s = EC_OK;
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = v->sep_id = -1;
    char *model = ec_gguf_get_str(g, "tokenizer.ggml.model");
    const struct ec_gguf_kv *toks = ec_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!model || !toks) {
        free(model);
        return EC_OK;
    }
    if (strcmp(model, "llama") == 0) {
        v->type = EC_VOCAB_SPM;
    } else if (strcmp(model, "gpt2") == 0) {
        v->type = EC_VOCAB_BPE;
    } else {
        s = ec_fail(d, EC_ERR_UNSUPPORTED,
                    "%s: key 'tokenizer.ggml.model': '%s' is not supported (llama, gpt2 are)",
                    path, model);
        free(model);
        return s;
    }
    free(model);
    if (toks->type != EC_GGUF_ARRAY || toks->arr_type != EC_GGUF_STRING || !toks->arr_strs ||
        toks->arr_n > UINT32_MAX)
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': expected an array of strings",
                       path);
    uint32_t n = (uint32_t)toks->arr_n;
    const struct ec_gguf_kv *scores = ec_gguf_find_kv(g, "tokenizer.ggml.scores");
    const struct ec_gguf_kv *types = ec_gguf_find_kv(g, "tokenizer.ggml.token_type");
    bool with_scores = scores && scores->type == EC_GGUF_ARRAY && scores->arr_type == EC_GGUF_F32 &&
                       scores->arr_n == n;
    s = ec_vocab_alloc_tokens(v, n, with_scores, path, d);
    if (s != EC_OK)
        goto out_fail;
    for (uint32_t i = 0; i < n; i++) {
        v->tokens[i] = strndup(toks->arr_strs[i].data, (size_t)toks->arr_strs[i].len);
        if (!v->tokens[i]) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for tokens", path);
            goto out_fail;
        }
        v->token_types[i] = EC_TOK_NORMAL;
    }
    if (with_scores)
        memcpy(v->scores, scores->arr_data, (size_t)n * sizeof(float));
    if (types && types->type == EC_GGUF_ARRAY && types->arr_n == n &&
        (types->arr_type == EC_GGUF_I32 || types->arr_type == EC_GGUF_U32))
        memcpy(v->token_types, types->arr_data, (size_t)n * sizeof(int32_t));

    const struct ec_gguf_kv *merges = ec_gguf_find_kv(g, "tokenizer.ggml.merges");
    if (merges && merges->type == EC_GGUF_ARRAY && merges->arr_type == EC_GGUF_STRING &&
        merges->arr_strs && merges->arr_n <= UINT32_MAX) {
        s = copy_strs(merges, &v->merges, path, d);
        v->n_merges = (uint32_t)merges->arr_n; /* set even on failure so release frees them */
        if (s != EC_OK)
            goto out_fail;
    }
    v->pre = ec_gguf_get_str(g, "tokenizer.ggml.pre");
    v->bos_id = get_id(g, "tokenizer.ggml.bos_token_id");
    v->eos_id = get_id(g, "tokenizer.ggml.eos_token_id");
    v->unk_id = get_id(g, "tokenizer.ggml.unknown_token_id");
    v->sep_id = get_id(g, "tokenizer.ggml.seperator_token_id");
    v->pad_id = get_id(g, "tokenizer.ggml.padding_token_id");
    v->has_add_bos = ec_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    v->has_add_eos = ec_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);
    v->add_space_prefix = v->type == EC_VOCAB_SPM;
    v->has_add_space_prefix =
        ec_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    return EC_OK;

out_fail:
    ec_vocab_release(v);
    return s;
}
