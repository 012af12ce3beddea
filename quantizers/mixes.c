/* quantizers/mixes.c: per-tensor type plan of the quantization mixes
 * (Q4_K_M, ...), user overrides and row-length fallbacks. See
 * edgec/quantize.h for the rules and the order in which they apply.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "edgec/quantize.h"

/* ---- file types ---- */

struct ftype_row {
    const char *name;
    enum ec_ftype ftype;
    enum ec_dtype base;
};

static const struct ftype_row ftype_rows[] = {
    {"F32", EC_FTYPE_ALL_F32, EC_F32},
    {"F16", EC_FTYPE_MOSTLY_F16, EC_F16},
    {"BF16", EC_FTYPE_MOSTLY_BF16, EC_BF16},
    {"Q8_0", EC_FTYPE_MOSTLY_Q8_0, EC_Q8_0},
    {"Q4_0", EC_FTYPE_MOSTLY_Q4_0, EC_Q4_0},
    {"Q4_1", EC_FTYPE_MOSTLY_Q4_1, EC_Q4_1},
    {"Q5_0", EC_FTYPE_MOSTLY_Q5_0, EC_Q5_0},
    {"Q5_1", EC_FTYPE_MOSTLY_Q5_1, EC_Q5_1},
    {"Q2_K", EC_FTYPE_MOSTLY_Q2_K, EC_Q2_K},
    {"Q3_K_S", EC_FTYPE_MOSTLY_Q3_K_S, EC_Q3_K},
    {"Q3_K_M", EC_FTYPE_MOSTLY_Q3_K_M, EC_Q3_K},
    {"Q3_K_L", EC_FTYPE_MOSTLY_Q3_K_L, EC_Q3_K},
    {"Q4_K_S", EC_FTYPE_MOSTLY_Q4_K_S, EC_Q4_K},
    {"Q4_K_M", EC_FTYPE_MOSTLY_Q4_K_M, EC_Q4_K},
    {"Q5_K_S", EC_FTYPE_MOSTLY_Q5_K_S, EC_Q5_K},
    {"Q5_K_M", EC_FTYPE_MOSTLY_Q5_K_M, EC_Q5_K},
    {"Q6_K", EC_FTYPE_MOSTLY_Q6_K, EC_Q6_K},
    {"IQ4_NL", EC_FTYPE_MOSTLY_IQ4_NL, EC_IQ4_NL},
    {"IQ4_XS", EC_FTYPE_MOSTLY_IQ4_XS, EC_IQ4_XS},
};
#define N_FTYPE_ROWS (sizeof ftype_rows / sizeof ftype_rows[0])

/* llama-quantize's aliases (examples/quantize/quantize.cpp QUANT_OPTIONS) */
static const struct {
    const char *alias;
    enum ec_ftype ftype;
} ftype_aliases[] = {
    {"Q3_K", EC_FTYPE_MOSTLY_Q3_K_M},
    {"Q4_K", EC_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K", EC_FTYPE_MOSTLY_Q5_K_M},
};

static const struct ftype_row *ftype_row(enum ec_ftype f)
{
    for (size_t i = 0; i < N_FTYPE_ROWS; i++)
        if (ftype_rows[i].ftype == f)
            return &ftype_rows[i];
    return NULL;
}

const char *ec_ftype_name(enum ec_ftype f)
{
    const struct ftype_row *r = ftype_row(f);
    return r ? r->name : "?";
}

bool ec_ftype_from_name(const char *name, enum ec_ftype *out)
{
    for (size_t i = 0; i < N_FTYPE_ROWS; i++) {
        if (strcasecmp(ftype_rows[i].name, name) == 0) {
            *out = ftype_rows[i].ftype;
            return true;
        }
    }
    for (size_t i = 0; i < sizeof ftype_aliases / sizeof ftype_aliases[0]; i++) {
        if (strcasecmp(ftype_aliases[i].alias, name) == 0) {
            *out = ftype_aliases[i].ftype;
            return true;
        }
    }
    return false;
}

enum ec_dtype ec_ftype_base_type(enum ec_ftype f)
{
    const struct ftype_row *r = ftype_row(f);
    return r ? r->base : EC_DTYPE_UNSET;
}

const char *ec_ftype_names_help(void)
{
    return "Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 Q4_0 Q4_1 Q5_0 "
           "Q5_1 IQ4_NL IQ4_XS F16 BF16 F32 (aliases: Q3_K=Q3_K_M, Q4_K=Q4_K_M, Q5_K=Q5_K_M)";
}

/* ---- ordering ---- */

static int layer_of(const char *name)
{
    /* llama.cpp parses "blk.%d." and uses -1 when that fails */
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    if (*p == '+' || *p == '-')
        return -1;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end != '.' || v < -2147483647L || v > 2147483647L)
        return -1;
    return (int)v;
}

int ec_weight_name_cmp(const char *a, const char *b)
{
    int la = layer_of(a), lb = layer_of(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* ---- the plan ---- */

struct plan_state {
    const struct ec_plan_model *m;
    const struct ec_plan_opts *o;
    bool has_imatrix;    /* an imatrix with entries left after include/exclude */
    bool has_output;     /* an "output.weight" exists (else token_embd is tied) */
    int n_attention_wv;  /* attn_v / attn_qkv / attn_kv_b tensors */
    int i_attention_wv;
    int n_ffn_down, n_ffn_gate, n_ffn_up;
    int i_ffn_down, i_ffn_gate, i_ffn_up;
};

static bool contains(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* Whether llama.cpp quantizes this tensor at all. */
static bool is_quantizable(const struct ec_plan_tensor_in *t, const struct ec_plan_opts *o)
{
    const char *name = t->name;
    uint32_t nd = t->n_dims;
    while (nd > 1 && t->ne[nd - 1] == 1)
        nd--; /* ggml_n_dims ignores trailing 1s */
    if (nd < 2)
        return false;
    if (!ends_with(name, "weight"))
        return false;
    static const char *const never[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "attn_rel_b.weight",
        "time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (contains(name, never[i]))
            return false;
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
        return false;
    if (o->leave_output_tensor && strcmp(name, "output.weight") == 0)
        return false;
    return true;
}

static bool use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

static bool arch_is(const struct ec_plan_model *m, const char *a)
{
    return m->arch && strcmp(m->arch, a) == 0;
}

/* llama.cpp marks 80-layer llama models with grouped-query attention (and
 * 80-layer qwen2 models) as LLM_TYPE_70B, which bumps attn_v. */
static bool is_70b(const struct ec_plan_model *m)
{
    if (m->n_layer != 80)
        return false;
    if (arch_is(m, "llama"))
        return m->n_head_kv != 0 && m->n_head_kv != m->n_head;
    return arch_is(m, "qwen2");
}

static uint32_t n_gqa(const struct ec_plan_model *m)
{
    uint32_t kv = m->n_head_kv ? m->n_head_kv : m->n_head;
    return kv ? m->n_head / kv : 0;
}

/* Layer index of a ffn_* tensor: the running counter, or (MoE) the number in
 * the name, as llama.cpp's layer_info. */
static enum ec_status layer_index(int counter, int n_layer, const char *name, int *out,
                                  const struct ec_plan_model *m, struct ec_diag *d)
{
    if (m->n_expert > 1) {
        int l = layer_of(name);
        if (l < 0 || l >= n_layer)
            return ec_fail(d, EC_ERR_UNSUPPORTED,
                           "tensor '%s': cannot tell its layer (expected blk.N. with N < %d)",
                           name, n_layer);
        *out = l;
    } else {
        *out = counter;
    }
    return EC_OK;
}

/* The mix rules of llama_tensor_get_type for the supported file types (the
 * row-length fallback is applied by the caller). */
static enum ec_status mix_type(struct plan_state *s, const struct ec_plan_tensor_in *t,
                               enum ec_dtype new_type, enum ec_dtype *out, struct ec_diag *d)
{
    const struct ec_plan_model *m = s->m;
    const enum ec_ftype ft = s->o->ftype;
    const char *name = t->name;
    const bool falcon = arch_is(m, "falcon");
    int i_layer;
    enum ec_status st;

    if (strcmp(name, "output.weight") == 0 ||
        (!s->has_output && strcmp(name, "token_embd.weight") == 0)) {
        if (s->o->output_tensor_type != EC_DTYPE_UNSET) {
            new_type = s->o->output_tensor_type;
        } else {
            uint32_t qk = ec_dtype_info(new_type)->block_elems;
            if (falcon || t->ne[0] % qk != 0)
                new_type = EC_Q8_0;
            else if (new_type != EC_Q8_0)
                new_type = EC_Q6_K;
        }
    } else if (strcmp(name, "token_embd.weight") == 0) {
        if (s->o->token_embedding_type != EC_DTYPE_UNSET)
            new_type = s->o->token_embedding_type;
    } else if (contains(name, "attn_v.weight")) {
        if (ft == EC_FTYPE_MOSTLY_Q2_K)
            new_type = n_gqa(m) >= 4 ? EC_Q4_K : EC_Q3_K;
        else if (ft == EC_FTYPE_MOSTLY_Q3_K_M)
            new_type = s->i_attention_wv < 2 ? EC_Q5_K : EC_Q4_K;
        else if (ft == EC_FTYPE_MOSTLY_Q3_K_L)
            new_type = EC_Q5_K;
        else if ((ft == EC_FTYPE_MOSTLY_IQ4_NL || ft == EC_FTYPE_MOSTLY_IQ4_XS) && n_gqa(m) >= 4)
            new_type = EC_Q5_K;
        else if ((ft == EC_FTYPE_MOSTLY_Q4_K_M || ft == EC_FTYPE_MOSTLY_Q5_K_M) &&
                 use_more_bits(s->i_attention_wv, s->n_attention_wv))
            new_type = EC_Q6_K;
        else if (ft == EC_FTYPE_MOSTLY_Q4_K_S && s->i_attention_wv < 4)
            new_type = EC_Q5_K;
        if (is_70b(m) && (new_type == EC_Q3_K || new_type == EC_Q4_K))
            new_type = EC_Q5_K;
        if (m->n_expert == 8)
            new_type = EC_Q8_0;
        ++s->i_attention_wv;
    } else if (contains(name, "attn_k.weight")) {
        if (m->n_expert == 8)
            new_type = EC_Q8_0;
    } else if (contains(name, "attn_q.weight")) {
        /* only the IQ3 mixes change attn_q */
    } else if (contains(name, "ffn_down")) {
        st = layer_index(s->i_ffn_down, s->n_ffn_down, name, &i_layer, m, d);
        if (st != EC_OK)
            return st;
        const int n_layer = s->n_ffn_down;
        if (ft == EC_FTYPE_MOSTLY_Q2_K) {
            new_type = EC_Q3_K;
        } else if (ft == EC_FTYPE_MOSTLY_Q3_K_M) {
            new_type = i_layer < n_layer / 16                        ? EC_Q5_K
                       : !falcon || use_more_bits(i_layer, n_layer) ? EC_Q4_K
                                                                     : EC_Q3_K;
        } else if (ft == EC_FTYPE_MOSTLY_Q3_K_L) {
            new_type = falcon ? EC_Q4_K : EC_Q5_K;
        } else if (ft == EC_FTYPE_MOSTLY_Q4_K_M) {
            if (falcon)
                new_type = i_layer < n_layer / 16          ? EC_Q6_K
                           : use_more_bits(i_layer, n_layer) ? EC_Q5_K
                                                             : EC_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                new_type = EC_Q6_K;
        } else if (i_layer < n_layer / 8 &&
                   (ft == EC_FTYPE_MOSTLY_IQ4_NL || ft == EC_FTYPE_MOSTLY_IQ4_XS) &&
                   !s->has_imatrix) {
            new_type = EC_Q5_K;
        } else if (ft == EC_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i_layer, n_layer)) {
            new_type = EC_Q6_K;
        } else if (ft == EC_FTYPE_MOSTLY_Q4_K_S && !falcon && i_layer < n_layer / 8) {
            new_type = EC_Q5_K;
        } else if ((ft == EC_FTYPE_MOSTLY_Q4_0 || ft == EC_FTYPE_MOSTLY_Q5_0) &&
                   s->has_imatrix && i_layer < n_layer / 8) {
            /* llama.cpp guards the first ffn_down layers only with an imatrix */
            new_type = ft == EC_FTYPE_MOSTLY_Q4_0 ? EC_Q4_1 : EC_Q5_1;
        }
        ++s->i_ffn_down;
    } else if (contains(name, "attn_output.weight")) {
        if (!falcon) {
            if (m->n_expert == 8) {
                if (ft == EC_FTYPE_MOSTLY_Q2_K || ft == EC_FTYPE_MOSTLY_Q3_K_S ||
                    ft == EC_FTYPE_MOSTLY_Q3_K_M || ft == EC_FTYPE_MOSTLY_IQ4_NL ||
                    ft == EC_FTYPE_MOSTLY_Q4_K_S || ft == EC_FTYPE_MOSTLY_Q4_K_M ||
                    ft == EC_FTYPE_MOSTLY_IQ4_XS)
                    new_type = EC_Q5_K;
            } else {
                if (ft == EC_FTYPE_MOSTLY_Q2_K)
                    new_type = EC_Q3_K;
                else if (ft == EC_FTYPE_MOSTLY_Q3_K_M)
                    new_type = EC_Q4_K;
                else if (ft == EC_FTYPE_MOSTLY_Q3_K_L)
                    new_type = EC_Q5_K;
            }
        } else if (ft == EC_FTYPE_MOSTLY_Q3_K_L) {
            new_type = EC_Q4_K;
        }
    } else if (contains(name, "attn_qkv.weight")) {
        if (ft == EC_FTYPE_MOSTLY_Q3_K_M || ft == EC_FTYPE_MOSTLY_Q3_K_L)
            new_type = EC_Q4_K;
        else if (ft == EC_FTYPE_MOSTLY_Q4_K_M)
            new_type = EC_Q5_K;
        else if (ft == EC_FTYPE_MOSTLY_Q5_K_M)
            new_type = EC_Q6_K;
    } else if (contains(name, "ffn_gate")) {
        st = layer_index(s->i_ffn_gate, s->n_ffn_gate, name, &i_layer, m, d);
        if (st != EC_OK)
            return st;
        ++s->i_ffn_gate; /* only the IQ3_XS mix changes ffn_gate */
    } else if (contains(name, "ffn_up")) {
        st = layer_index(s->i_ffn_up, s->n_ffn_up, name, &i_layer, m, d);
        if (st != EC_OK)
            return st;
        ++s->i_ffn_up;
    }
    *out = new_type;
    return EC_OK;
}

/* llama.cpp's fallback for a type whose block does not divide the row, or
 * EC_DTYPE_UNSET when llama.cpp has none (it refuses the model). */
static enum ec_dtype llama_fallback(enum ec_dtype t)
{
    switch (t) {
    case EC_TQ1_0:
    case EC_TQ2_0: return EC_Q4_0;
    case EC_IQ2_XXS:
    case EC_IQ2_XS:
    case EC_IQ2_S:
    case EC_IQ3_XXS:
    case EC_IQ3_S:
    case EC_IQ1_S:
    case EC_IQ1_M:
    case EC_Q2_K:
    case EC_Q3_K:
    case EC_IQ4_XS: return EC_IQ4_NL;
    case EC_Q4_K: return EC_Q5_0;
    case EC_Q5_K: return EC_Q5_1;
    case EC_Q6_K: return EC_Q8_0;
    default: return EC_DTYPE_UNSET;
    }
}

static const char *lower_name(enum ec_dtype t, char buf[16])
{
    const char *n = ec_dtype_name(t);
    size_t i = 0;
    for (; n[i] && i < 15; i++)
        buf[i] = (n[i] >= 'A' && n[i] <= 'Z' && !(n[i] == 'K' && i > 0 && n[i - 1] == '_'))
                     ? (char)(n[i] - 'A' + 'a')
                     : n[i];
    buf[i] = 0;
    return buf;
}

static enum ec_status add_warning(struct ec_quant_plan *p, struct ec_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum ec_status add_warning(struct ec_quant_plan *p, struct ec_diag *d, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(p->warnings, (p->n_warnings + 1) * sizeof *w);
    if (!w)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory for plan warnings");
    p->warnings = w;
    w[p->n_warnings] = strdup(buf);
    if (!w[p->n_warnings])
        return ec_fail(d, EC_ERR_NOMEM, "out of memory for plan warnings");
    p->n_warnings++;
    return EC_OK;
}

static bool type_fits(enum ec_dtype t, uint64_t ncols)
{
    const struct ec_dtype_info *i = ec_dtype_info(t);
    return i && ncols % i->block_elems == 0;
}

/* Apply the row-length fallback to e->wanted, setting e->type and warnings. */
static enum ec_status apply_fallback(struct ec_quant_plan *p, struct ec_plan_entry *e,
                                     struct ec_diag *d)
{
    const uint64_t ncols = e->ne[0];
    char a[16], b[16];
    e->type = e->wanted;
    if (type_fits(e->wanted, ncols))
        return EC_OK;
    const uint32_t qk = ec_dtype_info(e->wanted)->block_elems;
    enum ec_dtype fb = llama_fallback(e->wanted);
    e->flags |= EC_PLAN_FALLBACK;
    p->n_fallback++;
    if (fb == EC_DTYPE_UNSET) {
        /* llama.cpp: "Unsupported tensor size encountered" */
        e->type = EC_F16;
        if (!(e->flags & EC_PLAN_OVERRIDDEN)) {
            e->flags |= EC_PLAN_LLAMA_REFUSES;
            p->llama_refuses = true;
        }
        return add_warning(p, d,
                           "tensor '%s': %llu columns are not a multiple of %u, required for "
                           "%s%s; using F16",
                           e->name, (unsigned long long)ncols, qk, lower_name(e->wanted, a),
                           (e->flags & EC_PLAN_OVERRIDDEN)
                               ? ""
                               : " (llama-quantize refuses this tensor and stops)");
    }
    if (!type_fits(fb, ncols))
        fb = EC_F16;
    e->type = fb;
    return add_warning(p, d,
                       "tensor '%s': %llu columns are not a multiple of %u, required for %s; "
                       "using fallback %s",
                       e->name, (unsigned long long)ncols, qk, lower_name(e->wanted, a),
                       lower_name(fb, b));
}

static int entry_cmp(const void *a, const void *b)
{
    const struct ec_plan_entry *x = a, *y = b;
    return ec_weight_name_cmp(x->name, y->name);
}

static bool regex_any(const regex_t *res, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (regexec(&res[i], s, 0, NULL, 0) == 0)
            return true;
    return false;
}

/* llama-quantize drops imatrix entries matching an exclusion, then keeps only
 * those matching an inclusion (when any are given). */
static bool imatrix_selected(const regex_t *inc, size_t n_inc, const regex_t *exc, size_t n_exc,
                             const char *name)
{
    return !regex_any(exc, n_exc, name) && (n_inc == 0 || regex_any(inc, n_inc, name));
}

static enum ec_status compile_list(regex_t **out, size_t *n_done, const char *const *pats, size_t n,
                                   const char *what, struct ec_diag *d)
{
    *out = NULL;
    *n_done = 0;
    if (n == 0)
        return EC_OK;
    regex_t *r = calloc(n, sizeof *r);
    if (!r)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory for regexes");
    *out = r;
    for (size_t i = 0; i < n; i++) {
        int rc = regcomp(&r[i], pats[i], REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &r[i], msg, sizeof msg);
            return ec_fail(d, EC_ERR_ARG, "%s '%s': bad regular expression: %s", what, pats[i],
                           msg);
        }
        (*n_done)++;
    }
    return EC_OK;
}

static void free_list(regex_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        regfree(&r[i]);
    free(r);
}

void ec_quant_plan_release(struct ec_quant_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_warnings; i++)
        free(p->warnings[i]);
    free(p->warnings);
    for (size_t i = 0; i < p->n; i++)
        free(p->entries[i].name);
    free(p->entries);
    memset(p, 0, sizeof *p);
}

static bool plain_type_for_plan(enum ec_dtype t)
{
    return ec_dtype_info(t) != NULL && t < EC_GGML_TYPE_COUNT;
}

enum ec_status ec_quant_plan_build(struct ec_quant_plan *p, const struct ec_plan_model *m,
                                   const struct ec_plan_tensor_in *tensors, size_t n_tensors,
                                   const struct ec_plan_opts *o, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    regex_t *ov = NULL, *inc = NULL, *exc = NULL;
    size_t n_ov = 0, n_inc = 0, n_exc = 0;
    const char **ov_pats = NULL;

    memset(p, 0, sizeof *p);
    p->ftype = o->ftype;
    const enum ec_dtype base = ec_ftype_base_type(o->ftype);
    if (base == EC_DTYPE_UNSET)
        return ec_fail(d, EC_ERR_ARG, "unknown file type %d", (int)o->ftype);
    if (o->output_tensor_type != EC_DTYPE_UNSET && !plain_type_for_plan(o->output_tensor_type))
        return ec_fail(d, EC_ERR_ARG, "unknown output tensor type %d", (int)o->output_tensor_type);
    if (o->token_embedding_type != EC_DTYPE_UNSET && !plain_type_for_plan(o->token_embedding_type))
        return ec_fail(d, EC_ERR_ARG, "unknown token embedding type %d",
                       (int)o->token_embedding_type);

    if (o->n_overrides) {
        ov_pats = calloc(o->n_overrides, sizeof *ov_pats);
        if (!ov_pats)
            return ec_fail(d, EC_ERR_NOMEM, "out of memory for overrides");
        for (size_t i = 0; i < o->n_overrides; i++) {
            ov_pats[i] = o->overrides[i].pattern;
            if (!plain_type_for_plan(o->overrides[i].type)) {
                st = ec_fail(d, EC_ERR_ARG, "--tensor-type '%s': unknown type", ov_pats[i]);
                goto out_regex;
            }
        }
    }
    st = compile_list(&ov, &n_ov, ov_pats, o->n_overrides, "--tensor-type", d);
    if (st == EC_OK)
        st = compile_list(&inc, &n_inc, o->include_weights, o->n_include, "--include-weights", d);
    if (st == EC_OK)
        st = compile_list(&exc, &n_exc, o->exclude_weights, o->n_exclude, "--exclude-weights", d);
    if (st != EC_OK)
        goto out_regex;

    p->entries = calloc(n_tensors ? n_tensors : 1, sizeof *p->entries);
    if (!p->entries) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory for the plan (%zu tensors)", n_tensors);
        goto out_regex;
    }
    p->n = n_tensors;

    struct plan_state s = {.m = m, .o = o};
    if (o->has_imatrix) {
        if (!o->imatrix_names) {
            s.has_imatrix = true;
        } else {
            for (size_t k = 0; k < o->n_imatrix_names; k++)
                if (imatrix_selected(inc, n_inc, exc, n_exc, o->imatrix_names[k]))
                    p->n_imatrix_entries++;
            s.has_imatrix = p->n_imatrix_entries > 0;
        }
    }
    for (size_t i = 0; i < n_tensors; i++) {
        const struct ec_plan_tensor_in *t = &tensors[i];
        struct ec_plan_entry *e = &p->entries[i];
        if (t->n_dims == 0 || t->n_dims > 4) {
            st = ec_fail(d, EC_ERR_UNSUPPORTED, "tensor '%s': %u dimensions", t->name, t->n_dims);
            goto out_free;
        }
        e->src_index = i;
        e->name = strdup(t->name);
        if (!e->name) {
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory for the plan");
            goto out_free;
        }
        e->src_type = t->type;
        e->n_dims = t->n_dims;
        e->n_elems = 1;
        for (int k = 0; k < 4; k++) {
            e->ne[k] = k < (int)t->n_dims ? t->ne[k] : 1;
            e->n_elems *= e->ne[k];
        }
        if (contains(t->name, "attn_v.weight") || contains(t->name, "attn_qkv.weight") ||
            contains(t->name, "attn_kv_b.weight"))
            s.n_attention_wv++;
        else if (strcmp(t->name, "output.weight") == 0)
            s.has_output = true;
    }
    s.n_ffn_down = s.n_ffn_gate = s.n_ffn_up = (int)m->n_layer;

    qsort(p->entries, p->n, sizeof *p->entries, entry_cmp);
    for (size_t i = 1; i < p->n; i++) {
        if (strcmp(p->entries[i - 1].name, p->entries[i].name) == 0) {
            st = ec_fail(d, EC_ERR_FORMAT, "tensor '%s' appears twice", p->entries[i].name);
            goto out_free;
        }
    }

    for (size_t i = 0; i < p->n; i++) {
        struct ec_plan_entry *e = &p->entries[i];
        const struct ec_plan_tensor_in *t = &tensors[e->src_index];
        enum ec_dtype want = e->src_type;
        if (is_quantizable(t, o)) {
            e->flags |= EC_PLAN_QUANTIZABLE;
            want = base;
            if (!o->pure && ec_dtype_info(base)->is_quantized) {
                st = mix_type(&s, t, base, &want, d);
                if (st != EC_OK)
                    goto out_free;
            }
            for (size_t k = 0; k < n_ov; k++) {
                if (regexec(&ov[k], e->name, 0, NULL, 0) == 0) {
                    want = o->overrides[k].type;
                    e->flags |= EC_PLAN_OVERRIDDEN;
                    break;
                }
            }
            if (o->token_embedding_type != EC_DTYPE_UNSET &&
                strcmp(e->name, "token_embd.weight") == 0) {
                want = o->token_embedding_type;
                e->flags |= EC_PLAN_OVERRIDDEN;
            }
            if (o->output_tensor_type != EC_DTYPE_UNSET && strcmp(e->name, "output.weight") == 0) {
                want = o->output_tensor_type;
                e->flags |= EC_PLAN_OVERRIDDEN;
            }
            e->wanted = want;
            st = apply_fallback(p, e, d);
            if (st != EC_OK)
                goto out_free;
        } else {
            e->wanted = e->type = want;
        }
        if (e->type != e->src_type)
            e->flags |= EC_PLAN_QUANTIZE;
        if ((e->flags & EC_PLAN_QUANTIZE) && s.has_imatrix &&
            ec_dtype_info(e->type)->is_quantized &&
            imatrix_selected(inc, n_inc, exc, n_exc, e->name)) {
            bool listed = o->imatrix_names == NULL;
            for (size_t k = 0; !listed && k < o->n_imatrix_names; k++)
                listed = strcmp(o->imatrix_names[k], e->name) == 0;
            if (listed)
                e->flags |= EC_PLAN_IMATRIX;
        }
        if (!ec_dtype_tensor_bytes(e->src_type, (int)e->n_dims, e->ne, &e->src_bytes) ||
            !ec_dtype_tensor_bytes(e->type, (int)e->n_dims, e->ne, &e->dst_bytes)) {
            st = ec_fail(d, EC_ERR_UNSUPPORTED, "tensor '%s': cannot size %s or %s data",
                         e->name, ec_dtype_name(e->src_type), ec_dtype_name(e->type));
            goto out_free;
        }
        p->src_bytes_total += e->src_bytes;
        p->dst_bytes_total += e->dst_bytes;
        p->n_elems_total += e->n_elems;
    }
    goto out_regex;

out_free:
    ec_quant_plan_release(p);
out_regex:
    free_list(ov, n_ov);
    free_list(inc, n_inc);
    free_list(exc, n_exc);
    free(ov_pats);
    return st;
}
