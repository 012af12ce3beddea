/* formats/model.c: one model view over an HF checkpoint folder or a GGUF file.
 *
 * HF folders: tensors are listed under GGUF names in the order llama.cpp's
 * convert_hf_to_gguf.py writes them, which is the order it iterates the
 * safetensors files: shard by shard, each in header (= data) order. The
 * converter drops rotary_emb.inv_freq and friends, and refuses names it cannot
 * map; we do the same (the error names the tensor).
 *
 * Tied embeddings: a checkpoint that stores only lm_head.weight (with
 * model.embed_tokens.weight as a safetensors alias, or absent) means the
 * embedding *is* that matrix, so it becomes token_embd.weight, and no
 * output.weight is emitted while tie_word_embeddings holds. (The Python
 * converter maps it to output.weight and leaves token_embd out, which
 * llama.cpp then cannot load; see golden README section 2.) When both are
 * stored and the config says tied, output.weight is dropped.
 *
 * Q/K permutation (Llama/Mistral only; Qwen2 uses NEOX rope and keeps the HF
 * layout): HF rows of one head are [first halves of the rotary pairs, second
 * halves]; llama.cpp wants them interleaved. LlamaModel.permute reshapes the
 * rows to (n_head, 2, rows_per_head/2) and swaps the last two axes, so output
 * row h*R + 2*i + j comes from input row h*R + j*R/2 + i (R = rows per head).
 *
 * Llama 3 rope scaling (rope_scaling.rope_type "llama3"): llama.cpp applies it
 * through a rope_freqs.weight tensor of head_dim/2 frequency divisors, which
 * the converter computes from config.json and writes before every other
 * tensor. The HF view lists that tensor first too, computed here in float32
 * in the converter's order (torch float32 arithmetic), so convert, quantize,
 * prune and the engine all read the same values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/fp16.h"
#include "edgec/model.h"

#define CONFIG_MAX_BYTES (16u * 1024u * 1024u)

static void tensor_release(struct ec_model_tensor *t)
{
    free(t->name);
    t->name = NULL;
}

void ec_model_close(struct ec_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_tensors; i++)
        tensor_release(&m->tensors[i]);
    free(m->tensors);
    ec_vocab_release(&m->vocab);
    if (m->source == EC_SRC_HF)
        ec_safetensors_close(&m->st);
    else
        ec_gguf_close(&m->gguf);
    free(m->path);
    free(m->name);
    free(m->rope_freqs);
    memset(m, 0, sizeof *m);
}

const struct ec_model_tensor *ec_model_find(const struct ec_model *m, const char *gguf_name)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, gguf_name) == 0)
            return &m->tensors[i];
    return NULL;
}

uint64_t ec_model_tensor_n_elems(const struct ec_model_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++)
        n *= t->ne[i];
    return n;
}

/* Last path component without trailing slashes (heap string). */
static char *path_basename(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    char *out = malloc(n - b + 1);
    if (!out)
        return NULL;
    memcpy(out, path + b, n - b);
    out[n - b] = '\0';
    return out;
}

static bool is_plain_float(enum ec_dtype t)
{
    return t == EC_F32 || t == EC_F16 || t == EC_BF16;
}


/* Grow m->tensors (capacity *cap) so one more fits. */
static bool room_for_one(struct ec_model *m, size_t *cap, struct ec_diag *d)
{
    if (m->n_tensors < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 64;
    struct ec_model_tensor *nt = realloc(m->tensors, nc * sizeof *nt);
    if (!nt) {
        ec_fail(d, EC_ERR_NOMEM, "%s: out of memory listing tensors", m->path);
        return false;
    }
    m->tensors = nt;
    *cap = nc;
    return true;
}

static enum ec_status add_tensor(struct ec_model *m, size_t *cap, const struct ec_st_tensor *st,
                                 const char *gguf_name, struct ec_diag *d)
{
    if (!room_for_one(m, cap, d))
        return EC_ERR_NOMEM;
    struct ec_model_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(gguf_name);
    if (!t->name)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory listing tensors", m->path);
    m->n_tensors++;
    t->src_name = st->name;
    t->dtype = st->dtype;
    t->n_dims = (uint32_t)(st->ndim > 0 ? st->ndim : 1);
    for (int i = 0; i < EC_GGUF_MAX_DIMS; i++)
        t->ne[i] = (i < st->ndim) ? st->ne[i] : 1;
    t->data = st->data;
    t->n_bytes = st->n_bytes;
    t->src_file = st->file;
    t->src_offset = st->file_offset;

    bool is_q = strstr(gguf_name, ".attn_q.") != NULL;
    bool is_k = strstr(gguf_name, ".attn_k.") != NULL;
    if ((is_q || is_k) && m->hp.family != EC_ARCH_QWEN2) {
        uint32_t heads = is_q ? m->hp.n_head : m->hp.n_head_kv;
        uint64_t rows = t->n_dims >= 2 ? t->ne[1] : t->ne[0];
        if (heads == 0 || rows % ((uint64_t)heads * 2) != 0)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: tensor '%s': %llu rows cannot be split into %u heads of rotary "
                           "pairs",
                           st->file, st->name, (unsigned long long)rows, heads);
        t->permute_heads = heads;
    }
    return EC_OK;
}

/* rope_freqs.weight for llama3 rope scaling, as llama.cpp's converter
 * computes it: freqs = 1 / theta^(arange(0, dim, 2) / dim) in float32, then
 * per frequency 1 (short wavelengths), factor (long ones) or the smooth
 * blend in between, all in float32. Inserted as the first tensor. */
static enum ec_status add_llama3_rope_freqs(struct ec_model *m, size_t *cap, const char *dir,
                                            struct ec_diag *d)
{
    const struct ec_hparams *hp = &m->hp;
    const uint32_t dim = hp->head_dim, n = dim / 2;
    if (n == 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: llama3 rope scaling needs head_dim >= 2", dir);
    m->rope_freqs = malloc(n * sizeof *m->rope_freqs);
    if (!m->rope_freqs)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dir);
    const double lo = hp->rope_low_freq_factor > 0 ? hp->rope_low_freq_factor : 1.0;
    const double hi = hp->rope_high_freq_factor > 0 ? hp->rope_high_freq_factor : 4.0;
    const double old_ctx = hp->rope_orig_ctx ? hp->rope_orig_ctx : 8192;
    const float lo_wavelen = (float)(old_ctx / lo), hi_wavelen = (float)(old_ctx / hi);
    const float factor = hp->rope_factor, two_pi = (float)(2.0 * M_PI);
    for (uint32_t i = 0; i < n; i++) {
        float e = (float)(2 * i) / (float)dim;
        float freq = 1.0f / powf(hp->rope_theta, e);
        float wavelen = two_pi / freq, v;
        if (wavelen < hi_wavelen) {
            v = 1.0f;
        } else if (wavelen > lo_wavelen) {
            v = factor;
        } else {
            float smooth = ((float)old_ctx / wavelen - (float)lo) / (float)(hi - lo);
            v = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
        m->rope_freqs[i] = v;
    }
    if (!room_for_one(m, cap, d))
        return EC_ERR_NOMEM;
    memmove(m->tensors + 1, m->tensors, m->n_tensors * sizeof *m->tensors);
    struct ec_model_tensor *t = &m->tensors[0];
    memset(t, 0, sizeof *t);
    m->n_tensors++;
    t->name = strdup("rope_freqs.weight");
    if (!t->name)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory listing tensors", m->path);
    t->src_name = "rope_freqs.weight (from config.json rope_scaling)";
    t->dtype = EC_F32;
    t->n_dims = 1;
    t->ne[0] = n;
    for (int k = 1; k < EC_GGUF_MAX_DIMS; k++)
        t->ne[k] = 1;
    t->data = (const uint8_t *)m->rope_freqs;
    t->n_bytes = (uint64_t)n * sizeof(float);
    t->src_file = "config.json";
    t->src_offset = 0;
    return EC_OK;
}

static enum ec_status open_hf(struct ec_model *m, const char *dir, struct ec_diag *d)
{
    enum ec_status s;
    char *cfg_path = ec_path_join(dir, "config.json");
    char *cfg = NULL;
    size_t cfg_len = 0;
    if (!cfg_path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    s = ec_read_file(cfg_path, CONFIG_MAX_BYTES, &cfg, &cfg_len, d);
    if (s == EC_OK)
        s = ec_hparams_from_config_json(&m->hp, cfg, cfg_len, cfg_path, d);
    free(cfg);
    free(cfg_path);
    if (s != EC_OK)
        return s;

    s = ec_safetensors_open(&m->st, dir, d);
    if (s != EC_OK)
        return s;
    s = ec_vocab_from_hf_dir(&m->vocab, dir, &m->hp, d);
    if (s != EC_OK)
        return s;

    const struct ec_st_tensor *embd = NULL, *head = NULL;
    for (size_t i = 0; i < m->st.n_tensors; i++) {
        const struct ec_st_tensor *t = &m->st.tensors[i];
        if (t->alias_of)
            continue;
        if (strcmp(t->name, "model.embed_tokens.weight") == 0)
            embd = t;
        else if (strcmp(t->name, "lm_head.weight") == 0)
            head = t;
    }

    uint64_t bytes_by_type[3] = {0, 0, 0};
    size_t cap = 0;
    for (size_t i = 0; i < m->st.n_tensors; i++) {
        const struct ec_st_tensor *t = &m->st.tensors[i];
        if (t->alias_of || ec_hf_name_ignorable(t->name))
            continue;
        char *gname = ec_hf_to_gguf_name(t->name);
        if (!gname)
            return ec_fail(d, EC_ERR_UNSUPPORTED,
                           "%s: tensor '%s' at byte %llu: no GGUF name for it in the %s "
                           "architecture",
                           t->file, t->name, (unsigned long long)t->file_offset, m->hp.gguf_arch);
        if (t == head) {
            if (!embd) {
                /* only lm_head is stored: it is the (tied) embedding */
                s = add_tensor(m, &cap, t, "token_embd.weight", d);
                if (s == EC_OK && !m->hp.tied_embeddings)
                    s = add_tensor(m, &cap, t, "output.weight", d);
                free(gname);
                if (s != EC_OK)
                    return s;
                goto counted;
            }
            if (m->hp.tied_embeddings) {
                free(gname);
                continue;
            }
        }
        if (!is_plain_float(t->dtype)) {
            free(gname);
            return ec_fail(d, EC_ERR_UNSUPPORTED,
                           "%s: tensor '%s' at byte %llu: dtype %s is not supported (F32, F16 "
                           "and BF16 are)",
                           t->file, t->name, (unsigned long long)t->file_offset,
                           ec_dtype_name(t->dtype));
        }
        s = add_tensor(m, &cap, t, gname, d);
        free(gname);
        if (s != EC_OK)
            return s;
    counted:
        bytes_by_type[t->dtype == EC_F32 ? 0 : t->dtype == EC_F16 ? 1 : 2] += t->n_bytes;
    }
    if (!ec_model_find(m, "token_embd.weight"))
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: no tensor 'model.embed_tokens.weight' (nor a tied 'lm_head.weight')",
                       dir);
    if (m->hp.rope_scaling == EC_ROPE_SCALING_LLAMA3 && (s = add_llama3_rope_freqs(m, &cap, dir, d)) != EC_OK)
        return s;
    m->hf_dtype = EC_F32;
    if (bytes_by_type[1] > bytes_by_type[0] && bytes_by_type[1] >= bytes_by_type[2])
        m->hf_dtype = EC_F16;
    else if (bytes_by_type[2] > bytes_by_type[0] && bytes_by_type[2] > bytes_by_type[1])
        m->hf_dtype = EC_BF16;
    m->name = path_basename(dir);
    if (!m->name)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    return EC_OK;
}

static enum ec_status open_gguf(struct ec_model *m, const char *path, struct ec_diag *d)
{
    enum ec_status s = ec_gguf_open(&m->gguf, path, d);
    if (s != EC_OK)
        return s;
    s = ec_hparams_from_gguf(&m->hp, &m->gguf, d);
    if (s != EC_OK)
        return s;
    s = ec_vocab_from_gguf(&m->vocab, &m->gguf, d);
    if (s != EC_OK)
        return s;
    m->n_tensors = 0;
    m->tensors = calloc(m->gguf.n_tensors ? m->gguf.n_tensors : 1, sizeof *m->tensors);
    if (!m->tensors)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory listing tensors", path);
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const struct ec_gguf_tensor_info *gi = &m->gguf.tensors[i];
        struct ec_model_tensor *t = &m->tensors[i];
        t->name = strdup(gi->name);
        if (!t->name)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory listing tensors", path);
        m->n_tensors++;
        t->src_name = gi->name;
        t->dtype = gi->type;
        t->n_dims = gi->n_dims;
        for (int k = 0; k < EC_GGUF_MAX_DIMS; k++)
            t->ne[k] = gi->ne[k];
        t->data = gi->data;
        t->n_bytes = gi->n_bytes;
        t->src_file = m->gguf.file.path;
        t->src_offset = m->gguf.data_offset + gi->offset;
    }
    m->name = ec_gguf_get_str(&m->gguf, "general.name");
    if (!m->name)
        m->name = path_basename(path);
    m->hf_dtype = EC_F32;
    return EC_OK;
}

enum ec_status ec_model_open(struct ec_model *m, const char *path, struct ec_diag *d)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    enum ec_status s;
    if (ec_path_is_dir(path)) {
        m->source = EC_SRC_HF;
        s = open_hf(m, path, d);
    } else if (ec_path_exists(path)) {
        m->source = EC_SRC_GGUF;
        s = open_gguf(m, path, d);
    } else {
        s = ec_fail(d, EC_ERR_IO, "%s: no such file or folder", path);
    }
    if (s != EC_OK)
        ec_model_close(m);
    return s;
}

/* ---- reading ---- */

static size_t elem_bytes(enum ec_dtype t)
{
    const struct ec_dtype_info *info = ec_dtype_info(t);
    return info && !info->is_quantized && info->block_elems == 1 ? info->block_bytes : 0;
}

/* Source row feeding output row r (rows = ne[1] for matrices, elements for vectors). */
static uint64_t src_row(const struct ec_model_tensor *t, uint64_t r, uint64_t n_rows)
{
    if (t->permute_heads == 0)
        return r;
    uint64_t per_head = n_rows / t->permute_heads;
    uint64_t half = per_head / 2;
    uint64_t h = r / per_head, k = r % per_head;
    uint64_t i = k / 2, j = k % 2;
    return h * per_head + j * half + i;
}

static enum ec_status check_readable(const struct ec_model_tensor *t, bool need_plain,
                                     struct ec_diag *d)
{
    if (need_plain && !is_plain_float(t->dtype))
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': reading %s as F32 needs a dequantizer", t->src_file,
                       t->name, ec_dtype_name(t->dtype));
    if (t->permute_heads && elem_bytes(t->dtype) == 0)
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': cannot permute heads of a %s tensor", t->src_file,
                       t->name, ec_dtype_name(t->dtype));
    return EC_OK;
}

/* Geometry for row-wise copies: n_rows rows of row_bytes bytes. For a
 * vector that is permuted, each element is a row. */
static void row_geometry(const struct ec_model_tensor *t, uint64_t *n_rows, uint64_t *row_elems)
{
    if (t->n_dims <= 1 && t->permute_heads) {
        *n_rows = t->ne[0];
        *row_elems = 1;
        return;
    }
    uint64_t total = ec_model_tensor_n_elems(t);
    *row_elems = t->ne[0];
    *n_rows = t->ne[0] ? total / t->ne[0] : 0;
}

enum ec_status ec_model_tensor_read_raw(const struct ec_model *m, const struct ec_model_tensor *t,
                                        void *dst, struct ec_diag *d)
{
    (void)m;
    enum ec_status s = check_readable(t, false, d);
    if (s != EC_OK)
        return s;
    if (t->permute_heads == 0) {
        memcpy(dst, t->data, t->n_bytes);
        return EC_OK;
    }
    uint64_t n_rows, row_elems;
    row_geometry(t, &n_rows, &row_elems);
    size_t rb = (size_t)(row_elems * elem_bytes(t->dtype));
    /* A 2-D q/k matrix with extra dims would be a model we do not know. */
    uint64_t perm_rows = t->n_dims >= 2 ? t->ne[1] : t->ne[0];
    for (uint64_t r = 0; r < n_rows; r++) {
        uint64_t base = (r / perm_rows) * perm_rows;
        uint64_t sr = base + src_row(t, r % perm_rows, perm_rows);
        memcpy((uint8_t *)dst + r * rb, t->data + sr * rb, rb);
    }
    return EC_OK;
}

static void row_to_f32(enum ec_dtype type, const uint8_t *src, float *dst, size_t n)
{
    switch (type) {
    case EC_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case EC_F16:
        ec_fp16_bytes_to_fp32_row(src, dst, n);
        break;
    case EC_BF16:
        ec_bf16_bytes_to_fp32_row(src, dst, n);
        break;
    default:
        break;
    }
}

uint64_t ec_model_tensor_n_rows(const struct ec_model_tensor *t)
{
    uint64_t n_rows, row_elems;
    row_geometry(t, &n_rows, &row_elems);
    return n_rows;
}

enum ec_status ec_model_tensor_read_rows_f32(const struct ec_model *m,
                                             const struct ec_model_tensor *t, uint64_t row0,
                                             uint64_t n, float *dst, struct ec_diag *d)
{
    (void)m;
    enum ec_status s = check_readable(t, true, d);
    if (s != EC_OK)
        return s;
    uint64_t n_rows, row_elems;
    row_geometry(t, &n_rows, &row_elems);
    if (row0 > n_rows || n > n_rows - row0)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: tensor '%s': rows %llu..%llu outside its %llu rows",
                       t->src_file, t->name, (unsigned long long)row0,
                       (unsigned long long)(row0 + n), (unsigned long long)n_rows);
    size_t eb = elem_bytes(t->dtype);
    uint64_t perm_rows = t->n_dims >= 2 ? t->ne[1] : t->ne[0];
    /* rows are independent; a chunk of a big tensor is converted in parallel */
#pragma omp parallel for schedule(static) if (n * row_elems >= (1u << 18))
    for (uint64_t k = 0; k < n; k++) {
        uint64_t r = row0 + k, sr = r;
        if (t->permute_heads) {
            uint64_t base = (r / perm_rows) * perm_rows;
            sr = base + src_row(t, r % perm_rows, perm_rows);
        }
        row_to_f32(t->dtype, t->data + sr * row_elems * eb, dst + k * row_elems,
                   (size_t)row_elems);
    }
    return EC_OK;
}

enum ec_status ec_model_tensor_read_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                        float *dst, struct ec_diag *d)
{
    return ec_model_tensor_read_rows_f32(m, t, 0, ec_model_tensor_n_rows(t), dst, d);
}
