/* formats/gguf_meta.c: GGUF metadata as llama.cpp's converter writes it, and
 * hyper-parameters read back from a GGUF.
 *
 * The key order of convert_hf_to_gguf.py (golden commit c392e509):
 *   general.architecture (GGUFWriter init), general.type (set_type),
 *   Metadata.set_gguf_meta_model: name, author, version, organization,
 *     finetune, basename, description, quantized_by, size_label, ...
 *   Model.set_gguf_parameters: block_count, context_length, embedding_length,
 *     feed_forward_length, head_count, head_count_kv, rope.freq_base,
 *     layer_norm_rms_epsilon, [expert counts], key_length, value_length,
 *     general.file_type; each only when its config.json key is present;
 *   LlamaModel adds vocab_size, rope.dimension_count, rope scaling (linear);
 *     Qwen2Model adds rope scaling (yarn);
 *   set_vocab: tokenizer.ggml.model, pre, tokens, [scores], token_type,
 *     [merges], special ids (bos, eos, unk, sep, pad), add_bos/add_eos,
 *     chat_template; LlamaModel then add_space_prefix from tokenizer_config;
 *   general.quantization_version = 2.
 * Values come from config.json as written there (so presence matters), which
 * is why this file re-reads it instead of using struct ec_hparams alone.
 *
 * Names: gguf-py's Metadata heuristics on config "_name_or_path" (when it
 * looks like an id) and then the folder name (get_model_id_components,
 * id_to_title), size_label from the parameter count when the name has none
 * (model_weight_count_rounded_notation). Model cards (README.md YAML) and
 * metadata overrides are not read.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/model.h"

#define GGML_QUANT_VERSION 2u
#define JSON_MAX_BYTES (64u * 1024u * 1024u)
#define MAX_NAME_PARTS 32

/* ---- name heuristics (gguf-py metadata.py) ---- */

enum part_type { PT_BASENAME = 1, PT_SIZE = 2, PT_FINETUNE = 4, PT_VERSION = 8, PT_TYPE = 16 };

struct model_id {
    char *full_name;
    char *org;
    char *basename;
    char *finetune;
    char *version;
    char *size_label;
};

static void model_id_release(struct model_id *id)
{
    free(id->full_name);
    free(id->org);
    free(id->basename);
    free(id->finetune);
    free(id->version);
    free(id->size_label);
    memset(id, 0, sizeof *id);
}

static bool full_match(const char *pattern, const char *s)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static bool str_is_lower(const char *s) /* Python str.islower() on ASCII */
{
    bool cased = false;
    for (; *s; s++) {
        if (isupper((unsigned char)*s))
            return false;
        if (islower((unsigned char)*s))
            cased = true;
    }
    return cased;
}

static bool str_all_alpha(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalpha((unsigned char)*s))
            return false;
    return true;
}

static bool str_has_digit(const char *s)
{
    for (; *s; s++)
        if (isdigit((unsigned char)*s))
            return true;
    return false;
}

/* label normalisation: "7b1" -> "7.1B", "1_5b" -> "1.5B" */
static void normalize_size_label(char *p)
{
    for (char *c = p; *c; c++)
        if (*c == '_')
            *c = '.';
    size_t n = strlen(p);
    if (n >= 2 && isdigit((unsigned char)p[n - 1])) {
        /* label[:-2] + "." + label[-1] + label[-2]; one char longer */
        char last = p[n - 1], prev = p[n - 2];
        p[n - 2] = '.';
        p[n - 1] = last;
        p[n] = prev;
        p[n + 1] = '\0';
        n++;
    }
    if (n > 1 && isdigit((unsigned char)p[n - 2]) && strchr("kmbt", p[n - 1]))
        p[n - 1] = (char)toupper((unsigned char)p[n - 1]);
}

/* float(label[:-1]) * 1000 ** " KMBT".find(label[-1]); false = ValueError */
static bool size_label_params(const char *label, double *out)
{
    size_t n = strlen(label);
    if (n < 2)
        return false;
    char num[64];
    if (n - 1 >= sizeof num)
        return false;
    memcpy(num, label, n - 1);
    num[n - 1] = '\0';
    char *end = NULL;
    double v = strtod(num, &end);
    if (end == num || *end != '\0')
        return false;
    const char *scale = " KMBT";
    const char *f = strchr(scale, label[n - 1]);
    int e = f ? (int)(f - scale) : -1;
    *out = v * pow(1000.0, e);
    return true;
}

static char *join_parts(char **parts, const unsigned *types, size_t n, unsigned want,
                        unsigned exclude, bool dedup)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i]) + 1;
    char *out = calloc(len, 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(types[i] & want) || (types[i] & exclude))
            continue;
        if (dedup) {
            bool seen = false;
            for (size_t j = 0; j < i; j++)
                if ((types[j] & want) && !(types[j] & exclude) && strcmp(parts[j], parts[i]) == 0)
                    seen = true;
            if (seen)
                continue;
        }
        if (out[0])
            strcat(out, "-");
        strcat(out, parts[i]);
    }
    if (!out[0]) {
        free(out);
        return NULL;
    }
    return out;
}

static bool model_id_components(const char *model_id, uint64_t total_params, struct model_id *id)
{
    memset(id, 0, sizeof *id);
    if (strchr(model_id, ' ')) {
        id->full_name = strdup(model_id);
        return id->full_name != NULL;
    }
    const char *full = model_id;
    const char *slash = strchr(model_id, '/');
    if (slash) {
        if (slash > model_id && model_id[0] != '.') {
            id->org = strndup(model_id, (size_t)(slash - model_id));
            if (!id->org)
                return false;
        }
        full = slash + 1;
    }
    id->full_name = strdup(full);
    if (!id->full_name)
        return false;

    char *buf = malloc(strlen(full) * 2 + 2); /* room for normalisation growth */
    if (!buf)
        return false;
    char *parts[MAX_NAME_PARTS];
    unsigned types[MAX_NAME_PARTS] = {0};
    size_t n = 0;
    {
        char *w = buf;
        const char *p = full;
        while (*p && n < MAX_NAME_PARTS) {
            const char *e = strchr(p, '-');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len > 0) {
                memcpy(w, p, len);
                w[len] = '\0';
                parts[n++] = w;
                w += len + 2; /* one spare byte for normalize_size_label */
            }
            if (!e)
                break;
            p = e + 1;
        }
    }

    for (size_t i = 0; i < n; i++) {
        char *part = parts[i];
        if (full_match("^(v|iter)?[0-9]+([.][0-9]+)*$", part)) {
            types[i] |= PT_VERSION;
        } else if (full_match("^(i?q[0-9](_[A-Za-z0-9_])*|b?fp?(16|32))$", part)) {
            types[i] |= PT_TYPE;
            for (char *c = part; *c; c++)
                *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 &&
                   full_match("^((a|[0-9]+x)?[0-9]+([._][0-9]+)?[kmbt][0-9]?|small|mini|medium|"
                              "large|x?xl)$",
                              part)) {
            normalize_size_label(part);
            double label_params;
            if (total_params != 0 && size_label_params(part, &label_params)) {
                double tp = (double)total_params;
                if (fabs(label_params - tp) > (double)(7 * total_params / 8)) {
                    types[i] |= PT_FINETUNE; /* likely a context length */
                    size_t l = strlen(part);
                    part[l - 1] = (char)tolower((unsigned char)part[l - 1]);
                }
            }
            if (types[i] == 0)
                types[i] |= PT_SIZE;
        } else if (i > 0 && full_match("^(chat|instruct|vision|lora)$", part)) {
            types[i] |= PT_FINETUNE;
        }
    }
    /* word-only size labels are dropped when a numeric one exists */
    bool numeric_size = false;
    for (size_t i = 0; i < n; i++)
        if ((types[i] & PT_SIZE) && str_has_digit(parts[i]))
            numeric_size = true;
    if (numeric_size)
        for (size_t i = 0; i < n; i++)
            if ((types[i] & PT_SIZE) && str_all_alpha(parts[i]))
                types[i] &= ~(unsigned)PT_SIZE;

    bool at_start = true;
    for (size_t i = 0; i < n; i++) {
        if (at_start && ((types[i] == 0 && isalpha((unsigned char)parts[i][0])) ||
                         (types[i] & PT_VERSION))) {
            types[i] |= PT_BASENAME;
        } else {
            at_start = false;
            if (types[i] == 0)
                types[i] |= PT_FINETUNE;
        }
    }
    for (size_t i = n; i-- > 0;) {
        if ((types[i] & PT_BASENAME) && types[i] != PT_BASENAME)
            types[i] &= ~(unsigned)PT_BASENAME;
        else
            break;
    }
    id->basename = join_parts(parts, types, n, PT_BASENAME, 0, false);
    id->size_label = join_parts(parts, types, n, PT_SIZE, 0, true);
    id->finetune = join_parts(parts, types, n, PT_FINETUNE, 0, false);
    id->version = join_parts(parts, types, n, PT_VERSION, PT_BASENAME, false);
    if (!id->size_label && !id->finetune && !id->version) {
        free(id->basename);
        id->basename = NULL;
    }
    free(buf);
    return true;
}

/* Metadata.id_to_title */
static char *id_to_title(const char *s)
{
    size_t n = strlen(s);
    char *out = calloc(n + 1, 1);
    char *tmp = strdup(s);
    if (!out || !tmp) {
        free(out);
        free(tmp);
        return NULL;
    }
    for (char *c = tmp; *c; c++)
        if (*c == '-')
            *c = ' ';
    char *save = NULL;
    for (char *w = strtok_r(tmp, " \t\n\r\f\v", &save); w; w = strtok_r(NULL, " \t\n\r\f\v", &save)) {
        if (out[0])
            strcat(out, " ");
        char *dst = out + strlen(out);
        strcpy(dst, w);
        bool keep = !str_is_lower(w) || full_match("^(v[0-9]+([.][0-9]+)*|[0-9].*)$", w);
        if (!keep) {
            bool prev_cased = false;
            for (char *c = dst; *c; c++) {
                if (isalpha((unsigned char)*c)) {
                    *c = prev_cased ? (char)tolower((unsigned char)*c)
                                    : (char)toupper((unsigned char)*c);
                    prev_cased = true;
                } else {
                    prev_cased = false;
                }
            }
        }
    }
    free(tmp);
    return out;
}

/* gguf.utility.model_weight_count_rounded_notation(n, min_digits=2) */
static void rounded_notation(uint64_t count, char *out, size_t cap)
{
    double c = (double)count, scaled;
    const char *suffix;
    if (c > 1e12) {
        scaled = c * 1e-12;
        suffix = "T";
    } else if (c > 1e9) {
        scaled = c * 1e-9;
        suffix = "B";
    } else if (c > 1e6) {
        scaled = c * 1e-6;
        suffix = "M";
    } else {
        scaled = c * 1e-3;
        suffix = "K";
    }
    char r[64];
    snprintf(r, sizeof r, "%.0f", rint(scaled)); /* Python round(): half to even */
    const char *digits = r;
    while (*digits == '0')
        digits++;
    int fix = 2 - (int)strlen(digits);
    if (fix < 0)
        fix = 0;
    snprintf(out, cap, "%.*f%s", fix, scaled, suffix);
}

struct gen_meta {
    char *name, *version, *organization, *finetune, *basename, *size_label;
};

static void gen_meta_release(struct gen_meta *g)
{
    free(g->name);
    free(g->version);
    free(g->organization);
    free(g->finetune);
    free(g->basename);
    free(g->size_label);
}

static bool take_heuristics(struct gen_meta *g, const char *model_id, uint64_t total_params)
{
    struct model_id id;
    if (!model_id_components(model_id, total_params, &id)) {
        model_id_release(&id);
        return false;
    }
    if (!g->name && id.full_name)
        g->name = id_to_title(id.full_name);
    if (!g->organization && id.org)
        g->organization = id_to_title(id.org);
#define TAKE(field)                                                                            \
    if (!g->field && id.field) {                                                               \
        g->field = id.field;                                                                   \
        id.field = NULL;                                                                       \
    }
    TAKE(basename)
    TAKE(finetune)
    TAKE(version)
    TAKE(size_label)
#undef TAKE
    model_id_release(&id);
    return true;
}

/* ---- helpers ---- */

static cJSON *read_json(const char *dir, const char *name, struct ec_diag *d, enum ec_status *st)
{
    *st = EC_OK;
    char *p = ec_path_join(dir, name);
    if (!p) {
        *st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!ec_path_exists(p)) {
        free(p);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    *st = ec_read_file(p, JSON_MAX_BYTES, &text, &len, d);
    cJSON *j = NULL;
    if (*st == EC_OK) {
        j = cJSON_ParseWithLength(text, len);
        if (!j)
            *st = ec_fail(d, EC_ERR_FORMAT, "%s: malformed JSON", p);
    }
    free(text);
    free(p);
    return j;
}

static const cJSON *jget(const cJSON *o, const char *key)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static enum ec_status add_u32_key(struct ec_gguf_writer *w, const char *arch, const char *suffix,
                                  const cJSON *v, const char *cfg, struct ec_diag *d)
{
    if (!cJSON_IsNumber(v))
        return EC_OK;
    if (!(v->valuedouble >= 0 && v->valuedouble <= 4294967295.0) ||
        v->valuedouble != floor(v->valuedouble))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected an unsigned 32-bit integer", cfg,
                       v->string ? v->string : suffix);
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return ec_gguf_writer_add_u32(w, key, (uint32_t)v->valuedouble, d);
}

static enum ec_status add_f32_key(struct ec_gguf_writer *w, const char *arch, const char *suffix,
                                  const cJSON *v, struct ec_diag *d)
{
    if (!cJSON_IsNumber(v))
        return EC_OK;
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return ec_gguf_writer_add_f32(w, key, (float)v->valuedouble, d);
}

static const cJSON *first_of(const cJSON *cfg, const char *const *keys)
{
    for (; *keys; keys++) {
        const cJSON *v = jget(cfg, *keys);
        if (v)
            return v;
    }
    return NULL;
}

static uint64_t total_param_count(const struct ec_model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        n += ec_model_tensor_n_elems(&m->tensors[i]);
    return n;
}

static enum ec_status write_general(const struct ec_model *m, struct ec_gguf_writer *w,
                                    const cJSON *cfg, struct ec_diag *d)
{
    enum ec_status s;
    struct gen_meta g = {0};
    uint64_t total = total_param_count(m);

    const cJSON *nop = jget(cfg, "_name_or_path");
    if (cJSON_IsString(nop)) {
        int slashes = 0;
        for (const char *c = nop->valuestring; *c; c++)
            slashes += *c == '/';
        if (slashes <= 1 && !take_heuristics(&g, nop->valuestring, total))
            goto out_nomem;
    }
    char *dirname = NULL;
    {
        char *real = realpath(m->path, NULL);
        const char *p = real ? real : m->path;
        size_t n = strlen(p);
        while (n > 1 && p[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && p[b - 1] != '/')
            b--;
        dirname = strndup(p + b, n - b);
        free(real);
        if (!dirname)
            goto out_nomem;
    }
    bool ok = take_heuristics(&g, dirname, total);
    if (ok && !g.name)
        g.name = strdup(dirname);
    free(dirname);
    if (!ok || !g.name)
        goto out_nomem;
    if (!g.size_label && total > 0) {
        char label[64];
        rounded_notation(total, label, sizeof label);
        g.size_label = strdup(label);
        if (!g.size_label)
            goto out_nomem;
    }

    if ((s = ec_gguf_writer_add_str(w, "general.architecture", m->hp.gguf_arch, d)) != EC_OK ||
        (s = ec_gguf_writer_add_str(w, "general.type", "model", d)) != EC_OK ||
        (s = ec_gguf_writer_add_str(w, "general.name", g.name, d)) != EC_OK)
        goto out;
    if (g.version && (s = ec_gguf_writer_add_str(w, "general.version", g.version, d)) != EC_OK)
        goto out;
    if (g.organization &&
        (s = ec_gguf_writer_add_str(w, "general.organization", g.organization, d)) != EC_OK)
        goto out;
    if (g.finetune && (s = ec_gguf_writer_add_str(w, "general.finetune", g.finetune, d)) != EC_OK)
        goto out;
    if (g.basename && (s = ec_gguf_writer_add_str(w, "general.basename", g.basename, d)) != EC_OK)
        goto out;
    if (g.size_label &&
        (s = ec_gguf_writer_add_str(w, "general.size_label", g.size_label, d)) != EC_OK)
        goto out;
    s = EC_OK;
out:
    gen_meta_release(&g);
    return s;
out_nomem:
    gen_meta_release(&g);
    return ec_fail(d, EC_ERR_NOMEM, "out of memory deriving the model name");
}

static enum ec_status write_params(const struct ec_model *m, struct ec_gguf_writer *w,
                                   const cJSON *cfg, const char *cfg_path, uint32_t file_type,
                                   struct ec_diag *d)
{
    enum ec_status s;
    const char *a = m->hp.gguf_arch;
    static const char *const k_layers[] = {"n_layers", "num_hidden_layers", "n_layer",
                                           "num_layers", NULL};
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", NULL};
    static const char *const k_embd[] = {"hidden_size", "n_embd", NULL};
    static const char *const k_ff[] = {"intermediate_size", "n_inner", NULL};
    static const char *const k_head[] = {"num_attention_heads", "n_head", NULL};
    static const char *const k_norm[] = {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon",
                                         NULL};
    if ((s = add_u32_key(w, a, "block_count", first_of(cfg, k_layers), cfg_path, d)) ||
        (s = add_u32_key(w, a, "context_length", first_of(cfg, k_ctx), cfg_path, d)) ||
        (s = add_u32_key(w, a, "embedding_length", first_of(cfg, k_embd), cfg_path, d)) ||
        (s = add_u32_key(w, a, "feed_forward_length", first_of(cfg, k_ff), cfg_path, d)) ||
        (s = add_u32_key(w, a, "attention.head_count", first_of(cfg, k_head), cfg_path, d)) ||
        (s = add_u32_key(w, a, "attention.head_count_kv", jget(cfg, "num_key_value_heads"),
                         cfg_path, d)) ||
        (s = add_f32_key(w, a, "rope.freq_base", jget(cfg, "rope_theta"), d)) ||
        (s = add_f32_key(w, a, "attention.layer_norm_rms_epsilon", jget(cfg, "rms_norm_eps"),
                         d)) ||
        (s = add_f32_key(w, a, "attention.layer_norm_epsilon", first_of(cfg, k_norm), d)) ||
        (s = add_u32_key(w, a, "expert_count", jget(cfg, "num_local_experts"), cfg_path, d)) ||
        (s = add_u32_key(w, a, "expert_used_count", jget(cfg, "num_experts_per_tok"), cfg_path,
                         d)) ||
        (s = add_u32_key(w, a, "attention.key_length", jget(cfg, "head_dim"), cfg_path, d)) ||
        (s = add_u32_key(w, a, "attention.value_length", jget(cfg, "head_dim"), cfg_path, d)) ||
        (s = ec_gguf_writer_add_u32(w, "general.file_type", file_type, d)))
        return s;

    /* rope scaling from the parsed hyper-parameters (rope_type or type):
     * linear and yarn as keys, for every family as the current converter
     * writes them; llama3 has no key, its rope_freqs.weight tensor carries it
     * (formats/model.c) */
    const struct ec_hparams *hp = &m->hp;
    char key[96];
    if (hp->family != EC_ARCH_QWEN2) {
        if ((s = add_u32_key(w, a, "vocab_size", jget(cfg, "vocab_size"), cfg_path, d)))
            return s;
        if ((s = ec_gguf_writer_add_u32(w, "llama.rope.dimension_count",
                                        jget(cfg, "head_dim") ? hp->head_dim : hp->n_embd / hp->n_head, d)))
            return s;
    }
    if (hp->rope_scaling == EC_ROPE_SCALING_LINEAR || hp->rope_scaling == EC_ROPE_SCALING_YARN) {
        const bool yarn = hp->rope_scaling == EC_ROPE_SCALING_YARN;
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        if ((s = ec_gguf_writer_add_str(w, key, yarn ? "yarn" : "linear", d)))
            return s;
        snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
        if ((s = ec_gguf_writer_add_f32(w, key, hp->rope_factor, d)))
            return s;
        snprintf(key, sizeof key, "%s.rope.scaling.original_context_length", a);
        if (yarn && hp->rope_orig_ctx && (s = ec_gguf_writer_add_u32(w, key, hp->rope_orig_ctx, d)))
            return s;
    }
    return EC_OK;
}

static enum ec_status add_strs(struct ec_gguf_writer *w, const char *key, char *const *strs,
                               uint32_t n, struct ec_diag *d)
{
    uint64_t *lens = malloc((n ? n : 1) * sizeof *lens);
    if (!lens)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory writing '%s'", key);
    for (uint32_t i = 0; i < n; i++)
        lens[i] = strlen(strs[i]);
    enum ec_status s = ec_gguf_writer_add_str_array(w, key, (const char *const *)strs, lens, n, d);
    free(lens);
    return s;
}

static enum ec_status write_vocab(const struct ec_model *m, struct ec_gguf_writer *w,
                                  const cJSON *tok_cfg, struct ec_diag *d)
{
    enum ec_status s;
    const struct ec_vocab *v = &m->vocab;
    bool spm = v->type == EC_VOCAB_SPM;
    if (v->type == EC_VOCAB_NONE || v->n_tokens == 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: no tokenizer found (tokenizer.model or tokenizer.json)",
                       m->path);
    if ((s = ec_gguf_writer_add_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", d)) ||
        (s = ec_gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre ? v->pre : "default", d)) ||
        (s = add_strs(w, "tokenizer.ggml.tokens", v->tokens, v->n_tokens, d)))
        return s;
    if (spm && v->scores &&
        (s = ec_gguf_writer_add_array(w, "tokenizer.ggml.scores", EC_GGUF_F32, v->scores,
                                      v->n_tokens, d)))
        return s;
    if ((s = ec_gguf_writer_add_array(w, "tokenizer.ggml.token_type", EC_GGUF_I32, v->token_types,
                                      v->n_tokens, d)))
        return s;
    if (!spm && v->n_merges &&
        (s = add_strs(w, "tokenizer.ggml.merges", v->merges, v->n_merges, d)))
        return s;
    const struct {
        const char *key;
        int32_t id;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", v->bos_id},
        {"tokenizer.ggml.eos_token_id", v->eos_id},
        {"tokenizer.ggml.unknown_token_id", v->unk_id},
        {"tokenizer.ggml.seperator_token_id", v->sep_id},
        {"tokenizer.ggml.padding_token_id", v->pad_id},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0 && (uint32_t)ids[i].id < v->n_tokens &&
            (s = ec_gguf_writer_add_u32(w, ids[i].key, (uint32_t)ids[i].id, d)))
            return s;
    if (v->has_add_bos && (s = ec_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos, d)))
        return s;
    if (v->has_add_eos && (s = ec_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos, d)))
        return s;
    const cJSON *tmpl = jget(tok_cfg, "chat_template");
    if (cJSON_IsString(tmpl) &&
        (s = ec_gguf_writer_add_str(w, "tokenizer.chat_template", tmpl->valuestring, d)))
        return s;
    const cJSON *asp = jget(tok_cfg, "add_prefix_space");
    if (m->hp.family != EC_ARCH_QWEN2 && cJSON_IsBool(asp) &&
        (s = ec_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(asp), d)))
        return s;
    return EC_OK;
}

static enum ec_status write_from_gguf(const struct ec_model *m, struct ec_gguf_writer *w,
                                      uint32_t file_type, struct ec_diag *d)
{
    bool have_ft = false;
    for (uint64_t i = 0; i < m->gguf.n_kv; i++) {
        const struct ec_gguf_kv *kv = &m->gguf.kv[i];
        enum ec_status s;
        if (strcmp(kv->key, "general.file_type") == 0) {
            s = ec_gguf_writer_add_u32(w, kv->key, file_type, d);
            have_ft = true;
        } else {
            s = ec_gguf_writer_add_kv(w, kv, d);
        }
        if (s != EC_OK)
            return s;
    }
    if (!have_ft)
        return ec_gguf_writer_add_u32(w, "general.file_type", file_type, d);
    return EC_OK;
}

enum ec_status ec_model_write_gguf_kvs(const struct ec_model *m, struct ec_gguf_writer *w,
                                       uint32_t file_type, struct ec_diag *d)
{
    if (m->source == EC_SRC_GGUF)
        return write_from_gguf(m, w, file_type, d);

    enum ec_status s;
    char *cfg_path = ec_path_join(m->path, "config.json");
    cJSON *cfg = NULL, *tok_cfg = NULL;
    if (!cfg_path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    cfg = read_json(m->path, "config.json", d, &s);
    if (s != EC_OK)
        goto out;
    if (!cJSON_IsObject(cfg)) {
        s = ec_fail(d, EC_ERR_FORMAT, "%s: expected a JSON object", cfg_path);
        goto out;
    }
    tok_cfg = read_json(m->path, "tokenizer_config.json", d, &s);
    if (s != EC_OK)
        goto out;
    if ((s = write_general(m, w, cfg, d)) != EC_OK ||
        (s = write_params(m, w, cfg, cfg_path, file_type, d)) != EC_OK ||
        (s = write_vocab(m, w, tok_cfg, d)) != EC_OK)
        goto out;
    s = ec_gguf_writer_add_u32(w, "general.quantization_version", GGML_QUANT_VERSION, d);
out:
    cJSON_Delete(tok_cfg);
    cJSON_Delete(cfg);
    free(cfg_path);
    return s;
}

/* ---- GGUF -> hyper-parameters ---- */

static bool get_u32_key(const struct ec_gguf *g, const char *arch, const char *suffix,
                        uint32_t *out)
{
    char key[128];
    uint64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!ec_gguf_get_u64(g, key, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool get_f32_key(const struct ec_gguf *g, const char *arch, const char *suffix, float *out)
{
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!ec_gguf_get_f64(g, key, &v))
        return false;
    *out = (float)v;
    return true;
}

enum ec_status ec_hparams_from_gguf(struct ec_hparams *hp, const struct ec_gguf *g,
                                    struct ec_diag *d)
{
    const char *path = g->file.path ? g->file.path : "gguf";
    memset(hp, 0, sizeof *hp);
    char *arch = ec_gguf_get_str(g, "general.architecture");
    if (!arch)
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'general.architecture' is missing", path);
    if (strcmp(arch, "llama") == 0) {
        hp->family = EC_ARCH_LLAMA;
        hp->hf_arch = "LlamaForCausalLM";
        hp->gguf_arch = "llama";
    } else if (strcmp(arch, "qwen2") == 0) {
        hp->family = EC_ARCH_QWEN2;
        hp->hf_arch = "Qwen2ForCausalLM";
        hp->gguf_arch = "qwen2";
    } else {
        enum ec_status s = ec_fail(d, EC_ERR_UNSUPPORTED,
                                   "%s: key 'general.architecture': '%s' is not supported "
                                   "(supported: llama, qwen2)",
                                   path, arch);
        free(arch);
        return s;
    }
    free(arch);
    const char *a = hp->gguf_arch;
    static const char *const required[] = {"block_count", "embedding_length",
                                           "feed_forward_length", "attention.head_count"};
    uint32_t *dst[] = {&hp->n_layer, &hp->n_embd, &hp->n_ff, &hp->n_head};
    for (size_t i = 0; i < 4; i++)
        if (!get_u32_key(g, a, required[i], dst[i]))
            return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s.%s' is missing or not an integer", path,
                           a, required[i]);
    if (hp->n_head == 0 || hp->n_embd == 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s.attention.head_count': must be positive",
                       path, a);
    hp->n_head_kv = hp->n_head;
    get_u32_key(g, a, "attention.head_count_kv", &hp->n_head_kv);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: key '%s.attention.head_count_kv': %u does not divide %u heads", path,
                       a, hp->n_head_kv, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    get_u32_key(g, a, "attention.key_length", &hp->head_dim);
    hp->n_ctx_train = 2048;
    get_u32_key(g, a, "context_length", &hp->n_ctx_train);
    hp->rope_theta = 10000.0f;
    get_f32_key(g, a, "rope.freq_base", &hp->rope_theta);
    hp->norm_eps = 1e-5f;
    get_f32_key(g, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps);

    const struct ec_gguf_tensor_info *embd = ec_gguf_find_tensor(g, "token_embd.weight");
    const struct ec_gguf_kv *toks = ec_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!get_u32_key(g, a, "vocab_size", &hp->n_vocab)) {
        if (toks && toks->type == EC_GGUF_ARRAY)
            hp->n_vocab = (uint32_t)toks->arr_n;
        else if (embd && embd->n_dims >= 2)
            hp->n_vocab = (uint32_t)embd->ne[1];
    }
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    char *rs = ec_gguf_get_str(g, key);
    hp->rope_factor = 1.0f;
    if (rs) {
        if (strcmp(rs, "linear") == 0)
            hp->rope_scaling = EC_ROPE_SCALING_LINEAR;
        else if (strcmp(rs, "yarn") == 0)
            hp->rope_scaling = EC_ROPE_SCALING_YARN;
        free(rs);
        get_f32_key(g, a, "rope.scaling.factor", &hp->rope_factor);
        get_u32_key(g, a, "rope.scaling.original_context_length", &hp->rope_orig_ctx);
    }
    hp->tied_embeddings = ec_gguf_find_tensor(g, "output.weight") == NULL;
    hp->attn_qkv_bias = ec_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    hp->attn_out_bias = ec_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    hp->mlp_bias = ec_gguf_find_tensor(g, "blk.0.ffn_gate.bias") != NULL ||
                   ec_gguf_find_tensor(g, "blk.0.ffn_up.bias") != NULL ||
                   ec_gguf_find_tensor(g, "blk.0.ffn_down.bias") != NULL;
    return EC_OK;
}
