/* formats/hf_tokenizer.c: HF tokenizer.json -> struct ec_vocab.
 *
 * Two BPE shapes, as llama.cpp's converter tells them apart:
 *  - SentencePiece-style BPE (model.byte_fallback true, decoder not ByteLevel):
 *    GGUF "llama" form as gguf-py's LlamaHfVocab writes it: every score
 *    -1000, "<0xXX>" pieces BYTE, special added tokens CONTROL, other added
 *    tokens beyond the model vocabulary USER_DEFINED, the rest NORMAL. The merge
 *    list is kept in spm_merges for the tokenizer (the scores carry no order).
 *  - GPT-2 byte-level BPE (ByteLevel pre-tokenizer or decoder): GGUF "gpt2"
 *    form: tokens, token types (added tokens CONTROL when special or
 *    special-looking, else USER_DEFINED), merges, and `pre` recognised from the
 *    pre-tokenizer's split regex ("llama-bpe", "qwen2", "gpt2"); anything else
 *    gets "default" and a note.
 * Special ids: unk from model.unk_token; bos/eos are left to
 * ec_vocab_from_hf_dir (tokenizer_config.json / config.json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_priv.h"

enum ec_status ec_json_parse(cJSON **out, const char *json, size_t len, const char *path, struct ec_diag *d)
{
    *out = cJSON_ParseWithLength(json, len);
    if (*out)
        return EC_OK;
    const char *e = cJSON_GetErrorPtr();
    size_t off = (e && e >= json && e <= json + len) ? (size_t)(e - json) : 0;
    return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: malformed JSON", path, off);
}

static bool is_byte_token(const char *s)
{
    static const char hx[] = "0123456789abcdefABCDEF";
    return strlen(s) == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[3] && strchr(hx, s[3]) && s[4] &&
           strchr(hx, s[4]) && s[5] == '>';
}

static const char *json_type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Whether any node of a (possibly Sequence) normalizer/pre-tokenizer/decoder
 * has the given type. */
static bool has_component(const cJSON *o, const char *type)
{
    if (!cJSON_IsObject(o))
        return false;
    const char *t = json_type_of(o);
    if (t && strcmp(t, type) == 0)
        return true;
    static const char *const lists[] = {"normalizers", "pretokenizers", "decoders", "processors"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, lists[i]);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if (has_component(it, type))
                return true;
        }
    }
    return false;
}

/* First Split regex in the pre-tokenizer, or NULL. */
static const char *split_regex(const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return NULL;
    const char *t = json_type_of(o);
    if (t && strcmp(t, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        return cJSON_IsString(re) ? re->valuestring : NULL;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const char *r = split_regex(it);
        if (r)
            return r;
    }
    return NULL;
}

static enum ec_status set_pre(struct ec_vocab *v, const cJSON *pre_tok, const char *path, struct ec_diag *d)
{
    const char *re = split_regex(pre_tok);
    const char *pre = NULL;
    if (re) {
        if (strstr(re, "\\p{N}{1,3}") && strstr(re, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"))
            pre = "llama-bpe";
        else if (strstr(re, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"))
            pre = "qwen2";
    } else if (has_component(pre_tok, "ByteLevel")) {
        const cJSON *ur = NULL;
        if (json_type_of(pre_tok) && strcmp(json_type_of(pre_tok), "ByteLevel") == 0)
            ur = cJSON_GetObjectItemCaseSensitive(pre_tok, "use_regex");
        if (!ur || cJSON_IsTrue(ur))
            pre = "gpt2";
    }
    if (!pre) {
        pre = "default";
        char buf[512];
        snprintf(buf, sizeof buf, "%s: pre-tokenizer not recognised (split regex %.200s%s); "
                 "using 'default', tokenization may differ from the original", path, re ? re : "absent",
                 re && strlen(re) > 200 ? "..." : "");
        v->note = strdup(buf);
        if (!v->note)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    }
    v->pre = strdup(pre);
    if (!v->pre)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    return EC_OK;
}

/* merges: ["a b", ...] or [["a", "b"], ...] (transformers >= 4.45); spaces
 * inside a pair part become U+0120 as gguf-py does. */
static enum ec_status read_merges(const cJSON *merges, char ***out, uint32_t *n_out, const char *path,
                                  struct ec_diag *d)
{
    *out = NULL;
    *n_out = 0;
    if (!merges || cJSON_IsNull(merges))
        return EC_OK;
    if (!cJSON_IsArray(merges))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.merges': expected an array", path);
    int n = cJSON_GetArraySize(merges);
    if (n == 0)
        return EC_OK;
    char **m = calloc((size_t)n, sizeof *m);
    if (!m)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %d merges", path, n);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) {
            m[i] = strdup(it->valuestring);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
            size_t la = strlen(a), lb = strlen(b);
            char *s = malloc(2 * (la + lb) + 2);
            if (s) {
                char *w = s;
                for (const char *p = a;; p = b) {
                    for (; *p; p++) {
                        if (*p == ' ') {
                            *w++ = (char)0xc4; /* U+0120 */
                            *w++ = (char)0xa0;
                        } else {
                            *w++ = *p;
                        }
                    }
                    if (p == b + lb)
                        break;
                    *w++ = ' ';
                }
                *w = '\0';
            }
            m[i] = s;
        } else {
            for (int j = 0; j < i; j++)
                free(m[j]);
            free(m);
            return ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.merges[%d]': expected \"a b\" or [\"a\", \"b\"]", path, i);
        }
        if (!m[i]) {
            for (int j = 0; j < i; j++)
                free(m[j]);
            free(m);
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
        }
        i++;
    }
    *out = m;
    *n_out = (uint32_t)n;
    return EC_OK;
}

enum ec_status ec_vocab_from_tokenizer_json(struct ec_vocab *v, const char *json, size_t len, const char *path,
                                            struct ec_diag *d)
{
    enum ec_status st;
    cJSON *root = NULL;
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = v->sep_id = -1;
    if (!path)
        path = "tokenizer.json";
    if ((st = ec_json_parse(&root, json, len, path, d)) != EC_OK)
        return st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model': expected an object", path);
        goto out_fail;
    }
    const char *mtype = json_type_of(model);
    if (!mtype) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.type': expected a string", path);
        goto out_fail;
    }
    if (strcmp(mtype, "BPE") != 0) {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: key 'model.type': '%s' is not supported (only BPE)", path, mtype);
        goto out_fail;
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.vocab': expected an object", path);
        goto out_fail;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'added_tokens': expected an array", path);
        goto out_fail;
    }
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *pre_tok = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    bool byte_level = has_component(pre_tok, "ByteLevel") || has_component(decoder, "ByteLevel");
    bool spm_style = cJSON_IsTrue(bf) && !byte_level;
    if (!spm_style && !byte_level) {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: key 'model': BPE without byte_fallback and without a ByteLevel "
                     "pre-tokenizer/decoder is not supported", path);
        goto out_fail;
    }

    /* the id range: model vocab plus added tokens */
    int64_t max_id = -1;
    uint32_t n_base = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 16777216.0 ||
            (double)(int64_t)it->valuedouble != it->valuedouble) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.vocab.%s': expected a token id (0..2^24)", path,
                         it->string);
            goto out_fail;
        }
        if ((int64_t)it->valuedouble > max_id)
            max_id = (int64_t)it->valuedouble;
        n_base++;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16777216.0 || !cJSON_IsString(content)) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'added_tokens': entry without a valid 'id' and 'content'", path);
            goto out_fail;
        }
        if ((int64_t)id->valuedouble > max_id)
            max_id = (int64_t)id->valuedouble;
    }
    if (max_id < 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.vocab': empty vocabulary", path);
        goto out_fail;
    }
    /* Real vocabularies number their tokens densely. A sparse id space would
     * make a tiny file allocate a vocabulary of up to 2^24 entries (found by
     * fuzzing), so the allocation is bounded by what the file holds. */
    uint64_t n_entries = (uint64_t)n_base + (uint64_t)cJSON_GetArraySize(added);
    if ((uint64_t)max_id + 1 > 2 * n_entries + 1024) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: key 'model.vocab': token id %lld with only %llu tokens listed "
                     "(ids must be nearly dense)",
                     path, (long long)max_id, (unsigned long long)n_entries);
        goto out_fail;
    }
    uint32_t n = (uint32_t)max_id + 1;
    if ((st = ec_vocab_alloc_tokens(v, n, spm_style, path, d)) != EC_OK)
        goto out_fail;
    v->type = spm_style ? EC_VOCAB_SPM : EC_VOCAB_BPE;
    cJSON_ArrayForEach(it, vocab) {
        uint32_t id = (uint32_t)it->valuedouble;
        if (v->tokens[id]) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'model.vocab.%s': id %u is used twice", path, it->string, id);
            goto out_fail;
        }
        v->tokens[id] = strdup(it->string);
        if (!v->tokens[id]) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
            goto out_fail;
        }
        v->token_types[id] = spm_style && is_byte_token(it->string) ? EC_TOK_BYTE : EC_TOK_NORMAL;
    }
    cJSON_ArrayForEach(it, added) {
        uint32_t id = (uint32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
        bool in_base = v->tokens[id] != NULL;
        if (!in_base) {
            v->tokens[id] = strdup(content);
            if (!v->tokens[id]) {
                st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
                goto out_fail;
            }
        }
        if (spm_style) {
            /* LlamaHfVocab: specials are CONTROL (in or beyond the base vocab),
             * other added tokens beyond it USER_DEFINED */
            if (special && !is_byte_token(v->tokens[id]))
                v->token_types[id] = EC_TOK_CONTROL;
            else if (!in_base)
                v->token_types[id] = EC_TOK_USER_DEFINED;
        } else {
            if (special || ec_token_looks_special(content)) {
                v->token_types[id] = EC_TOK_CONTROL;
            } else {
                v->token_types[id] = EC_TOK_USER_DEFINED;
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (v->scores)
            v->scores[i] = -1000.0f;
        if (!v->tokens[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%u]", i);
            v->tokens[i] = strdup(buf);
            v->token_types[i] = EC_TOK_UNUSED;
            if (!v->tokens[i]) {
                st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
                goto out_fail;
            }
        }
    }

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(vocab, unk->valuestring);
        if (cJSON_IsNumber(uid))
            v->unk_id = (int32_t)uid->valuedouble;
    }

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (spm_style) {
        if ((st = read_merges(merges, &v->spm_merges, &v->n_spm_merges, path, d)) != EC_OK)
            goto out_fail;
        v->pre = strdup("default");
        if (!v->pre) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
            goto out_fail;
        }
        /* LlamaHfVocab writes no add_space_prefix; llama.cpp's default (true)
         * matches a Prepend("▁") normalizer or a Metaspace pre-tokenizer */
        v->add_space_prefix = true;
        v->has_add_space_prefix = false;
    } else {
        if ((st = read_merges(merges, &v->merges, &v->n_merges, path, d)) != EC_OK)
            goto out_fail;
        if ((st = set_pre(v, pre_tok, path, d)) != EC_OK)
            goto out_fail;
        v->add_space_prefix = false;
        v->has_add_space_prefix = false;
    }
    v->add_bos = spm_style;
    v->add_eos = false;
    (void)n_base;
    cJSON_Delete(root);
    return EC_OK;

out_fail:
    cJSON_Delete(root);
    ec_vocab_release(v);
    return st;
}
