/* formats/vocab.c: vocabulary of an HF folder, as llama.cpp's converter builds it.
 *
 * tokenizer.model present (_set_vocab_sentencepiece): the pieces, padded up to
 * config.json's vocab_size with "[PAD<i>]" (score -10000, UNUSED); then
 * added_tokens.json entries (score -1000, USER_DEFINED) and
 * tokenizer_config.json's added_tokens_decoder (CONTROL when "special" or
 * special-looking, else USER_DEFINED with "▁" turned into spaces; score -1000).
 * Else tokenizer.json (see hf_tokenizer.c); the byte-level form is padded to
 * vocab_size like _set_vocab_gpt2 does.
 *
 * Special ids and add_bos/add_eos follow gguf-py's SpecialVocab:
 * tokenizer_config.json's "<typ>_token" strings looked up in tokenizer.json's
 * added_tokens (first match), its add_bos_token/add_eos_token booleans, a
 * TemplateProcessing post-processor's leading/trailing special token when
 * tokenizer_config.json gives no flag, then config.json's "<typ>_token_id"
 * for the ids still unset. generation_config.json is consulted last (edgec
 * addition; SpecialVocab does not read it) for bos/eos ids still unset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/io.h"
#include "formats/vocab_priv.h"

#define JSON_MAX_BYTES (512ull << 20)

void ec_vocab_release(struct ec_vocab *v)
{
    if (!v)
        return;
    if (v->tokens)
        for (uint32_t i = 0; i < v->n_tokens; i++)
            free(v->tokens[i]);
    free(v->tokens);
    free(v->scores);
    free(v->token_types);
    if (v->merges)
        for (uint32_t i = 0; i < v->n_merges; i++)
            free(v->merges[i]);
    free(v->merges);
    if (v->spm_merges)
        for (uint32_t i = 0; i < v->n_spm_merges; i++)
            free(v->spm_merges[i]);
    free(v->spm_merges);
    free(v->pre);
    free(v->note);
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = v->sep_id = -1;
}

enum ec_status ec_vocab_alloc_tokens(struct ec_vocab *v, uint32_t n, bool with_scores, const char *path,
                                     struct ec_diag *d)
{
    v->tokens = calloc(n ? n : 1, sizeof *v->tokens);
    v->token_types = calloc(n ? n : 1, sizeof *v->token_types);
    v->scores = with_scores ? calloc(n ? n : 1, sizeof *v->scores) : NULL;
    if (!v->tokens || !v->token_types || (with_scores && !v->scores)) {
        free(v->tokens);
        free(v->token_types);
        free(v->scores);
        v->tokens = NULL;
        v->token_types = NULL;
        v->scores = NULL;
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %u tokens", path, n);
    }
    v->n_tokens = n;
    return EC_OK;
}

static bool starts_ends(const char *s, const char *a, const char *b)
{
    size_t ls = strlen(s), la = strlen(a), lb = strlen(b);
    return ls >= la + lb && memcmp(s, a, la) == 0 && memcmp(s + ls - lb, b, lb) == 0;
}

bool ec_token_looks_special(const char *s)
{
    if (strcmp(s, "<pad>") == 0 || strcmp(s, "<mask>") == 0 || strcmp(s, "<2mass>") == 0 ||
        strcmp(s, "[@BOS@]") == 0)
        return true;
    return starts_ends(s, "<|", "|>") || starts_ends(s, "<\xef\xbd\x9c", "\xef\xbd\x9c>") ||
           starts_ends(s, "<unused", ">");
}

/* Read and parse an optional JSON file of the folder; *out NULL if absent. */
static enum ec_status load_json(const char *dir, const char *name, cJSON **out, char **path_out,
                                struct ec_diag *d)
{
    *out = NULL;
    char *path = ec_path_join(dir, name);
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    if (!ec_path_exists(path)) {
        free(path);
        if (path_out)
            *path_out = NULL;
        return EC_OK;
    }
    char *text = NULL;
    size_t len = 0;
    enum ec_status st = ec_read_file(path, JSON_MAX_BYTES, &text, &len, d);
    if (st == EC_OK)
        st = ec_json_parse(out, text, len, path, d);
    free(text);
    if (st == EC_OK && !cJSON_IsObject(*out)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
    if (path_out && st == EC_OK)
        *path_out = path;
    else
        free(path);
    return st;
}

static enum ec_status set_token(struct ec_vocab *v, uint32_t id, const char *text, const char *path,
                                struct ec_diag *d)
{
    char *s = strdup(text);
    if (!s)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    free(v->tokens[id]);
    v->tokens[id] = s;
    return EC_OK;
}

/* Grow the vocabulary to n entries with "[PAD<i>]" (score pad_score, UNUSED). */
static enum ec_status pad_to(struct ec_vocab *v, uint32_t n, float pad_score, const char *path, struct ec_diag *d)
{
    if (n <= v->n_tokens)
        return EC_OK;
    char **t = realloc(v->tokens, n * sizeof *t);
    if (!t)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    v->tokens = t;
    int32_t *ty = realloc(v->token_types, n * sizeof *ty);
    if (!ty)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    v->token_types = ty;
    if (v->scores) {
        float *sc = realloc(v->scores, n * sizeof *sc);
        if (!sc)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
        v->scores = sc;
    }
    for (uint32_t i = v->n_tokens; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%u]", i);
        v->tokens[i] = strdup(buf);
        if (!v->tokens[i]) {
            v->n_tokens = i;
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
        }
        v->token_types[i] = EC_TOK_UNUSED;
        if (v->scores)
            v->scores[i] = pad_score;
    }
    v->n_tokens = n;
    return EC_OK;
}

static bool json_int(const cJSON *it, int64_t *out)
{
    if (!cJSON_IsNumber(it) || (double)(int64_t)it->valuedouble != it->valuedouble)
        return false;
    *out = (int64_t)it->valuedouble;
    return true;
}

/* added_tokens.json and added_tokens_decoder (SentencePiece path). */
static enum ec_status apply_added_tokens(struct ec_vocab *v, const char *dir, const cJSON *tok_cfg,
                                         const char *tok_cfg_path, struct ec_diag *d)
{
    enum ec_status st;
    cJSON *at = NULL;
    char *at_path = NULL;
    if ((st = load_json(dir, "added_tokens.json", &at, &at_path, d)) != EC_OK)
        return st;
    const cJSON *it;
    cJSON_ArrayForEach(it, at) {
        int64_t id;
        if (!json_int(it, &id) || id < 0) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected a token id", at_path, it->string);
            goto out_free;
        }
        if ((uint64_t)id >= v->n_tokens)
            continue; /* the converter ignores out-of-range ids */
        if ((st = set_token(v, (uint32_t)id, it->string, at_path, d)) != EC_OK)
            goto out_free;
        v->scores[id] = -1000.0f;
        v->token_types[id] = EC_TOK_USER_DEFINED;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(tok_cfg, "added_tokens_decoder");
    if (dec && !cJSON_IsObject(dec)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'added_tokens_decoder': expected an object", tok_cfg_path);
        goto out_free;
    }
    cJSON_ArrayForEach(it, dec) {
        char *end = NULL;
        long long id = strtoll(it->string, &end, 10);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!end || *end || end == it->string || id < 0 || !cJSON_IsString(content)) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'added_tokens_decoder.%s': expected an id with a 'content' string",
                         tok_cfg_path, it->string);
            goto out_free;
        }
        if ((unsigned long long)id >= v->n_tokens)
            continue;
        const char *text = content->valuestring;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) || ec_token_looks_special(text)) {
            v->token_types[id] = EC_TOK_CONTROL;
            if ((st = set_token(v, (uint32_t)id, text, tok_cfg_path, d)) != EC_OK)
                goto out_free;
        } else {
            /* pre-normalize user-defined spaces: "▁" -> " " */
            size_t L = strlen(text);
            char *s = malloc(L + 1), *w = s;
            if (!s) {
                st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", tok_cfg_path);
                goto out_free;
            }
            for (const char *p = text; *p;) {
                if (strncmp(p, "\xe2\x96\x81", 3) == 0) {
                    *w++ = ' ';
                    p += 3;
                } else {
                    *w++ = *p++;
                }
            }
            *w = '\0';
            free(v->tokens[id]);
            v->tokens[id] = s;
            v->token_types[id] = EC_TOK_USER_DEFINED;
        }
        v->scores[id] = -1000.0f;
    }
out_free:
    cJSON_Delete(at);
    free(at_path);
    return st;
}

static const char *const special_types[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_COUNT };

struct special_state {
    int64_t ids[SP_COUNT]; /* -1 unset */
    int add_bos, add_eos;  /* -1 unset */
};

static void set_special(struct special_state *s, int typ, int64_t id, uint32_t n_vocab)
{
    if (id < 0 || (uint64_t)id >= n_vocab || s->ids[typ] >= 0)
        return;
    s->ids[typ] = id;
}

/* tokenizer_config "<typ>_token": a string or {"content": ...}. */
static const char *special_content(const cJSON *tok_cfg, const char *typ)
{
    char key[32];
    snprintf(key, sizeof key, "%s_token", typ);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(tok_cfg, key);
    if (cJSON_IsString(e))
        return e->valuestring;
    if (cJSON_IsObject(e)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c))
            return c->valuestring;
    }
    return NULL;
}

static int64_t added_token_id(const cJSON *added, const char *content)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        int64_t id;
        if (cJSON_IsString(c) && strcmp(c->valuestring, content) == 0 &&
            json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id))
            return id;
    }
    return -1;
}

static void special_from_template(struct special_state *s, const cJSON *tok_json, const cJSON *tok_cfg)
{
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(tok_json, "post_processor");
    if (!cJSON_IsObject(post))
        return;
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(post, "processors");
    const cJSON *single_proc = post;
    if (cJSON_IsArray(procs))
        single_proc = NULL;
    const char *bos = special_content(tok_cfg, "bos");
    const char *eos = special_content(tok_cfg, "eos");
    for (int i = 0;; i++) {
        const cJSON *p = single_proc ? single_proc : cJSON_GetArrayItem(procs, i);
        if (!p)
            break;
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (cJSON_IsString(ty) && strcmp(ty->valuestring, "TemplateProcessing") == 0) {
            const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
            int n = cJSON_GetArraySize(single);
            if (n > 1) {
                const cJSON *first = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, 0), "SpecialToken"), "id");
                const cJSON *last = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, n - 1), "SpecialToken"), "id");
                if (cJSON_IsString(first) && first->valuestring[0]) {
                    if (!tok_cfg)
                        bos = first->valuestring;
                    s->add_bos = bos && strcmp(first->valuestring, bos) == 0;
                }
                if (cJSON_IsString(last) && last->valuestring[0]) {
                    if (!tok_cfg)
                        eos = last->valuestring;
                    s->add_eos = eos && strcmp(last->valuestring, eos) == 0;
                }
            }
        }
        if (single_proc)
            break;
    }
}

static enum ec_status apply_specials(struct ec_vocab *v, const char *dir, const cJSON *tok_cfg, bool from_sp,
                                     struct ec_diag *d)
{
    enum ec_status st;
    struct special_state s;
    for (int i = 0; i < SP_COUNT; i++)
        s.ids[i] = -1;
    s.add_bos = s.add_eos = -1;
    cJSON *tok_json = NULL, *config = NULL, *gen = NULL;
    if ((st = load_json(dir, "tokenizer.json", &tok_json, NULL, d)) != EC_OK)
        goto out_free;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok_json, "added_tokens");
    if (tok_json)
        special_from_template(&s, tok_json, tok_cfg);
    for (int t = 0; t < SP_COUNT; t++) {
        char key[32];
        snprintf(key, sizeof key, "add_%s_token", special_types[t]);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(tok_cfg, key);
        if (cJSON_IsBool(a)) {
            if (t == SP_BOS)
                s.add_bos = cJSON_IsTrue(a);
            else if (t == SP_EOS)
                s.add_eos = cJSON_IsTrue(a);
        }
        const char *content = special_content(tok_cfg, special_types[t]);
        if (content && tok_json)
            set_special(&s, t, added_token_id(added, content), v->n_tokens);
    }
    if ((st = load_json(dir, "config.json", &config, NULL, d)) != EC_OK ||
        (st = load_json(dir, "generation_config.json", &gen, NULL, d)) != EC_OK)
        goto out_free;
    for (int t = 0; t < SP_COUNT; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", special_types[t]);
        int64_t id;
        if (json_int(cJSON_GetObjectItemCaseSensitive(config, key), &id))
            set_special(&s, t, id, v->n_tokens);
    }
    for (int t = SP_BOS; t <= SP_EOS; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", special_types[t]);
        int64_t id;
        if (json_int(cJSON_GetObjectItemCaseSensitive(gen, key), &id))
            set_special(&s, t, id, v->n_tokens);
    }
    v->bos_id = (int32_t)s.ids[SP_BOS];
    v->eos_id = (int32_t)s.ids[SP_EOS];
    v->unk_id = (int32_t)s.ids[SP_UNK];
    v->sep_id = (int32_t)s.ids[SP_SEP];
    v->pad_id = (int32_t)s.ids[SP_PAD];
    v->has_add_bos = s.add_bos >= 0;
    v->has_add_eos = s.add_eos >= 0;
    v->add_bos = s.add_bos >= 0 ? s.add_bos == 1 : v->type == EC_VOCAB_SPM;
    v->add_eos = s.add_eos == 1;
    /* LlamaHfVocab: the tokenizer's special tokens are CONTROL */
    if (v->type == EC_VOCAB_SPM && !from_sp)
        for (int t = 0; t < SP_COUNT; t++)
            if (s.ids[t] >= 0 && v->token_types[s.ids[t]] != EC_TOK_BYTE)
                v->token_types[s.ids[t]] = EC_TOK_CONTROL;
out_free:
    cJSON_Delete(tok_json);
    cJSON_Delete(config);
    cJSON_Delete(gen);
    return st;
}

enum ec_status ec_vocab_from_hf_dir(struct ec_vocab *v, const char *dir, const struct ec_hparams *hp,
                                    struct ec_diag *d)
{
    enum ec_status st;
    cJSON *tok_cfg = NULL;
    char *tok_cfg_path = NULL;
    char *path = ec_path_join(dir, "tokenizer.model");
    char *text = NULL;
    size_t len = 0;
    bool from_sp = false;
    memset(v, 0, sizeof *v);
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    if ((st = load_json(dir, "tokenizer_config.json", &tok_cfg, &tok_cfg_path, d)) != EC_OK)
        goto out_free;

    if (ec_path_exists(path)) {
        struct ec_mapped_file mf;
        if ((st = ec_mapped_file_open(&mf, path, d)) != EC_OK)
            goto out_free;
        st = ec_vocab_from_sp_model(v, mf.data, (size_t)mf.size_bytes, path, d);
        ec_mapped_file_close(&mf);
        if (st != EC_OK)
            goto out_free;
        from_sp = true;
        if (hp && hp->n_vocab > 0) {
            if (v->n_tokens > hp->n_vocab) {
                st = ec_fail(d, EC_ERR_FORMAT, "%s: %u pieces exceed config.json vocab_size %u", path, v->n_tokens,
                             hp->n_vocab);
                goto out_fail;
            }
            if ((st = pad_to(v, hp->n_vocab, -10000.0f, path, d)) != EC_OK)
                goto out_fail;
        }
        if ((st = apply_added_tokens(v, dir, tok_cfg, tok_cfg_path, d)) != EC_OK)
            goto out_fail;
    } else {
        free(path);
        path = ec_path_join(dir, "tokenizer.json");
        if (!path) {
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out_free;
        }
        if (!ec_path_exists(path)) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: no tokenizer.model or tokenizer.json in the folder", dir);
            goto out_free;
        }
        if ((st = ec_read_file(path, JSON_MAX_BYTES, &text, &len, d)) != EC_OK)
            goto out_free;
        if ((st = ec_vocab_from_tokenizer_json(v, text, len, path, d)) != EC_OK)
            goto out_free;
        if (v->type == EC_VOCAB_BPE && hp && hp->n_vocab > v->n_tokens &&
            (st = pad_to(v, hp->n_vocab, 0.0f, path, d)) != EC_OK)
            goto out_fail;
    }
    if ((st = apply_specials(v, dir, tok_cfg, from_sp, d)) != EC_OK)
        goto out_fail;
    goto out_free;

out_fail:
    ec_vocab_release(v);
out_free:
    cJSON_Delete(tok_cfg);
    free(tok_cfg_path);
    free(path);
    free(text);
    return st;
}
