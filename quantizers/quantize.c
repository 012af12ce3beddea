/* quantizers/quantize.c: the `edgec quantize` driver (see edgec/quantize.h).
 *
 * Steps: open the model (HF folder or GGUF), load the importance matrix,
 * build the type plan (mixes.c), declare the output GGUF (metadata in
 * llama-quantize's order, then edgec's recipe keys), then stream the tensors
 * one at a time in the plan's order: read as F32 (dequantizing a GGUF
 * source), quantize with that tensor's importance weights, write, hash.
 * Peak memory is one tensor as F32 plus its quantized bytes.
 *
 * An HF checkpoint is treated as the F32 GGUF convert would make of it
 * (`edgec convert --outtype f32`, which is what llama-quantize is given in the
 * golden runs): tensors the plan does not quantize are written as F32.
 *
 * Metadata: the input's keys (for HF, ec_model_write_gguf_kvs), then, as
 * llama-quantize does, general.quantization_version and general.file_type
 * moved to the end, then quantize.imatrix.{file,dataset,entries_count,
 * chunks_count} when an importance matrix is used, then edgec's own recipe
 * keys under "edgec.quantize." (llama.cpp ignores unknown keys). Keys of an
 * earlier quantization recipe in a GGUF input (quantize.imatrix.*,
 * edgec.quantize.*) and split keys are dropped.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/fp16.h"
#include "edgec/gguf.h"
#include "edgec/imatrix.h"
#include "edgec/io.h"
#include "edgec/log.h"
#include "edgec/model.h"
#include "edgec/quantize.h"
#include "edgec/sha256.h"
#include "quantizers/quantize_kernels.h"

#ifndef EDGEC_VERSION
#define EDGEC_VERSION "?"
#endif

#define GGML_QNT_VERSION 2u

void ec_quantize_result_release(struct ec_quantize_result *r)
{
    if (!r)
        return;
    ec_quant_plan_release(&r->plan);
    free(r->tensors);
    memset(r, 0, sizeof *r);
}

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Metadata: input keys, then llama-quantize's, then edgec's recipe. */
static enum ec_status write_kvs(const struct ec_model *m, struct ec_gguf_writer *w,
                                const struct ec_quantize_opts *o, const struct ec_imatrix *im,
                                const struct ec_quantize_result *r, struct ec_diag *d)
{
    enum ec_status s;
    const uint32_t ft = (uint32_t)o->ftype;
    if (m->source == EC_SRC_HF) {
        s = ec_model_write_gguf_kvs(m, w, ft, d);
        if (s != EC_OK)
            return s;
    } else {
        for (uint64_t i = 0; i < m->gguf.n_kv; i++) {
            const struct ec_gguf_kv *kv = &m->gguf.kv[i];
            if (starts_with(kv->key, "quantize.imatrix.") || starts_with(kv->key, "edgec.quantize.") ||
                starts_with(kv->key, "split."))
                continue;
            s = ec_gguf_writer_add_kv(w, kv, d);
            if (s != EC_OK)
                return s;
        }
    }
    /* llama-quantize sets these two last (gguf_set_* moves a key to the end) */
    ec_gguf_writer_remove_kv(w, "general.quantization_version");
    ec_gguf_writer_remove_kv(w, "general.file_type");
    if ((s = ec_gguf_writer_add_u32(w, "general.quantization_version", GGML_QNT_VERSION, d)) ||
        (s = ec_gguf_writer_add_u32(w, "general.file_type", ft, d)))
        return s;

    if (im && r->plan.n_imatrix_entries > 0) {
        if ((s = ec_gguf_writer_add_str(w, "quantize.imatrix.file", o->imatrix_file, d)))
            return s;
        if (im->dataset && im->dataset[0] &&
            (s = ec_gguf_writer_add_str(w, "quantize.imatrix.dataset", im->dataset, d)))
            return s;
        if ((s = ec_gguf_writer_add_i32(w, "quantize.imatrix.entries_count",
                                        (int32_t)r->plan.n_imatrix_entries, d)))
            return s;
        if (im->last_call > 0 &&
            (s = ec_gguf_writer_add_i32(w, "quantize.imatrix.chunks_count", im->last_call, d)))
            return s;
    }

    if (o->no_recipe)
        return EC_OK;
    if ((s = ec_gguf_writer_add_str(w, "edgec.quantize.version", EDGEC_VERSION, d)) ||
        (s = ec_gguf_writer_add_str(w, "edgec.quantize.type", ec_ftype_name(o->ftype), d)))
        return s;
    /* every option that changed the plan, as given on the command line */
    size_t n_ov = o->n_overrides + (o->pure ? 1 : 0) + (o->leave_output_tensor ? 1 : 0) +
                  (o->output_tensor_type != EC_DTYPE_UNSET ? 1 : 0) +
                  (o->token_embedding_type != EC_DTYPE_UNSET ? 1 : 0) + o->n_include +
                  o->n_exclude;
    if (n_ov) {
        char **strs = calloc(n_ov, sizeof *strs);
        size_t k = 0;
        if (!strs)
            return ec_fail(d, EC_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < o->n_overrides; i++) {
            const char *spec = o->override_specs ? o->override_specs[i] : NULL;
            char buf[1024];
            if (spec)
                snprintf(buf, sizeof buf, "--tensor-type %s", spec);
            else
                snprintf(buf, sizeof buf, "--tensor-type %s=%s", o->overrides[i].pattern,
                         ec_dtype_name(o->overrides[i].type));
            strs[k++] = strdup(buf);
        }
        if (o->pure)
            strs[k++] = strdup("--pure");
        if (o->leave_output_tensor)
            strs[k++] = strdup("--leave-output-tensor");
        char buf[1024];
        if (o->output_tensor_type != EC_DTYPE_UNSET) {
            snprintf(buf, sizeof buf, "--output-tensor-type %s",
                     ec_dtype_name(o->output_tensor_type));
            strs[k++] = strdup(buf);
        }
        if (o->token_embedding_type != EC_DTYPE_UNSET) {
            snprintf(buf, sizeof buf, "--token-embedding-type %s",
                     ec_dtype_name(o->token_embedding_type));
            strs[k++] = strdup(buf);
        }
        for (size_t i = 0; i < o->n_include; i++) {
            snprintf(buf, sizeof buf, "--include-weights %s", o->include_weights[i]);
            strs[k++] = strdup(buf);
        }
        for (size_t i = 0; i < o->n_exclude; i++) {
            snprintf(buf, sizeof buf, "--exclude-weights %s", o->exclude_weights[i]);
            strs[k++] = strdup(buf);
        }
        s = EC_OK;
        for (size_t i = 0; i < k; i++)
            if (!strs[i])
                s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        if (s == EC_OK)
            s = ec_gguf_writer_add_str_array(w, "edgec.quantize.overrides",
                                             (const char *const *)strs, NULL, k, d);
        for (size_t i = 0; i < k; i++)
            free(strs[i]);
        free(strs);
        if (s != EC_OK)
            return s;
    }
    if (im) {
        const char *base = strrchr(o->imatrix_file, '/');
        if ((s = ec_gguf_writer_add_str(w, "edgec.quantize.imatrix_file",
                                        base ? base + 1 : o->imatrix_file, d)) ||
            (s = ec_gguf_writer_add_str(w, "edgec.quantize.imatrix_sha256", r->imatrix_sha256, d)))
            return s;
    }
    if (r->plan.n_fallback &&
        (s = ec_gguf_writer_add_u32(w, "edgec.quantize.fallback_count",
                                    (uint32_t)r->plan.n_fallback, d)))
        return s;
    return EC_OK;
}

static enum ec_status file_sha256(const char *path, char hex[65], struct ec_diag *d)
{
    struct ec_mapped_file f;
    enum ec_status s = ec_mapped_file_open(&f, path, d);
    if (s != EC_OK)
        return s;
    ec_sha256_hex(f.data, (size_t)f.size_bytes, hex);
    ec_mapped_file_close(&f);
    return EC_OK;
}

/* Rows [row0, row0+n) of a source tensor as F32 into dst. */
static enum ec_status read_rows_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                    uint64_t row0, uint64_t n, float *dst,
                                    bool allow_requantize, struct ec_diag *d)
{
    const struct ec_dtype_info *info = ec_dtype_info(t->dtype);
    if (info && info->is_quantized) {
        if (!allow_requantize)
            return ec_fail(d, EC_ERR_UNSUPPORTED,
                           "%s: tensor '%s': requantizing from %s is disabled (use "
                           "--allow-requantize; quality suffers)",
                           t->src_file, t->name, ec_dtype_name(t->dtype));
        size_t rb = ec_dtype_row_bytes(t->dtype, t->ne[0]);
        return ec_qk_dequantize(t->dtype, t->data + row0 * rb, dst, n, t->ne[0], d);
    }
    if (t->permute_heads && t->n_dims <= 1) /* a permuted q/k bias: one row, whole */
        return ec_model_tensor_read_f32(m, t, dst, d);
    return ec_model_tensor_read_rows_f32(m, t, row0, n, dst, d);
}

/* Tensors stream through memory in chunks of whole rows of at most this many
 * elements (16 MiB as F32), or one row when a row is longer: quantization is
 * row by row, so the bytes are those of a whole-tensor pass. */
#define QUANT_CHUNK_ELEMS (4u << 20)

static uint64_t chunk_rows(uint64_t row_elems)
{
    if (row_elems == 0 || row_elems >= QUANT_CHUNK_ELEMS)
        return 1;
    return QUANT_CHUNK_ELEMS / row_elems;
}

/* The output is written by a second thread while the next chunk is being
 * quantized: on a fresh output file the kernel's copy into new page-cache
 * pages costs about as much as Q8_0 quantization itself. One job is in flight
 * at a time; the driver alternates between two chunk buffers, so the buffer a
 * job reads is not touched until the job after it has been submitted. The
 * writer also hashes the bytes (one SHA-256 per tensor) and releases the
 * input pages the chunk came from. Output bytes and their order are those of
 * the serial loop. */
struct qsink_job {
    const void *data;
    size_t n;
    const void *drop; /* input pages to release after writing */
    uint64_t drop_n;
    bool first, last; /* of a tensor: start / finish its hash */
    char *sha_hex;    /* where the finished hash goes (NULL: no hashing) */
};

struct qsink {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy, quit;
    struct qsink_job job;
    struct ec_gguf_writer *w;
    struct ec_sha256 sha;
    enum ec_status st; /* first failure; later jobs are skipped */
    struct ec_diag d;
};

static void qsink_do(struct qsink *k, const struct qsink_job *j)
{
    if (k->st == EC_OK) {
        k->st = ec_gguf_writer_write(k->w, j->data, j->n, &k->d);
        if (j->sha_hex) {
            if (j->first)
                ec_sha256_init(&k->sha);
            ec_sha256_update(&k->sha, j->data, j->n);
            if (j->last) {
                uint8_t dg[32];
                ec_sha256_final(&k->sha, dg);
                ec_sha256_to_hex(dg, j->sha_hex);
            }
        }
    }
    if (j->drop)
        ec_mapped_drop(j->drop, j->drop_n);
}

static void *qsink_main(void *arg)
{
    struct qsink *k = arg;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->busy && !k->quit)
            pthread_cond_wait(&k->cv, &k->mu);
        if (!k->busy)
            break;
        struct qsink_job j = k->job;
        pthread_mutex_unlock(&k->mu);
        qsink_do(k, &j);
        pthread_mutex_lock(&k->mu);
        k->busy = false;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static enum ec_status qsink_start(struct qsink *k, struct ec_gguf_writer *w, struct ec_diag *d)
{
    memset(k, 0, sizeof *k);
    k->w = w;
    k->st = EC_OK;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    int rc = pthread_create(&k->th, NULL, qsink_main, k);
    if (rc != 0) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        return ec_fail(d, EC_ERR_NOMEM, "cannot start the writer thread: %s", strerror(rc));
    }
    return EC_OK;
}

/* waits for the job in flight; returns the writer's status (copied into d) */
static enum ec_status qsink_wait(struct qsink *k, struct ec_diag *d)
{
    pthread_mutex_lock(&k->mu);
    while (k->busy)
        pthread_cond_wait(&k->cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
    if (k->st != EC_OK && d)
        *d = k->d;
    return k->st;
}

static enum ec_status qsink_submit(struct qsink *k, const struct qsink_job *j, struct ec_diag *d)
{
    enum ec_status s = qsink_wait(k, d);
    if (s != EC_OK)
        return s;
    pthread_mutex_lock(&k->mu);
    k->job = *j;
    k->busy = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return EC_OK;
}

static void qsink_stop(struct qsink *k)
{
    pthread_mutex_lock(&k->mu);
    while (k->busy)
        pthread_cond_wait(&k->cv, &k->mu);
    k->quit = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->th, NULL);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
}

enum ec_status ec_quantize_run(const struct ec_quantize_opts *o, struct ec_quantize_result *r,
                               struct ec_diag *d)
{
    enum ec_status s;
    struct ec_model m;
    struct ec_imatrix im;
    bool have_im = false;
    struct ec_plan_tensor_in *tin = NULL;
    const char **im_names = NULL;
    const char **inputs = NULL;
    struct ec_gguf_writer *w = NULL;
    float *f32[2] = {NULL, NULL}, *weights = NULL;
    uint8_t *qbuf[2] = {NULL, NULL};
    struct qsink sink;
    bool sink_on = false;
    double t0 = ec_now_seconds();

    memset(r, 0, sizeof *r);
    memset(&im, 0, sizeof im);
    if (ec_ftype_base_type(o->ftype) == EC_DTYPE_UNSET)
        return ec_fail(d, EC_ERR_ARG, "unknown quantization type %d", (int)o->ftype);
    if (!o->dry_run && (!o->output || !o->output[0]))
        return ec_fail(d, EC_ERR_ARG, "no output file given");
#ifdef _OPENMP
    if (o->n_threads > 0)
        omp_set_num_threads(o->n_threads);
#endif

    s = ec_model_open(&m, o->input, d);
    if (s != EC_OK)
        return s;

    if (o->imatrix_file) {
        s = ec_imatrix_load(&im, o->imatrix_file, d);
        if (s != EC_OK)
            goto out_close;
        have_im = true;
        s = file_sha256(o->imatrix_file, r->imatrix_sha256, d);
        if (s != EC_OK)
            goto out_close;
        im_names = calloc(im.n, sizeof *im_names);
        if (!im_names) {
            s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out_close;
        }
        for (size_t i = 0; i < im.n; i++)
            im_names[i] = im.entries[i].name;
    }

    /* the plan */
    tin = calloc(m.n_tensors ? m.n_tensors : 1, sizeof *tin);
    if (!tin) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_close;
    }
    for (size_t i = 0; i < m.n_tensors; i++) {
        const struct ec_model_tensor *t = &m.tensors[i];
        tin[i].name = t->name;
        tin[i].type = m.source == EC_SRC_HF ? EC_F32 : t->dtype;
        tin[i].n_dims = t->n_dims;
        for (int k = 0; k < 4; k++)
            tin[i].ne[k] = t->ne[k];
    }
    struct ec_plan_model pm = {.arch = m.hp.gguf_arch,
                               .n_layer = m.hp.n_layer,
                               .n_head = m.hp.n_head,
                               .n_head_kv = m.hp.n_head_kv};
    struct ec_plan_opts po = {.ftype = o->ftype,
                              .pure = o->pure,
                              .leave_output_tensor = o->leave_output_tensor,
                              .output_tensor_type = o->output_tensor_type,
                              .token_embedding_type = o->token_embedding_type,
                              .n_overrides = o->n_overrides,
                              .overrides = o->overrides,
                              .has_imatrix = have_im,
                              .n_imatrix_names = have_im ? im.n : 0,
                              .imatrix_names = im_names,
                              .n_include = o->n_include,
                              .include_weights = o->include_weights,
                              .n_exclude = o->n_exclude,
                              .exclude_weights = o->exclude_weights};
    s = ec_quant_plan_build(&r->plan, &pm, tin, m.n_tensors, &po, d);
    if (s != EC_OK)
        goto out_close;
    r->n_imatrix_entries = r->plan.n_imatrix_entries;
    r->tensors = calloc(r->plan.n ? r->plan.n : 1, sizeof *r->tensors);
    if (!r->tensors) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_close;
    }

    /* check everything we can before writing a byte */
    uint64_t max_elems = 0, max_out = 0, max_imat = 0;
    for (size_t i = 0; i < r->plan.n; i++) {
        const struct ec_plan_entry *e = &r->plan.entries[i];
        const struct ec_model_tensor *t = &m.tensors[e->src_index];
        const struct ec_dtype_info *si = ec_dtype_info(t->dtype);
        if (e->flags & EC_PLAN_QUANTIZE) {
            if (si && si->is_quantized && !o->allow_requantize) {
                s = ec_fail(d, EC_ERR_UNSUPPORTED,
                            "%s: tensor '%s': requantizing from %s is disabled (use "
                            "--allow-requantize; quality suffers)",
                            t->src_file, t->name, ec_dtype_name(t->dtype));
                goto out_close;
            }
            if (!o->dry_run && !ec_qk_can_quantize(e->type)) {
                s = ec_fail(d, EC_ERR_UNSUPPORTED, "tensor '%s': no quantizer for %s", e->name,
                            ec_dtype_name(e->type));
                goto out_close;
            }
            if (!o->dry_run && si && si->is_quantized && !ec_qk_can_dequantize(t->dtype)) {
                s = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s': no dequantizer for %s",
                            t->src_file, t->name, ec_dtype_name(t->dtype));
                goto out_close;
            }
        }
        if (e->n_elems > max_elems)
            max_elems = e->n_elems;
        if (e->flags & EC_PLAN_IMATRIX) {
            const struct ec_imatrix_entry *ie = ec_imatrix_find(&im, e->name);
            /* llama-quantize: an entry must cover ne[0] x ne[2] (experts) */
            if (ie && (uint64_t)ie->nval != e->ne[0] * e->ne[2]) {
                if (strcmp(e->name, "token_embd.weight") != 0) {
                    s = ec_fail(d, EC_ERR_FORMAT,
                                "%s: entry '%s' at byte %llu: %u values, but the tensor needs "
                                "%llu",
                                o->imatrix_file, ie->name, (unsigned long long)ie->offset,
                                ie->nval, (unsigned long long)(e->ne[0] * e->ne[2]));
                    goto out_close;
                }
                r->plan.entries[i].flags &= ~(unsigned)EC_PLAN_IMATRIX;
            } else if (ie && ie->nval > max_imat) {
                max_imat = ie->nval;
            }
        }
        if (e->dst_bytes > max_out)
            max_out = e->dst_bytes;
        if (e->src_bytes > max_out)
            max_out = e->src_bytes;
        if (e->n_elems * 4 > max_out)
            max_out = e->n_elems * 4;
    }

    if (o->dry_run) {
        r->seconds = ec_now_seconds() - t0;
        s = EC_OK;
        goto out_close;
    }

    if (max_elems > SIZE_MAX / 4 || max_out > SIZE_MAX) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: a tensor does not fit in memory", o->input);
        goto out_close;
    }
    /* one chunk of rows at a time (see QUANT_CHUNK_ELEMS) */
    uint64_t max_chunk = 0;
    for (size_t i = 0; i < r->plan.n; i++) {
        const struct ec_plan_entry *e = &r->plan.entries[i];
        uint64_t c = chunk_rows(e->ne[0]) * e->ne[0];
        if (c > e->n_elems)
            c = e->n_elems;
        if (c > max_chunk)
            max_chunk = c;
    }
    max_elems = max_chunk;
    max_out = max_chunk * 4; /* no output type is wider than F32 */
    /* two of each chunk buffer: one being filled, one being written */
    for (int k = 0; k < 2; k++) {
        f32[k] = malloc((size_t)(max_elems ? max_elems : 1) * sizeof *f32[k]);
        qbuf[k] = malloc((size_t)(max_out ? max_out : 1));
    }
    weights = malloc((size_t)(max_imat ? max_imat : 1) * sizeof *weights);
    if (!f32[0] || !f32[1] || !qbuf[0] || !qbuf[1] || !weights) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate buffers for one tensor (%llu bytes)",
                    o->input, (unsigned long long)(2 * (max_elems * 4 + max_out)));
        goto out_free;
    }

    size_t n_in = m.source == EC_SRC_HF ? m.st.n_files : 1;
    inputs = calloc(n_in + 2, sizeof *inputs);
    if (!inputs) {
        s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < n_in; i++)
        inputs[i] = m.source == EC_SRC_HF ? m.st.files[i].path : m.gguf.file.path;
    if (o->imatrix_file)
        inputs[n_in] = o->imatrix_file;

    s = ec_gguf_writer_open(&w, o->output, inputs, d);
    if (s != EC_OK)
        goto out_free;
    s = write_kvs(&m, w, o, have_im ? &im : NULL, r, d);
    if (s != EC_OK)
        goto out_writer;
    for (size_t i = 0; i < r->plan.n; i++) {
        const struct ec_plan_entry *e = &r->plan.entries[i];
        s = ec_gguf_writer_add_tensor(w, e->name, e->type, e->n_dims, e->ne, d);
        if (s != EC_OK)
            goto out_writer;
    }
    s = ec_gguf_writer_begin_data(w, d);
    if (s != EC_OK)
        goto out_writer;
    s = qsink_start(&sink, w, d);
    if (s != EC_OK)
        goto out_writer;
    sink_on = true;

    uint64_t bytes_done = 0;
    int cur = 0; /* the buffer pair being filled */
    for (size_t i = 0; i < r->plan.n; i++) {
        const struct ec_plan_entry *e = &r->plan.entries[i];
        const struct ec_model_tensor *t = &m.tensors[e->src_index];
        double ts = ec_now_seconds();
        const uint64_t ne0 = e->ne[0];
        const uint64_t rows = e->ne[1], n_slices = e->ne[2] * e->ne[3];
        const uint64_t n_rows = rows * n_slices;
        const uint64_t src_rb = n_rows ? t->n_bytes / n_rows : 0;
        const uint64_t dst_rb = n_rows ? e->dst_bytes / n_rows : 0;
        const uint64_t step = chunk_rows(ne0);
        const struct ec_imatrix_entry *ie =
            (e->flags & EC_PLAN_IMATRIX) ? ec_imatrix_find(&im, e->name) : NULL;
        bool raw = m.source == EC_SRC_GGUF && !(e->flags & EC_PLAN_QUANTIZE);
        if (ie)
            ec_imatrix_entry_weights(ie, weights);
        bool first = true;
        /* as llama-quantize: each ne[2] slice (expert) is quantized on its own
         * with its own importance row; chunks never span slices */
        for (uint64_t k = 0; s == EC_OK && k < n_slices; k++) {
            const float *imat = ie ? weights + (k % e->ne[2]) * ne0 : NULL;
            for (uint64_t r0 = 0; s == EC_OK && r0 < rows; r0 += step) {
                uint64_t nr = rows - r0 < step ? rows - r0 : step;
                uint64_t row = k * rows + r0;
                const void *out = qbuf[cur];
                const uint8_t *at = t->data + row * src_rb;
                if (raw) {
                    /* same type: the bytes as they are (GGUF rows need no permutation) */
                    out = at;
                } else {
                    /* F32 rows in the file's own order are quantized straight
                     * from the mapping; others are converted into f32 first */
                    const float *src = f32[cur];
                    if (t->dtype == EC_F32 && !t->permute_heads && (uintptr_t)at % 4 == 0)
                        src = (const float *)(const void *)at;
                    else
                        s = read_rows_f32(&m, t, row, nr, f32[cur], o->allow_requantize, d);
                    if (s == EC_OK && e->type == EC_F32)
                        out = src;
                    else if (s == EC_OK)
                        s = ec_qk_quantize(e->type, src, qbuf[cur], nr, ne0, imat, d);
                }
                if (s != EC_OK)
                    break;
                const bool last = k + 1 == n_slices && r0 + nr >= rows;
                /* input pages to release: this chunk's rows (when they are
                 * the file's rows, unpermuted), after the last chunk the
                 * whole tensor's */
                const struct qsink_job job = {
                    .data = out,
                    .n = (size_t)(nr * dst_rb),
                    .drop = last ? t->data : (t->permute_heads ? NULL : at),
                    .drop_n = last ? t->n_bytes : nr * src_rb,
                    .first = first,
                    .last = last,
                    .sha_hex = o->skip_tensor_sha256 ? NULL : r->tensors[i].sha256,
                };
                s = qsink_submit(&sink, &job, d);
                if (s != EC_OK)
                    goto out_writer;
                first = false;
                cur ^= 1;
            }
        }
        if (s != EC_OK) {
            ec_diag_prefix(d, "%s", o->input);
            goto out_writer;
        }
        if (first && !o->skip_tensor_sha256) { /* no rows: the hash of nothing */
            struct ec_sha256 sha;
            uint8_t dg[32];
            ec_sha256_init(&sha);
            ec_sha256_final(&sha, dg);
            ec_sha256_to_hex(dg, r->tensors[i].sha256);
        }
        r->tensors[i].seconds = ec_now_seconds() - ts;
        bytes_done += e->src_bytes;
        if (o->progress)
            o->progress(o->progress_ctx, i + 1, r->plan.n, bytes_done);
    }
    s = qsink_wait(&sink, d);
    if (s != EC_OK)
        goto out_writer;
    s = ec_gguf_writer_commit(w, d);
    if (s != EC_OK)
        goto out_writer;
    struct stat sb;
    if (stat(o->output, &sb) == 0)
        r->file_bytes = (uint64_t)sb.st_size;
    r->seconds = ec_now_seconds() - t0;

out_writer:
    if (sink_on)
        qsink_stop(&sink);
    ec_gguf_writer_free(w);
out_free:
    for (int k = 0; k < 2; k++) {
        free(f32[k]);
        free(qbuf[k]);
    }
    free(weights);
    free((void *)inputs);
out_close:
    free(tin);
    free((void *)im_names);
    if (have_im)
        ec_imatrix_release(&im);
    ec_model_close(&m);
    return s;
}
