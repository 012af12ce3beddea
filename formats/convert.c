/* formats/convert.c: checkpoint -> GGUF with F32/F16/BF16 weights (see edgec/convert.h).
 *
 * Per-tensor types follow convert_hf_to_gguf.py's prepare_tensors: rank <= 1
 * or a name ending in "_norm.weight" -> F32; a name not ending in ".weight"
 * (biases) -> F32; everything else -> the output type. Values pass through
 * F32 first (the converter casts BF16 sources to float32), then round to
 * nearest even into F16/BF16, which is what numpy astype(float16) and gguf-py's
 * bf16 quantizer do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edgec/convert.h"
#include "edgec/fp16.h"
#include "edgec/gguf.h"
#include "edgec/log.h"
#include "edgec/model.h"

bool ec_convert_file_type(enum ec_dtype outtype, uint32_t *file_type)
{
    switch (outtype) {
    case EC_F32: *file_type = 0; return true;
    case EC_F16: *file_type = 1; return true;
    case EC_BF16: *file_type = 32; return true;
    default: return false;
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

enum ec_dtype ec_convert_tensor_type(const char *gguf_name, uint32_t n_dims, enum ec_dtype outtype)
{
    if (n_dims <= 1 || ends_with(gguf_name, "_norm.weight") || !ends_with(gguf_name, ".weight"))
        return EC_F32;
    return outtype;
}

#define CHUNK_ELEMS (4u << 20) /* 16 MiB of F32 per chunk */

enum ec_status ec_convert_run(const struct ec_convert_opts *opts, struct ec_convert_result *res,
                              struct ec_diag *d)
{
    enum ec_status s;
    struct ec_model m;
    struct ec_gguf_writer *w = NULL;
    float *f32 = NULL;
    uint16_t *half = NULL;
    const char **inputs = NULL;
    double t0 = ec_now_seconds();
    uint32_t file_type;

    memset(res, 0, sizeof *res);
    if (!ec_convert_file_type(opts->outtype, &file_type))
        return ec_fail(d, EC_ERR_ARG, "output type %s is not one of f32, f16, bf16",
                       ec_dtype_name(opts->outtype));
    s = ec_model_open(&m, opts->input, d);
    if (s != EC_OK)
        return s;

    /* refuse to overwrite any input file */
    size_t n_in = m.source == EC_SRC_HF ? m.st.n_files : 1;
    inputs = calloc(n_in + 1, sizeof *inputs);
    if (!inputs) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_close;
    }
    for (size_t i = 0; i < n_in; i++)
        inputs[i] = m.source == EC_SRC_HF ? m.st.files[i].path : m.gguf.file.path;

    /* Tensors are streamed in chunks of whole rows of at most CHUNK_ELEMS
     * elements (or one row when a row is longer), so memory does not follow
     * the largest tensor. */
    uint64_t max_elems = 0;
    for (size_t i = 0; i < m.n_tensors; i++) {
        const struct ec_model_tensor *t = &m.tensors[i];
        uint64_t nr = ec_model_tensor_n_rows(t);
        uint64_t row = nr ? ec_model_tensor_n_elems(t) / nr : 0;
        uint64_t chunk = row >= CHUNK_ELEMS ? row : (CHUNK_ELEMS / (row ? row : 1)) * row;
        if (chunk > ec_model_tensor_n_elems(t))
            chunk = ec_model_tensor_n_elems(t);
        if (chunk > max_elems)
            max_elems = chunk;
    }
    if (max_elems > SIZE_MAX / sizeof(float)) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: a row of %llu elements does not fit in memory",
                    opts->input, (unsigned long long)max_elems);
        goto out_close;
    }
    f32 = malloc((size_t)(max_elems ? max_elems : 1) * sizeof *f32);
    half = malloc((size_t)(max_elems ? max_elems : 1) * sizeof *half);
    if (!f32 || !half) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %llu bytes for one tensor", opts->input,
                    (unsigned long long)(max_elems * 6));
        goto out_free;
    }

    s = ec_gguf_writer_open(&w, opts->output, (const char *const *)inputs, d);
    if (s != EC_OK)
        goto out_free;
    s = ec_model_write_gguf_kvs(&m, w, file_type, d);
    if (s != EC_OK)
        goto out_writer;
    for (size_t i = 0; i < m.n_tensors; i++) {
        const struct ec_model_tensor *t = &m.tensors[i];
        enum ec_dtype ty = ec_convert_tensor_type(t->name, t->n_dims, opts->outtype);
        s = ec_gguf_writer_add_tensor(w, t->name, ty, t->n_dims, t->ne, d);
        if (s != EC_OK)
            goto out_writer;
    }
    s = ec_gguf_writer_begin_data(w, d);
    if (s != EC_OK)
        goto out_writer;

    for (size_t i = 0; i < m.n_tensors; i++) {
        const struct ec_model_tensor *t = &m.tensors[i];
        enum ec_dtype ty = ec_convert_tensor_type(t->name, t->n_dims, opts->outtype);
        uint64_t n = ec_model_tensor_n_elems(t);
        uint64_t n_rows = ec_model_tensor_n_rows(t);
        uint64_t row_elems = n_rows ? n / n_rows : 0;
        uint64_t rows_per_chunk = row_elems ? max_elems / row_elems : n_rows;
        if (rows_per_chunk == 0)
            rows_per_chunk = 1;
        for (uint64_t r0 = 0; r0 < n_rows; r0 += rows_per_chunk) {
            uint64_t nr = n_rows - r0 < rows_per_chunk ? n_rows - r0 : rows_per_chunk;
            size_t ne = (size_t)(nr * row_elems);
            s = ec_model_tensor_read_rows_f32(&m, t, r0, nr, f32, d);
            if (s != EC_OK)
                goto out_writer;
            const void *out = f32;
            size_t out_bytes = ne * sizeof(float);
            if (ty == EC_F16) {
                ec_fp32_to_fp16_row(f32, half, ne);
                out = half;
                out_bytes = ne * 2;
            } else if (ty == EC_BF16) {
                ec_fp32_to_bf16_row(f32, half, ne);
                out = half;
                out_bytes = ne * 2;
            }
            s = ec_gguf_writer_write(w, out, out_bytes, d);
            if (s != EC_OK)
                goto out_writer;
            res->data_bytes += out_bytes;
            if (!t->permute_heads && n_rows) { /* permuted rows are dropped with the tensor */
                uint64_t src_rb = t->n_bytes / n_rows;
                ec_mapped_drop(t->data + r0 * src_rb, nr * src_rb);
            }
        }
        ec_mapped_drop(t->data, t->n_bytes);
        res->n_tensors++;
        res->n_params += n;
        if (opts->progress)
            opts->progress(opts->progress_ctx, res->n_tensors, m.n_tensors, res->data_bytes);
    }
    s = ec_gguf_writer_commit(w, d);
    if (s != EC_OK)
        goto out_writer;
    struct stat sb;
    if (stat(opts->output, &sb) == 0)
        res->file_bytes = (uint64_t)sb.st_size;
    res->file_type = file_type;
    snprintf(res->model_name, sizeof res->model_name, "%s", m.name ? m.name : "");
    res->seconds = ec_now_seconds() - t0;

out_writer:
    ec_gguf_writer_free(w);
out_free:
    free(f32);
    free(half);
out_close:
    free(inputs);
    ec_model_close(&m);
    return s;
}
