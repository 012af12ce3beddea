/* pruners/prune_out.c: writing a pruned model as GGUF or as an HF folder.
 *
 * GGUF: the keys `edgec convert` writes (ec_model_write_gguf_kvs), then the
 * hyper-parameters structured pruning changes are replaced: block_count,
 * feed_forward_length, attention.head_count(_kv) and key/value_length (always
 * written, because n_embd / n_head no longer gives head_dim once heads go).
 * HF: model.safetensors with HF names (without rope_freqs.weight, which
 * config.json's llama3 rope_scaling gives back), q/k rows put back into the HF
 * rotate_half layout (the inverse of formats/model.c's permutation, with the
 * output head counts), config.json with the new sizes and an explicit
 * head_dim, and the tokenizer files copied byte for byte.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "edgec/convert.h"
#include "edgec/fp16.h"
#include "edgec/io.h"
#include "pruners/prune_out.h"

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

enum ec_dtype ec_pout_type(const struct ec_pout *p, const struct ec_model_tensor *src,
                           uint32_t n_dims, enum ec_dtype outtype)
{
    const char *name = src->name;
    if (p->gguf)
        return ec_convert_tensor_type(name, n_dims, outtype);
    bool plain = src->dtype == EC_F32 || src->dtype == EC_F16 || src->dtype == EC_BF16;
    if (n_dims >= 2 && ends_with(name, ".weight") && !ends_with(name, "_norm.weight"))
        return outtype;
    return plain ? src->dtype : EC_F32;
}

enum ec_status ec_pout_open(struct ec_pout *p, const struct ec_model *m,
                            const struct ec_hparams *hp_out, const struct ec_prune_opts *o,
                            struct ec_diag *d)
{
    memset(p, 0, sizeof *p);
    p->m = m;
    p->hp = *hp_out;
    p->gguf = ends_with(o->output, ".gguf");
    const char *inputs[2] = {m->source == EC_SRC_GGUF ? m->gguf.file.path : NULL, NULL};
    enum ec_status s;
    if (p->gguf) {
        if ((s = ec_gguf_writer_open(&p->gw, o->output, inputs, d)) != EC_OK)
            return s;
        return EC_OK;
    }
    if (m->source != EC_SRC_HF)
        return ec_fail(d, EC_ERR_ARG,
                       "%s: an HF folder output needs an HF input (tokenizer files); "
                       "give -o NAME.gguf for a GGUF input",
                       o->output);
    if (ec_path_same_file(o->output, m->path))
        return ec_fail(d, EC_ERR_ARG, "%s: the output folder is the input folder", o->output);
    if (mkdir(o->output, 0777) != 0 && errno != EEXIST)
        return ec_fail(d, EC_ERR_IO, "%s: cannot create the folder: %s", o->output,
                       strerror(errno));
    p->dir = strdup(o->output);
    char *st_path = ec_path_join(o->output, "model.safetensors");
    if (!p->dir || !st_path) {
        free(st_path);
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    }
    const char **ins = calloc(m->st.n_files + 1, sizeof *ins);
    if (!ins) {
        free(st_path);
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->st.n_files; i++)
        ins[i] = m->st.files[i].path;
    s = ec_st_writer_open(&p->sw, st_path, ins, d);
    free(ins);
    free(st_path);
    if (s != EC_OK)
        return s;
    return ec_st_writer_add_meta(p->sw, "format", "pt", d);
}

enum ec_status ec_pout_add(struct ec_pout *p, const struct ec_model_tensor *src, const char *name,
                           int src_layer, int lin, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                           enum ec_dtype outtype, struct ec_diag *d)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct ec_pout_entry *ne = realloc(p->e, nc * sizeof *ne);
        if (!ne)
            return ec_fail(d, EC_ERR_NOMEM, "out of memory");
        p->e = ne;
        p->cap = nc;
    }
    struct ec_pout_entry *e = &p->e[p->n];
    memset(e, 0, sizeof *e);
    e->src = src;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->src_layer = src_layer;
    e->lin = lin;
    e->n_dims = n_dims;
    e->ne[0] = ne0;
    e->ne[1] = n_dims >= 2 ? ne1 : 1;
    e->type = ec_pout_type(p, src, n_dims, outtype);
    uint64_t ne4[4] = {e->ne[0], e->ne[1], 1, 1};
    p->n++;
    if (p->gguf)
        return ec_gguf_writer_add_tensor(p->gw, e->name, e->type, n_dims, ne4, d);
    if (strcmp(e->name, "rope_freqs.weight") == 0) {
        e->skip = true; /* config.json's rope_scaling gives it back */
        return EC_OK;
    }
    char *hf = ec_gguf_to_hf_name(e->name);
    if (!hf)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s' has no HF name", p->m->path,
                       e->name);
    enum ec_status s = ec_st_writer_add_tensor(p->sw, hf, e->type, (int)n_dims, ne4, d);
    free(hf);
    return s;
}

enum ec_status ec_pout_begin(struct ec_pout *p, struct ec_diag *d)
{
    if (p->gguf)
        return ec_gguf_writer_begin_data(p->gw, d);
    return ec_st_writer_begin_data(p->sw, d);
}

static enum ec_status write_bytes(struct ec_pout *p, const void *b, size_t n, struct ec_diag *d)
{
    return p->gguf ? ec_gguf_writer_write(p->gw, b, n, d) : ec_st_writer_write(p->sw, b, n, d);
}

/* q/k rows between HF's rotate_half layout and llama.cpp's interleaved one,
 * heads of R rows: interleaved row h R + 2i + j is rotate_half row
 * h R + j R/2 + i. to_interleaved: HF -> GGUF (llama.cpp's converter
 * permutation), else GGUF -> HF. */
static void reorder_rows(const float *src, float *dst, uint64_t n_rows, uint64_t row_elems, uint32_t heads,
                         bool to_interleaved)
{
    uint64_t R = n_rows / heads, half = R / 2;
    for (uint64_t r = 0; r < n_rows; r++) {
        uint64_t h = r / R, k = r % R, i = k / 2, j = k % 2;
        uint64_t hf = h * R + j * half + i;
        const float *from = src + (to_interleaved ? hf : r) * row_elems;
        float *to = dst + (to_interleaved ? r : hf) * row_elems;
        memcpy(to, from, row_elems * sizeof(float));
    }
}

enum ec_status ec_pout_write_f32(struct ec_pout *p, float *f32, struct ec_diag *d)
{
    if (p->next >= p->n)
        return ec_fail(d, EC_ERR_ARG, "prune: more tensors written than declared");
    struct ec_pout_entry *e = &p->e[p->next++];
    if (e->skip)
        return EC_OK;
    uint64_t n = e->ne[0] * e->ne[1];
    size_t need = (size_t)n * sizeof(float);
    if (need > p->buf_bytes) {
        void *nb = realloc(p->buf, need);
        if (!nb)
            return ec_fail(d, EC_ERR_NOMEM, "prune: cannot allocate %zu bytes", need);
        p->buf = nb;
        p->buf_bytes = need;
    }
    const float *src = f32;
    bool is_q = strstr(e->name, ".attn_q.") != NULL, is_k = strstr(e->name, ".attn_k.") != NULL;
    const bool to_hf = !p->gguf && p->hp.family != EC_ARCH_QWEN2, to_llama = p->gguf && p->rope_interleave;
    if ((is_q || is_k) && (to_hf || to_llama)) {
        uint32_t heads = is_q ? p->hp.n_head : p->hp.n_head_kv;
        uint64_t rows = e->n_dims >= 2 ? e->ne[1] : e->ne[0];
        uint64_t row_elems = e->n_dims >= 2 ? e->ne[0] : 1;
        reorder_rows(f32, p->buf, rows, row_elems, heads, to_llama);
        memcpy(f32, p->buf, need);
    }
    switch (e->type) {
    case EC_F32:
        return write_bytes(p, src, need, d);
    case EC_F16:
        ec_fp32_to_fp16_row(src, p->buf, (size_t)n);
        return write_bytes(p, p->buf, (size_t)n * 2, d);
    case EC_BF16:
        ec_fp32_to_bf16_row(src, p->buf, (size_t)n);
        return write_bytes(p, p->buf, (size_t)n * 2, d);
    default:
        return ec_fail(d, EC_ERR_UNSUPPORTED, "prune: cannot write tensor '%s' as %s", e->name,
                       ec_dtype_name(e->type));
    }
}

static enum ec_status set_num(cJSON *cfg, const char *key, double v, struct ec_diag *d)
{
    cJSON *old = cJSON_GetObjectItemCaseSensitive(cfg, key);
    cJSON *nv = cJSON_CreateNumber(v);
    if (!nv)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    if (old)
        cJSON_ReplaceItemInObjectCaseSensitive(cfg, key, nv);
    else
        cJSON_AddItemToObject(cfg, key, nv);
    return EC_OK;
}

static enum ec_status write_small_file(const char *dir, const char *name, const void *buf,
                                       size_t n, struct ec_diag *d)
{
    char *path = ec_path_join(dir, name);
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    struct ec_outfile of;
    enum ec_status s = ec_outfile_open(&of, path, NULL, d);
    if (s == EC_OK) {
        s = ec_outfile_write(&of, buf, n, d);
        if (s == EC_OK)
            s = ec_outfile_commit(&of, d);
        else
            ec_outfile_abort(&of);
    }
    free(path);
    return s;
}

static enum ec_status write_config(struct ec_pout *p, struct ec_diag *d)
{
    char *src_path = ec_path_join(p->m->path, "config.json");
    char *text = NULL;
    size_t len = 0;
    cJSON *cfg = NULL;
    char *out = NULL;
    enum ec_status s;
    if (!src_path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    if ((s = ec_read_file(src_path, 16u << 20, &text, &len, d)) != EC_OK)
        goto out;
    cfg = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(cfg)) {
        s = ec_fail(d, EC_ERR_FORMAT, "%s: not a JSON object", src_path);
        goto out;
    }
    const struct ec_hparams *hp = &p->hp;
    if ((s = set_num(cfg, "num_hidden_layers", hp->n_layer, d)) ||
        (s = set_num(cfg, "num_attention_heads", hp->n_head, d)) ||
        (s = set_num(cfg, "num_key_value_heads", hp->n_head_kv, d)) ||
        (s = set_num(cfg, "intermediate_size", hp->n_ff, d)) ||
        (s = set_num(cfg, "head_dim", hp->head_dim, d)))
        goto out;
    out = cJSON_Print(cfg);
    if (!out) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t ol = strlen(out);
    char *nl = realloc(out, ol + 2);
    if (!nl) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out;
    }
    out = nl;
    out[ol] = '\n';
    out[ol + 1] = '\0';
    s = write_small_file(p->dir, "config.json", out, ol + 1, d);
out:
    free(out);
    cJSON_Delete(cfg);
    free(text);
    free(src_path);
    return s;
}

static enum ec_status copy_if_present(struct ec_pout *p, const char *name, struct ec_diag *d)
{
    char *src = ec_path_join(p->m->path, name);
    if (!src)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    enum ec_status s = EC_OK;
    if (ec_path_exists(src)) {
        struct ec_mapped_file mf;
        if ((s = ec_mapped_file_open(&mf, src, d)) == EC_OK) {
            s = write_small_file(p->dir, name, mf.data ? (const void *)mf.data : "",
                                 (size_t)mf.size_bytes, d);
            ec_mapped_file_close(&mf);
        }
    }
    free(src);
    return s;
}

enum ec_status ec_pout_commit(struct ec_pout *p, const struct ec_prune_opts *o, struct ec_diag *d)
{
    (void)o;
    if (p->next != p->n)
        return ec_fail(d, EC_ERR_ARG, "prune: %zu of %zu tensors written", p->next, p->n);
    if (p->gguf)
        return ec_gguf_writer_commit(p->gw, d);
    enum ec_status s = ec_st_writer_commit(p->sw, d);
    if (s != EC_OK)
        return s;
    if ((s = write_config(p, d)) != EC_OK)
        return s;
    static const char *const files[] = {"tokenizer.json",          "tokenizer.model",
                                        "tokenizer_config.json",   "generation_config.json",
                                        "special_tokens_map.json", "added_tokens.json",
                                        "vocab.json",              "merges.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if ((s = copy_if_present(p, files[i], d)) != EC_OK)
            return s;
    return EC_OK;
}

void ec_pout_release(struct ec_pout *p)
{
    ec_gguf_writer_free(p->gw);
    ec_st_writer_free(p->sw);
    free(p->dir);
    free(p->e);
    free(p->buf);
    memset(p, 0, sizeof *p);
}
