/* edgec inspect: what is inside a checkpoint folder, a .safetensors or a .gguf. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/distill.h"
#include "edgec/gguf.h"
#include "edgec/model.h"
#include "edgec/safetensors.h"

static const char usage[] = "edgec inspect PATH [--json] [-q|-v]";
static const char description[] =
    "Show what a checkpoint folder (config.json + *.safetensors), a .safetensors file or a\n"
    ".gguf file holds: architecture and hyper-parameters, parameter count, metadata (long\n"
    "arrays summarised; -v prints more elements), and a per-tensor table (name, type, shape,\n"
    "bytes, bits per weight) with totals. Folders list tensors under their GGUF names, in the\n"
    "order edgec convert writes them.";

#define ARRAY_PREVIEW 8

/* One row of the tensor table, whatever the source. */
struct row {
    const char *name;
    const char *src_name; /* NULL when the same */
    enum ec_dtype type;
    uint32_t n_dims;
    uint64_t ne[EC_GGUF_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t file_offset; /* absolute offset of the data in its file */
};

struct inspect {
    const char *path;
    const char *format; /* "hf-folder", "safetensors", "gguf" */
    bool json, verbose;
    const struct ec_hparams *hp;
    const struct ec_vocab *vocab;
    const struct ec_gguf *gguf;       /* kv source, or NULL */
    const struct ec_safetensors *st;  /* metadata source, or NULL */
    size_t n_rows;
    struct row *rows;
};

static uint64_t row_elems(const struct row *r)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < r->n_dims; i++)
        n *= r->ne[i];
    return n;
}

static void fmt_shape(const struct row *r, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (uint32_t i = 0; i < r->n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRIu64, i ? ", " : "", r->ne[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static void fmt_count(uint64_t n, char *buf, size_t cap)
{
    double v = (double)n;
    if (v >= 1e9)
        snprintf(buf, cap, "%.2fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1fK", v / 1e3);
    else
        snprintf(buf, cap, "%" PRIu64, n);
}

static void json_strn(FILE *f, const char *s, uint64_t n)
{
    char *tmp = strndup(s, (size_t)n);
    ec_json_write_str(f, tmp ? tmp : "");
    free(tmp);
}

static size_t elem_size(enum ec_gguf_type t)
{
    switch (t) {
    case EC_GGUF_U8: case EC_GGUF_I8: case EC_GGUF_BOOL: return 1;
    case EC_GGUF_U16: case EC_GGUF_I16: return 2;
    case EC_GGUF_U32: case EC_GGUF_I32: case EC_GGUF_F32: return 4;
    case EC_GGUF_U64: case EC_GGUF_I64: case EC_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Print element i of a numeric array payload. */
static void print_elem(FILE *f, enum ec_gguf_type t, const uint8_t *p, bool json)
{
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; uint64_t u64; int64_t i64; double f64;
    } v;
    memcpy(&v, p, elem_size(t));
    switch (t) {
    case EC_GGUF_U8: fprintf(f, "%u", v.u8); break;
    case EC_GGUF_I8: fprintf(f, "%d", v.i8); break;
    case EC_GGUF_U16: fprintf(f, "%u", v.u16); break;
    case EC_GGUF_I16: fprintf(f, "%d", v.i16); break;
    case EC_GGUF_U32: fprintf(f, "%" PRIu32, v.u32); break;
    case EC_GGUF_I32: fprintf(f, "%" PRId32, v.i32); break;
    case EC_GGUF_F32: fprintf(f, "%.9g", (double)v.f32); break;
    case EC_GGUF_BOOL: fprintf(f, "%s", v.u8 ? "true" : "false"); break;
    case EC_GGUF_U64: fprintf(f, "%" PRIu64, v.u64); break;
    case EC_GGUF_I64: fprintf(f, "%" PRId64, v.i64); break;
    case EC_GGUF_F64: fprintf(f, "%.17g", v.f64); break;
    default: fputs(json ? "null" : "?", f);
    }
}

static void print_kv_value(FILE *f, const struct ec_gguf_kv *kv, bool json, size_t preview)
{
    switch (kv->type) {
    case EC_GGUF_STRING:
        if (json) {
            json_strn(f, kv->v.str.data, kv->v.str.len);
        } else {
            uint64_t n = kv->v.str.len;
            bool cut = n > 120;
            fprintf(f, "\"");
            for (uint64_t i = 0; i < (cut ? 120 : n); i++) {
                char c = kv->v.str.data[i];
                if (c == '\n')
                    fputs("\\n", f);
                else
                    fputc(c, f);
            }
            fprintf(f, cut ? "\"... (%" PRIu64 " bytes)" : "\"", n);
        }
        break;
    case EC_GGUF_BOOL: fprintf(f, "%s", kv->v.u64 ? "true" : "false"); break;
    case EC_GGUF_U8: case EC_GGUF_U16: case EC_GGUF_U32: case EC_GGUF_U64:
        fprintf(f, "%" PRIu64, kv->v.u64);
        break;
    case EC_GGUF_I8: case EC_GGUF_I16: case EC_GGUF_I32: case EC_GGUF_I64:
        fprintf(f, "%" PRId64, kv->v.i64);
        break;
    case EC_GGUF_F32: fprintf(f, "%.9g", kv->v.f64); break;
    case EC_GGUF_F64: fprintf(f, "%.17g", kv->v.f64); break;
    case EC_GGUF_ARRAY: {
        uint64_t n = kv->arr_n < preview ? kv->arr_n : preview;
        fputc('[', f);
        for (uint64_t i = 0; i < n; i++) {
            if (i)
                fputs(", ", f);
            if (kv->arr_type == EC_GGUF_STRING) {
                if (kv->arr_strs)
                    json_strn(f, kv->arr_strs[i].data, kv->arr_strs[i].len);
                else
                    fputs("null", f);
            } else if (elem_size(kv->arr_type) && kv->arr_data) {
                print_elem(f, kv->arr_type, kv->arr_data + i * elem_size(kv->arr_type), json);
            }
        }
        if (!json && n < kv->arr_n)
            fprintf(f, ", ... %" PRIu64 " more", kv->arr_n - n);
        fputc(']', f);
        break;
    }
    default: fputs(json ? "null" : "?", f);
    }
}

static const char *rope_scaling_name(enum ec_rope_scaling t)
{
    switch (t) {
    case EC_ROPE_SCALING_NONE: return "none";
    case EC_ROPE_SCALING_LINEAR: return "linear";
    case EC_ROPE_SCALING_YARN: return "yarn";
    case EC_ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "?";
}

static void print_hparams_text(const struct ec_hparams *hp)
{
    printf("architecture: %s (%s)\n", hp->gguf_arch ? hp->gguf_arch : "?",
           hp->hf_arch ? hp->hf_arch : "?");
    printf("  n_vocab %u, n_embd %u, n_ff %u, n_layer %u, n_head %u, n_head_kv %u, head_dim %u\n",
           hp->n_vocab, hp->n_embd, hp->n_ff, hp->n_layer, hp->n_head, hp->n_head_kv,
           hp->head_dim);
    printf("  n_ctx_train %u, rope_theta %g, norm_eps %g, tied_embeddings %s, qkv_bias %s, mlp_bias %s\n",
           hp->n_ctx_train, (double)hp->rope_theta, (double)hp->norm_eps,
           hp->tied_embeddings ? "yes" : "no", hp->attn_qkv_bias ? "yes" : "no", hp->mlp_bias ? "yes" : "no");
    if (hp->rope_scaling != EC_ROPE_SCALING_NONE)
        printf("  rope scaling %s, factor %g, original context %u\n", rope_scaling_name(hp->rope_scaling),
               (double)hp->rope_factor, hp->rope_orig_ctx);
}

static void print_hparams_json(const struct ec_hparams *hp)
{
    printf("\"architecture\": ");
    ec_json_write_str(stdout, hp->gguf_arch ? hp->gguf_arch : "");
    printf(", \"hf_architecture\": ");
    ec_json_write_str(stdout, hp->hf_arch ? hp->hf_arch : "");
    printf(", \"hparams\": {\"n_vocab\": %u, \"n_embd\": %u, \"n_ff\": %u, \"n_layer\": %u, "
           "\"n_head\": %u, \"n_head_kv\": %u, \"head_dim\": %u, \"n_ctx_train\": %u, "
           "\"rope_theta\": %.9g, \"norm_eps\": %.9g, \"tied_embeddings\": %s, "
           "\"attn_qkv_bias\": %s, \"attn_out_bias\": %s, \"mlp_bias\": %s, \"rope_scaling\": \"%s\", "
           "\"rope_factor\": %.9g, \"rope_orig_ctx\": %u}, ",
           hp->n_vocab, hp->n_embd, hp->n_ff, hp->n_layer, hp->n_head, hp->n_head_kv,
           hp->head_dim, hp->n_ctx_train, (double)hp->rope_theta, (double)hp->norm_eps,
           hp->tied_embeddings ? "true" : "false", hp->attn_qkv_bias ? "true" : "false",
           hp->attn_out_bias ? "true" : "false", hp->mlp_bias ? "true" : "false", rope_scaling_name(hp->rope_scaling),
           (double)hp->rope_factor, hp->rope_orig_ctx);
}

static void report(const struct inspect *in)
{
    uint64_t tot_elems = 0, tot_bytes = 0;
    uint64_t by_type_n[EC_DTYPE_EXT_END - EC_DTYPE_EXT_BASE + EC_GGML_TYPE_COUNT] = {0};
    uint64_t by_type_b[EC_DTYPE_EXT_END - EC_DTYPE_EXT_BASE + EC_GGML_TYPE_COUNT] = {0};
    const size_t n_slots = sizeof by_type_n / sizeof by_type_n[0];
    for (size_t i = 0; i < in->n_rows; i++) {
        tot_elems += row_elems(&in->rows[i]);
        tot_bytes += in->rows[i].n_bytes;
        size_t slot = (size_t)in->rows[i].type < (size_t)EC_GGML_TYPE_COUNT
                          ? (size_t)in->rows[i].type
                          : (size_t)EC_GGML_TYPE_COUNT + (size_t)(in->rows[i].type - EC_DTYPE_EXT_BASE);
        if (slot < n_slots) {
            by_type_n[slot]++;
            by_type_b[slot] += in->rows[i].n_bytes;
        }
    }
    size_t preview = in->verbose ? 64 : ARRAY_PREVIEW;
    char shape[128], cnt[32];

    if (in->json) {
        printf("{\"path\": ");
        ec_json_write_str(stdout, in->path);
        printf(", \"format\": \"%s\", ", in->format);
        if (in->gguf)
            printf("\"gguf_version\": %u, \"alignment\": %u, \"tensor_data_offset\": %" PRIu64 ", ",
                   in->gguf->version, in->gguf->alignment, in->gguf->data_offset);
        if (in->hp)
            print_hparams_json(in->hp);
        if (in->vocab && in->vocab->n_tokens)
            printf("\"vocab\": {\"type\": \"%s\", \"n_tokens\": %u, \"bos_id\": %d, \"eos_id\": %d}, ",
                   in->vocab->type == EC_VOCAB_SPM ? "llama" : "gpt2", in->vocab->n_tokens,
                   in->vocab->bos_id, in->vocab->eos_id);
        printf("\"n_params\": %" PRIu64 ", \"metadata\": [", tot_elems);
        if (in->gguf) {
            for (uint64_t i = 0; i < in->gguf->n_kv; i++) {
                const struct ec_gguf_kv *kv = &in->gguf->kv[i];
                printf("%s{\"key\": ", i ? ", " : "");
                ec_json_write_str(stdout, kv->key);
                printf(", \"type\": \"%s\"", ec_gguf_type_name(kv->type));
                if (kv->type == EC_GGUF_ARRAY)
                    printf(", \"element_type\": \"%s\", \"length\": %" PRIu64,
                           ec_gguf_type_name(kv->arr_type), kv->arr_n);
                printf(", \"value\": ");
                print_kv_value(stdout, kv, true, preview);
                printf("}");
            }
        } else if (in->st) {
            for (size_t i = 0; i < in->st->n_meta; i++) {
                printf("%s{\"key\": ", i ? ", " : "");
                ec_json_write_str(stdout, in->st->meta_keys[i]);
                printf(", \"type\": \"STRING\", \"value\": ");
                ec_json_write_str(stdout, in->st->meta_values[i]);
                printf("}");
            }
        }
        printf("], \"tensors\": [");
        for (size_t i = 0; i < in->n_rows; i++) {
            const struct row *r = &in->rows[i];
            uint64_t ne = row_elems(r);
            printf("%s{\"name\": ", i ? ", " : "");
            ec_json_write_str(stdout, r->name);
            if (r->src_name) {
                printf(", \"source_name\": ");
                ec_json_write_str(stdout, r->src_name);
            }
            printf(", \"type\": \"%s\", \"shape\": [", ec_dtype_name(r->type));
            for (uint32_t k = 0; k < r->n_dims; k++)
                printf("%s%" PRIu64, k ? ", " : "", r->ne[k]);
            printf("], \"n_elems\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"offset\": %" PRIu64
                   ", \"bits_per_weight\": %.4f}",
                   ne, r->n_bytes, r->file_offset, ne ? (double)r->n_bytes * 8.0 / (double)ne : 0.0);
        }
        printf("], \"totals\": {\"tensors\": %zu, \"n_elems\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"bits_per_weight\": %.4f, \"by_type\": {",
               in->n_rows, tot_elems, tot_bytes,
               tot_elems ? (double)tot_bytes * 8.0 / (double)tot_elems : 0.0);
        bool first = true;
        for (size_t s = 0; s < n_slots; s++) {
            if (!by_type_n[s])
                continue;
            enum ec_dtype t = s < (size_t)EC_GGML_TYPE_COUNT
                                  ? (enum ec_dtype)s
                                  : (enum ec_dtype)(EC_DTYPE_EXT_BASE + (s - EC_GGML_TYPE_COUNT));
            printf("%s\"%s\": {\"tensors\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", first ? "" : ", ",
                   ec_dtype_name(t), by_type_n[s], by_type_b[s]);
            first = false;
        }
        printf("}}}\n");
        return;
    }

    printf("path: %s\nformat: %s", in->path, in->format);
    if (in->gguf)
        printf(" (GGUF v%u, alignment %u, tensor data at byte %" PRIu64 ")", in->gguf->version,
               in->gguf->alignment, in->gguf->data_offset);
    printf("\n");
    if (in->hp)
        print_hparams_text(in->hp);
    if (in->vocab && in->vocab->n_tokens)
        printf("vocab: %s, %u tokens, bos %d, eos %d, unk %d\n",
               in->vocab->type == EC_VOCAB_SPM ? "llama (SentencePiece)" : "gpt2 (BPE)",
               in->vocab->n_tokens, in->vocab->bos_id, in->vocab->eos_id, in->vocab->unk_id);
    fmt_count(tot_elems, cnt, sizeof cnt);
    printf("parameters: %" PRIu64 " (%s)\n", tot_elems, cnt);
    if (in->gguf) {
        printf("metadata (%" PRIu64 " keys):\n", in->gguf->n_kv);
        for (uint64_t i = 0; i < in->gguf->n_kv; i++) {
            const struct ec_gguf_kv *kv = &in->gguf->kv[i];
            char ty[48];
            if (kv->type == EC_GGUF_ARRAY)
                snprintf(ty, sizeof ty, "%s[%" PRIu64 "]", ec_gguf_type_name(kv->arr_type),
                         kv->arr_n);
            else
                snprintf(ty, sizeof ty, "%s", ec_gguf_type_name(kv->type));
            printf("  %-42s %-14s ", kv->key, ty);
            print_kv_value(stdout, kv, false, preview);
            printf("\n");
        }
    } else if (in->st && in->st->n_meta) {
        printf("metadata (%zu keys):\n", in->st->n_meta);
        for (size_t i = 0; i < in->st->n_meta; i++)
            printf("  %-42s %s\n", in->st->meta_keys[i], in->st->meta_values[i]);
    }
    size_t w = 4;
    for (size_t i = 0; i < in->n_rows; i++)
        if (strlen(in->rows[i].name) > w)
            w = strlen(in->rows[i].name);
    printf("tensors (%zu):\n  %-*s %-6s %-16s %12s %7s\n", in->n_rows, (int)w, "name", "type",
           "shape", "bytes", "bpw");
    for (size_t i = 0; i < in->n_rows; i++) {
        const struct row *r = &in->rows[i];
        uint64_t ne = row_elems(r);
        fmt_shape(r, shape, sizeof shape);
        printf("  %-*s %-6s %-16s %12" PRIu64 " %7.3f", (int)w, r->name, ec_dtype_name(r->type),
               shape, r->n_bytes, ne ? (double)r->n_bytes * 8.0 / (double)ne : 0.0);
        if (r->src_name && in->verbose)
            printf("  <- %s", r->src_name);
        printf("\n");
    }
    printf("totals: %zu tensors, %" PRIu64 " elements, %" PRIu64 " bytes (%.2f MB), %.3f bits/weight\n",
           in->n_rows, tot_elems, tot_bytes, (double)tot_bytes / 1e6,
           tot_elems ? (double)tot_bytes * 8.0 / (double)tot_elems : 0.0);
    printf("by type:");
    for (size_t s = 0; s < n_slots; s++) {
        if (!by_type_n[s])
            continue;
        enum ec_dtype t = s < (size_t)EC_GGML_TYPE_COUNT
                              ? (enum ec_dtype)s
                              : (enum ec_dtype)(EC_DTYPE_EXT_BASE + (s - EC_GGML_TYPE_COUNT));
        printf(" %s x%" PRIu64 " (%" PRIu64 " bytes)", ec_dtype_name(t), by_type_n[s], by_type_b[s]);
    }
    printf("\n");
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_gguf_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int ec_cmd_inspect(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const struct ec_opt opts[] = {
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print everything as one JSON object"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        return code;
    if (n_pos != 1) {
        free(pos);
        return ec_cli_usage_error("inspect", "expected one PATH, got %zu", n_pos);
    }
    const char *path = pos[0];
    struct ec_diag d;
    ec_diag_clear(&d);
    struct inspect in = {.path = path, .json = c.json, .verbose = c.verbose};
    struct ec_model m;
    struct ec_gguf g;
    struct ec_safetensors st;
    struct ec_hparams hp;
    bool have_model = false, have_gguf = false, have_st = false;
    enum ec_status s = EC_OK;
    memset(&g, 0, sizeof g);
    memset(&st, 0, sizeof st);

    if (ec_path_is_dir(path) && ec_distill_is_export(path)) {
        free(pos);
        return ec_distill_inspect(path, c.json, c.verbose);
    } else if (ec_path_is_dir(path)) {
        s = ec_model_open(&m, path, &d);
        if (s != EC_OK)
            goto out;
        have_model = true;
        in.format = "hf-folder";
        in.hp = &m.hp;
        in.vocab = &m.vocab;
        in.st = &m.st;
        in.n_rows = m.n_tensors;
        in.rows = calloc(m.n_tensors ? m.n_tensors : 1, sizeof *in.rows);
        if (!in.rows) {
            s = ec_fail(&d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m.n_tensors; i++) {
            const struct ec_model_tensor *t = &m.tensors[i];
            struct row *r = &in.rows[i];
            r->name = t->name;
            r->src_name = t->src_name;
            r->type = t->dtype;
            r->n_dims = t->n_dims;
            memcpy(r->ne, t->ne, sizeof r->ne);
            r->n_bytes = t->n_bytes;
            r->file_offset = t->src_offset;
        }
    } else if (has_suffix(path, ".gguf") || is_gguf_file(path)) {
        s = ec_gguf_open(&g, path, &d);
        if (s != EC_OK)
            goto out;
        have_gguf = true;
        in.format = "gguf";
        in.gguf = &g;
        struct ec_diag d2;
        ec_diag_clear(&d2);
        if (ec_hparams_from_gguf(&hp, &g, &d2) == EC_OK)
            in.hp = &hp;
        else if (!c.json)
            ec_log_verbose("%s", d2.msg);
        in.n_rows = (size_t)g.n_tensors;
        in.rows = calloc(in.n_rows ? in.n_rows : 1, sizeof *in.rows);
        if (!in.rows) {
            s = ec_fail(&d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < in.n_rows; i++) {
            const struct ec_gguf_tensor_info *t = &g.tensors[i];
            struct row *r = &in.rows[i];
            r->name = t->name;
            r->type = t->type;
            r->n_dims = t->n_dims;
            memcpy(r->ne, t->ne, sizeof r->ne);
            r->n_bytes = t->n_bytes;
            r->file_offset = g.data_offset + t->offset;
        }
    } else {
        s = ec_safetensors_open(&st, path, &d);
        if (s != EC_OK)
            goto out;
        have_st = true;
        in.format = "safetensors";
        in.st = &st;
        in.rows = calloc(st.n_tensors ? st.n_tensors : 1, sizeof *in.rows);
        if (!in.rows) {
            s = ec_fail(&d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < st.n_tensors; i++) {
            const struct ec_st_tensor *t = &st.tensors[i];
            if (t->alias_of)
                continue; /* an alias shares its target's bytes */
            struct row *r = &in.rows[in.n_rows++];
            r->name = t->name;
            r->type = t->dtype;
            r->n_dims = (uint32_t)(t->ndim > 0 ? t->ndim : 1);
            for (int k = 0; k < EC_GGUF_MAX_DIMS; k++)
                r->ne[k] = k < t->ndim ? t->ne[k] : 1;
            r->n_bytes = t->n_bytes;
            r->file_offset = t->file_offset;
        }
    }
    report(&in);

out:
    free(in.rows);
    if (have_model)
        ec_model_close(&m);
    if (have_gguf)
        ec_gguf_close(&g);
    if (have_st)
        ec_safetensors_close(&st);
    free(pos);
    if (s != EC_OK)
        return ec_cli_fail(&d);
    return ec_cli_finish(EC_EXIT_OK);
}
