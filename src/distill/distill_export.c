/* edgec distill-export: the teacher's top-k next-token distributions over a
 * text, in compressed, checksummed, resumable shards (edgec/distill.h,
 * docs/distill-format.md). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "distill_priv.h"
#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/log.h"
#include "edgec/model.h"
#include "edgec/sha256.h"
#include "edgec/tokenizer.h"

#define TEXT_MAX_BYTES (1ull << 31)
#define DEFAULT_SHARD_TOKENS 32768

void ec_distill_opts_init(struct ec_distill_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seq_len = 256;
    o->top_k = 64;
    o->temperature = 1.0;
}

/* ---- hashing ---- */

static enum ec_status sha256_file(const char *path, char hex[65], struct ec_diag *d)
{
    struct ec_mapped_file mf;
    enum ec_status st = ec_mapped_file_open(&mf, path, d);
    if (st != EC_OK)
        return st;
    ec_sha256_hex(mf.data, (size_t)mf.size_bytes, hex);
    ec_mapped_file_close(&mf);
    return EC_OK;
}

static bool teacher_file_wanted(const char *n)
{
    static const char *const names[] = {"config.json",         "generation_config.json",
                                        "tokenizer.json",      "tokenizer.model",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(n, names[i]) == 0)
            return true;
    size_t l = strlen(n);
    return (l > 12 && strcmp(n + l - 12, ".safetensors") == 0) ||
           (l > 23 && strcmp(n + l - 23, ".safetensors.index.json") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Teacher hash: sha256 of a "sha256sum" listing ("<hex>  <name>\n" per file,
 * names sorted) of the files the model is read from: the .gguf itself, or a
 * folder's config/tokenizer files and *.safetensors (top level). Each file's
 * hash goes to files (a JSON array). */
static enum ec_status teacher_hash(const char *path, char hex[65], cJSON *files,
                                   struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    struct ec_sha256 h;
    ec_sha256_init(&h);
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *dir = NULL;
    if (!ec_path_is_dir(path)) {
        char fh[65];
        if ((st = sha256_file(path, fh, d)) != EC_OK)
            return st;
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        ec_sha256_update(&h, fh, 64);
        ec_sha256_update(&h, "  ", 2);
        ec_sha256_update(&h, base, strlen(base));
        ec_sha256_update(&h, "\n", 1);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", base);
        cJSON_AddStringToObject(f, "sha256", fh);
        cJSON_AddItemToArray(files, f);
        goto out_final;
    }
    DIR *dp = opendir(path);
    if (!dp)
        return ec_fail(d, EC_ERR_IO, "%s: cannot list: %s", path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (!teacher_file_wanted(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) {
                closedir(dp);
                st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
                goto out_free;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            closedir(dp);
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out_free;
        }
        n++;
    }
    closedir(dp);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        free(dir);
        dir = ec_path_join(path, names[i]);
        char fh[65];
        if (!dir) {
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out_free;
        }
        if (ec_path_is_dir(dir))
            continue;
        if ((st = sha256_file(dir, fh, d)) != EC_OK)
            goto out_free;
        ec_sha256_update(&h, fh, 64);
        ec_sha256_update(&h, "  ", 2);
        ec_sha256_update(&h, names[i], strlen(names[i]));
        ec_sha256_update(&h, "\n", 1);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", names[i]);
        cJSON_AddStringToObject(f, "sha256", fh);
        cJSON_AddItemToArray(files, f);
    }
out_final:;
    uint8_t dg[32];
    ec_sha256_final(&h, dg);
    ec_sha256_to_hex(dg, hex);
out_free:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(dir);
    return st;
}

/* ---- input ---- */

static enum ec_status read_input(const struct ec_distill_opts *o, const struct ec_model *m,
                                 int32_t **out, int64_t *n, char hex[65], struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    *out = NULL;
    *n = 0;
    if (o->tokens_path) {
        struct ec_mapped_file mf;
        if ((st = ec_mapped_file_open(&mf, o->tokens_path, d)) != EC_OK)
            return st;
        ec_sha256_hex(mf.data, (size_t)mf.size_bytes, hex);
        if (mf.size_bytes % 4 != 0) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: %" PRIu64 " bytes is not a whole number of int32 ids",
                         o->tokens_path, mf.size_bytes);
        } else if (!(*out = malloc(mf.size_bytes ? (size_t)mf.size_bytes : 1))) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", o->tokens_path);
        } else {
            *n = (int64_t)(mf.size_bytes / 4);
            for (int64_t i = 0; i < *n; i++)
                (*out)[i] = (int32_t)ec_get_u32le(mf.data + 4 * i);
        }
        ec_mapped_file_close(&mf);
        return st;
    }
    char *text = NULL;
    size_t len = 0;
    struct ec_tokenizer *tk = NULL;
    if ((st = ec_read_file(o->text_path, TEXT_MAX_BYTES, &text, &len, d)) != EC_OK)
        return st;
    ec_sha256_hex(text, len, hex);
    /* as edgec perplexity and llama.cpp's -f: drop exactly one trailing newline */
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if ((st = ec_tokenizer_new(&tk, &m->vocab, d)) != EC_OK)
        goto out_free;
    size_t n_ids = 0;
    st = ec_tokenizer_encode(tk, text, len, true, false, out, &n_ids, d);
    *n = (int64_t)n_ids;
out_free:
    ec_tokenizer_free(tk);
    free(text);
    return st;
}

/* ---- one position's record ---- */

struct scratch {
    int32_t *heap;  /* [k] */
    uint8_t *in_top; /* [n_vocab] */
};

/* a ranks before b: higher logit, then lower id */
static inline bool ranks_before(const float *l, int32_t a, int32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* min-heap on rank: heap[0] is the worst of the kept ids */
static void sift_down(int32_t *h, uint32_t n, uint32_t i, const float *l)
{
    for (;;) {
        uint32_t w = i, a = 2 * i + 1, b = 2 * i + 2;
        if (a < n && ranks_before(l, h[w], h[a]))
            w = a;
        if (b < n && ranks_before(l, h[w], h[b]))
            w = b;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static uint16_t quantize_nats(double neg_logp)
{
    /* neg_logp >= 0; grid of 1/256 nats, saturating */
    double x = neg_logp * EC_DISTILL_STEPS_PER_NAT;
    if (!(x < (double)EC_DISTILL_Q_MAX - 0.5))
        return (uint16_t)EC_DISTILL_Q_MAX;
    return (uint16_t)floor(x + 0.5);
}

/* Top-k ids (rank order) and quantized -log_softmax(l / T) of one row.
 * Returns false when a logit is not finite. */
static bool record_row(const float *l, uint32_t nv, uint32_t k, double temp, struct scratch *s,
                       int32_t *ids, uint16_t *q, uint16_t *q_tail)
{
    for (uint32_t j = 0; j < nv; j++)
        if (!isfinite(l[j]))
            return false;
    int32_t *h = s->heap;
    for (uint32_t j = 0; j < k; j++)
        h[j] = (int32_t)j;
    for (uint32_t i = k / 2; i-- > 0;)
        sift_down(h, k, i, l);
    for (uint32_t j = k; j < nv; j++) {
        if (ranks_before(l, (int32_t)j, h[0])) {
            h[0] = (int32_t)j;
            sift_down(h, k, 0, l);
        }
    }
    /* heap sort: repeatedly move the worst to the end -> best first */
    for (uint32_t n = k; n > 1; n--) {
        int32_t t = h[0];
        h[0] = h[n - 1];
        h[n - 1] = t;
        sift_down(h, n - 1, 0, l);
    }
    /* log_softmax in double: z = l / T, max z is the top-1 */
    const double mx = (double)l[h[0]] / temp;
    double sum = 0.0;
    for (uint32_t j = 0; j < nv; j++)
        sum += exp((double)l[j] / temp - mx);
    memset(s->in_top, 0, nv);
    for (uint32_t j = 0; j < k; j++)
        s->in_top[h[j]] = 1;
    double tail = 0.0;
    for (uint32_t j = 0; j < nv; j++)
        if (!s->in_top[j])
            tail += exp((double)l[j] / temp - mx);
    const double log_sum = log(sum);
    for (uint32_t j = 0; j < k; j++) {
        ids[j] = h[j];
        q[j] = quantize_nats(-(((double)l[h[j]] / temp - mx) - log_sum));
    }
    *q_tail = tail > 0 ? quantize_nats(-(log(tail) - log_sum)) : (uint16_t)EC_DISTILL_Q_MAX;
    return true;
}

/* ---- shard encoding ---- */

static void shuffle_u32(uint8_t *dst, const int32_t *src, uint64_t n, uint32_t w)
{
    for (uint32_t b = 0; b < w; b++)
        for (uint64_t i = 0; i < n; i++)
            dst[b * n + i] = (uint8_t)((uint32_t)src[i] >> (8 * b));
}

static void shuffle_u16(uint8_t *dst, const uint16_t *src, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        dst[i] = (uint8_t)src[i];
        dst[n + i] = (uint8_t)(src[i] >> 8);
    }
}

struct ctx {
    const struct ec_distill_opts *o;
    struct ec_model m;
    struct ec_engine *e;
    int32_t *tokens;
    int64_t n_text_tokens;
    uint32_t n_vocab, id_bytes, L, k;
    uint64_t n_seqs, seqs_per_shard;
    uint32_t n_shards;
    uint8_t fp[32];
    char fp_hex[65];
    char teacher_sha[65], input_sha[65];
    cJSON *teacher_files;
    cJSON *args;
    int dir_fd;
    /* per-shard buffers */
    float *logits;      /* [L * n_vocab] */
    int32_t *in_ids;    /* [N] */
    int32_t *top_ids;   /* [N * k] */
    uint16_t *q;        /* [N * k] absolute offsets */
    uint16_t *q_tail;   /* [N] */
    uint16_t *tmp16;    /* [N * k] */
    uint8_t *raw;       /* payload */
    uint8_t *zbuf;
    uint64_t raw_cap, zcap;
    int n_threads;
    struct scratch *scr; /* [n_threads] */
    struct ec_distill_progress pr;
};

static void shard_expect(const struct ctx *c, uint32_t i, struct ec_distill_shard_expect *ex)
{
    uint64_t first = (uint64_t)i * c->seqs_per_shard;
    uint64_t ns = c->n_seqs - first < c->seqs_per_shard ? c->n_seqs - first : c->seqs_per_shard;
    *ex = (struct ec_distill_shard_expect){
        .index = i,
        .first_seq = first,
        .n_seqs = (uint32_t)ns,
        .seq_len = c->L,
        .top_k = c->k,
        .id_bytes = c->id_bytes,
        .n_vocab = c->n_vocab,
        .fingerprint = c->fp,
    };
}

/* Evaluate one shard's sequences and write it atomically. */
static enum ec_status write_shard(struct ctx *c, uint32_t si, const char *path,
                                  uint64_t *evaluated, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    struct ec_distill_shard_expect ex;
    shard_expect(c, si, &ex);
    const uint32_t L = c->L, k = c->k, nv = c->n_vocab;
    const uint64_t N = (uint64_t)ex.n_seqs * L;
    for (uint32_t s = 0; s < ex.n_seqs; s++) {
        const uint64_t seq = ex.first_seq + s;
        int32_t *win = c->in_ids + (uint64_t)s * L;
        memcpy(win, c->tokens + seq * L, (size_t)L * sizeof *win);
        const int32_t bos = ec_vocab_chunk_bos(&c->m.vocab);
        if (bos >= 0)
            win[0] = bos;
        ec_engine_reset(c->e);
        if ((st = ec_engine_eval(c->e, win, L, c->logits, 0, d)) != EC_OK) {
            ec_diag_prefix(d, "distill-export: sequence %" PRIu64, seq);
            return st;
        }
        int64_t bad_row = -1;
        /* rows are independent: any thread count gives the same bytes */
#pragma omp parallel for schedule(static) num_threads(c->n_threads)
        for (int64_t r = 0; r < (int64_t)L; r++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            uint64_t t = (uint64_t)s * L + (uint64_t)r;
            if (!record_row(c->logits + (uint64_t)r * nv, nv, k, c->o->temperature, &c->scr[tid],
                            c->top_ids + t * k, c->q + t * k, c->q_tail + t)) {
#pragma omp critical
                if (bad_row < 0 || r < bad_row)
                    bad_row = r;
            }
        }
        if (bad_row >= 0)
            return ec_fail(d, EC_ERR_NUMERIC,
                           "distill-export: sequence %" PRIu64 " position %" PRId64
                           ": the teacher's logits are not finite",
                           seq, bad_row);
        *evaluated += L;
        c->pr.tokens_done += L;
        if (c->o->on_progress)
            c->o->on_progress(c->o->user, &c->pr);
    }
    /* payload: five byte-shuffled arrays */
    uint8_t *p = c->raw;
    shuffle_u32(p, c->in_ids, N, c->id_bytes);
    p += N * c->id_bytes;
    shuffle_u32(p, c->top_ids, N * k, c->id_bytes);
    p += N * k * c->id_bytes;
    for (uint64_t t = 0; t < N; t++)
        c->tmp16[t] = c->q[t * k];
    shuffle_u16(p, c->tmp16, N);
    p += N * 2;
    for (uint64_t t = 0; t < N; t++)
        for (uint32_t j = 1; j < k; j++)
            c->tmp16[t * (k - 1) + j - 1] = (uint16_t)(c->q[t * k + j] - c->q[t * k + j - 1]);
    shuffle_u16(p, c->tmp16, N * (k - 1));
    p += N * (k - 1) * 2;
    shuffle_u16(p, c->q_tail, N);
    p += N * 2;
    const uint64_t raw_bytes = (uint64_t)(p - c->raw);

    uLongf zlen = (uLongf)c->zcap;
    int zr = compress2(c->zbuf, &zlen, c->raw, (uLong)raw_bytes,
                       c->o->zlib_level > 0 ? c->o->zlib_level : 6);
    if (zr != Z_OK)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: zlib compress2 failed (%d)", path, zr);
    uint8_t hdr[EC_DISTILL_HEADER_BYTES];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, EC_DISTILL_MAGIC, 4);
    ec_put_u32le(hdr + 4, EC_DISTILL_VERSION);
    ec_put_u32le(hdr + 8, EC_DISTILL_HEADER_BYTES);
    ec_put_u32le(hdr + 12, si);
    ec_put_u64le(hdr + 16, ex.first_seq);
    ec_put_u32le(hdr + 24, ex.n_seqs);
    ec_put_u32le(hdr + 28, L);
    ec_put_u32le(hdr + 32, k);
    ec_put_u32le(hdr + 36, c->id_bytes);
    ec_put_u32le(hdr + 40, EC_DISTILL_STEPS_PER_NAT);
    ec_put_u32le(hdr + 44, nv);
    ec_put_u64le(hdr + 48, raw_bytes);
    ec_put_u64le(hdr + 56, (uint64_t)zlen);
    ec_put_u32le(hdr + 64, (uint32_t)crc32(0L, c->zbuf, (uInt)zlen));
    memcpy(hdr + 72, c->fp, 32);
    ec_put_u32le(hdr + 104, (uint32_t)crc32(0L, hdr, 104));

    struct ec_outfile of;
    memset(&of, 0, sizeof of);
    if ((st = ec_outfile_open(&of, path, NULL, d)) != EC_OK)
        return st;
    if ((st = ec_outfile_write(&of, hdr, sizeof hdr, d)) != EC_OK ||
        (st = ec_outfile_write(&of, c->zbuf, (size_t)zlen, d)) != EC_OK) {
        ec_outfile_abort(&of);
        return st;
    }
    return ec_outfile_commit(&of, d);
}

/* Whether the shard file at path is complete and belongs to this export. */
static bool shard_ok(const struct ctx *c, uint32_t si, const char *path)
{
    if (!ec_path_exists(path))
        return false;
    struct ec_diag tmp;
    ec_diag_clear(&tmp);
    struct ec_mapped_file mf;
    if (ec_mapped_file_open(&mf, path, &tmp) != EC_OK)
        return false;
    struct ec_distill_shard_expect ex;
    shard_expect(c, si, &ex);
    bool ok = ec_distill_shard_decode(mf.data, (size_t)mf.size_bytes, path, &ex, NULL, &tmp) ==
              EC_OK;
    ec_mapped_file_close(&mf);
    return ok;
}

/* ---- manifest ---- */

static const char *vocab_type_name(enum ec_vocab_type t)
{
    return t == EC_VOCAB_SPM ? "spm" : t == EC_VOCAB_BPE ? "bpe" : "none";
}

static cJSON *build_args(const struct ctx *c)
{
    const struct ec_distill_opts *o = c->o;
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "teacher_sha256", c->teacher_sha);
    cJSON_AddStringToObject(a, "input_kind", o->tokens_path ? "tokens" : "text");
    cJSON_AddStringToObject(a, "input_sha256", c->input_sha);
    cJSON_AddNumberToObject(a, "seq_len", c->L);
    cJSON_AddNumberToObject(a, "top_k", c->k);
    /* exact: %.17g round-trips the double */
    char tbuf[40];
    snprintf(tbuf, sizeof tbuf, "%.17g", o->temperature);
    cJSON_AddStringToObject(a, "temperature", tbuf);
    cJSON_AddNumberToObject(a, "shard_tokens", (double)(c->seqs_per_shard * c->L));
    cJSON_AddNumberToObject(a, "max_seqs", (double)o->max_seqs);
    cJSON_AddStringToObject(a, "kv_cache", o->kv_f32 ? "f32" : "f16");
    cJSON_AddNumberToObject(a, "format_version", EC_DISTILL_VERSION);
    return a;
}

struct shard_final {
    uint64_t bytes;
    uint32_t crc;
    char sha[65];
};

static cJSON *build_manifest(const struct ctx *c, const struct shard_final *fin)
{
    const struct ec_distill_opts *o = c->o;
    const struct ec_model *m = &c->m;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", EC_DISTILL_FORMAT);
    cJSON_AddNumberToObject(j, "version", EC_DISTILL_VERSION);
    cJSON_AddBoolToObject(j, "complete", fin != NULL);
    cJSON_AddStringToObject(j, "fingerprint", c->fp_hex);
    cJSON_AddItemToObject(j, "args", cJSON_Duplicate(c->args, 1));
    cJSON *t = cJSON_AddObjectToObject(j, "teacher");
    cJSON_AddStringToObject(t, "path", o->teacher_path);
    cJSON_AddStringToObject(t, "name", m->name ? m->name : "");
    cJSON_AddStringToObject(t, "architecture", m->hp.gguf_arch ? m->hp.gguf_arch : "");
    cJSON_AddStringToObject(t, "source", m->source == EC_SRC_GGUF ? "gguf" : "hf-folder");
    cJSON_AddStringToObject(t, "sha256", c->teacher_sha);
    cJSON_AddStringToObject(t, "sha256_of",
                            "sha256sum-style listing ('<sha256>  <name>\\n', names sorted) of the "
                            "model files: the .gguf, or the folder's config, tokenizer and "
                            "*.safetensors files");
    cJSON_AddItemToObject(t, "files", cJSON_Duplicate(c->teacher_files, 1));
    cJSON *tk = cJSON_AddObjectToObject(j, "tokenizer");
    cJSON_AddStringToObject(tk, "type", vocab_type_name(m->vocab.type));
    cJSON_AddStringToObject(tk, "pre", m->vocab.pre ? m->vocab.pre : "");
    cJSON_AddNumberToObject(tk, "n_tokens", m->vocab.n_tokens);
    cJSON_AddNumberToObject(tk, "bos_id", m->vocab.bos_id);
    cJSON_AddNumberToObject(tk, "eos_id", m->vocab.eos_id);
    cJSON_AddBoolToObject(tk, "add_bos", ec_vocab_adds_bos(&m->vocab));
    cJSON *in = cJSON_AddObjectToObject(j, "input");
    cJSON_AddStringToObject(in, "kind", o->tokens_path ? "tokens" : "text");
    cJSON_AddStringToObject(in, "path", o->tokens_path ? o->tokens_path : o->text_path);
    cJSON_AddStringToObject(in, "sha256", c->input_sha);
    cJSON_AddNumberToObject(in, "n_tokens", (double)c->n_text_tokens);
    cJSON_AddStringToObject(j, "sequences",
                            "consecutive non-overlapping windows of seq_len tokens of the "
                            "tokenized input (BOS prepended by the tokenizer), each window's first "
                            "token replaced by BOS; record i of a window is the distribution of "
                            "the token after position i");
    cJSON_AddNumberToObject(j, "n_vocab", c->n_vocab);
    cJSON_AddNumberToObject(j, "top_k", c->k);
    cJSON_AddNumberToObject(j, "temperature", o->temperature);
    cJSON_AddNumberToObject(j, "seq_len", c->L);
    cJSON_AddNumberToObject(j, "id_bytes", c->id_bytes);
    cJSON_AddNumberToObject(j, "steps_per_nat", EC_DISTILL_STEPS_PER_NAT);
    cJSON_AddStringToObject(j, "kv_cache", o->kv_f32 ? "f32" : "f16");
    cJSON_AddNumberToObject(j, "shard_tokens", (double)(c->seqs_per_shard * c->L));
    cJSON_AddNumberToObject(j, "n_seqs", (double)c->n_seqs);
    cJSON_AddNumberToObject(j, "n_tokens", (double)(c->n_seqs * c->L));
    cJSON *sh = cJSON_AddArrayToObject(j, "shards");
    for (uint32_t i = 0; i < c->n_shards; i++) {
        struct ec_distill_shard_expect ex;
        shard_expect(c, i, &ex);
        cJSON *s = cJSON_CreateObject();
        char name[32];
        ec_distill_shard_name(i, name, sizeof name);
        cJSON_AddStringToObject(s, "file", name);
        cJSON_AddNumberToObject(s, "index", i);
        cJSON_AddNumberToObject(s, "first_seq", (double)ex.first_seq);
        cJSON_AddNumberToObject(s, "n_seqs", ex.n_seqs);
        cJSON_AddNumberToObject(s, "n_tokens", (double)ex.n_seqs * c->L);
        if (fin) {
            cJSON_AddNumberToObject(s, "bytes", (double)fin[i].bytes);
            cJSON_AddNumberToObject(s, "crc32", fin[i].crc);
            cJSON_AddStringToObject(s, "sha256", fin[i].sha);
        }
        cJSON_AddItemToArray(sh, s);
    }
    return j;
}

static enum ec_status write_manifest(const struct ctx *c, const struct shard_final *fin,
                                     uint64_t *bytes, struct ec_diag *d)
{
    cJSON *j = build_manifest(c, fin);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    char *path = ec_path_join(c->o->out_dir, EC_DISTILL_MANIFEST);
    enum ec_status st = EC_OK;
    if (!text || !path) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_free;
    }
    struct ec_outfile of;
    memset(&of, 0, sizeof of);
    size_t len = strlen(text);
    if ((st = ec_outfile_open(&of, path, NULL, d)) != EC_OK)
        goto out_free;
    if ((st = ec_outfile_write(&of, text, len, d)) != EC_OK ||
        (st = ec_outfile_write(&of, "\n", 1, d)) != EC_OK) {
        ec_outfile_abort(&of);
        goto out_free;
    }
    st = ec_outfile_commit(&of, d);
    if (bytes)
        *bytes = len + 1;
out_free:
    free(path);
    cJSON_free(text);
    return st;
}

/* An existing manifest: same fingerprint -> resume; other arguments -> error
 * naming the keys that differ; not ours -> error (both unless force). */
static enum ec_status check_existing(const struct ctx *c, struct ec_diag *d)
{
    char *path = ec_path_join(c->o->out_dir, EC_DISTILL_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    enum ec_status st = EC_OK;
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    if (!ec_path_exists(path) || c->o->force)
        goto out_free;
    if ((st = ec_read_file(path, 64u << 20, &text, &len, d)) != EC_OK)
        goto out_free;
    j = cJSON_ParseWithLength(text, len);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, EC_DISTILL_FORMAT) != 0 ||
        !cJSON_IsString(fp)) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: exists but is not an %s manifest; choose another folder or pass "
                     "--force to overwrite",
                     path, EC_DISTILL_FORMAT);
        goto out_free;
    }
    if (strcmp(fp->valuestring, c->fp_hex) == 0)
        goto out_free;
    char diff[600];
    size_t o = 0;
    diff[0] = '\0';
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(j, "args");
    const cJSON *it;
    cJSON_ArrayForEach(it, c->args)
    {
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(old, it->string);
        if (ov && cJSON_Compare(ov, it, 1))
            continue;
        char *a = ov ? cJSON_PrintUnformatted(ov) : NULL, *b = cJSON_PrintUnformatted(it);
        if (o < sizeof diff - 1)
            o += (size_t)snprintf(diff + o, sizeof diff - o, "%s%s %s -> %s", o ? ", " : "",
                                  it->string, a ? a : "(none)", b ? b : "?");
        cJSON_free(a);
        cJSON_free(b);
    }
    st = ec_fail(d, EC_ERR_ARG,
                 "%s: the folder holds an export made with other arguments (%s); pass --force to "
                 "overwrite it or choose another folder",
                 path, diff[0] ? diff : "fingerprint differs");
out_free:
    cJSON_Delete(j);
    free(text);
    free(path);
    return st;
}

/* Remove temporary files a killed run left (ours only: the folder is locked),
 * and with force, shard files that are not part of this export. */
static enum ec_status clean_dir(const struct ctx *c, struct ec_diag *d)
{
    DIR *dp = opendir(c->o->out_dir);
    if (!dp)
        return ec_fail(d, EC_ERR_IO, "%s: cannot list: %s", c->o->out_dir, strerror(errno));
    struct dirent *de;
    enum ec_status st = EC_OK;
    while ((de = readdir(dp)) != NULL) {
        const char *n = de->d_name;
        bool ours = strncmp(n, "shard-", 6) == 0 || strncmp(n, EC_DISTILL_MANIFEST, 13) == 0;
        bool tmp = ours && strstr(n, ".tmp-") != NULL;
        bool extra = false;
        unsigned idx;
        char tail[8];
        if (!tmp && c->o->force && sscanf(n, "shard-%5u.%7s", &idx, tail) == 2 &&
            strcmp(tail, "ecds") == 0 && idx >= c->n_shards)
            extra = true;
        if (tmp || extra) {
            if (unlinkat(c->dir_fd, n, 0) != 0 && errno != ENOENT) {
                st = ec_fail(d, EC_ERR_IO, "%s/%s: cannot remove: %s", c->o->out_dir, n,
                             strerror(errno));
                break;
            }
        }
    }
    closedir(dp);
    return st;
}

static void ctx_release(struct ctx *c)
{
    if (c->scr) {
        for (int i = 0; i < c->n_threads; i++) {
            free(c->scr[i].heap);
            free(c->scr[i].in_top);
        }
        free(c->scr);
    }
    free(c->logits);
    free(c->in_ids);
    free(c->top_ids);
    free(c->q);
    free(c->q_tail);
    free(c->tmp16);
    free(c->raw);
    free(c->zbuf);
    ec_engine_free(c->e);
    free(c->tokens);
    cJSON_Delete(c->teacher_files);
    cJSON_Delete(c->args);
    if (c->dir_fd >= 0)
        close(c->dir_fd); /* releases the flock */
    ec_model_close(&c->m);
}

static enum ec_status alloc_buffers(struct ctx *c, struct ec_diag *d)
{
    const uint64_t N = c->seqs_per_shard * c->L, k = c->k;
    c->raw_cap = ec_distill_payload_bytes(N, c->k, c->id_bytes);
    if (c->raw_cap == 0 || c->raw_cap > (8ull << 30))
        return ec_fail(d, EC_ERR_ARG,
                       "distill-export: a shard of %" PRIu64 " tokens at k = %" PRIu64
                       " needs more than 8 GiB; lower --shard-tokens",
                       N, k);
    c->zcap = compressBound((uLong)c->raw_cap);
    c->logits = malloc((size_t)c->L * c->n_vocab * sizeof *c->logits);
    c->in_ids = malloc((size_t)N * sizeof *c->in_ids);
    c->top_ids = malloc((size_t)(N * k) * sizeof *c->top_ids);
    c->q = malloc((size_t)(N * k) * sizeof *c->q);
    c->q_tail = malloc((size_t)N * sizeof *c->q_tail);
    c->tmp16 = malloc((size_t)(N * k) * sizeof *c->tmp16);
    c->raw = malloc((size_t)c->raw_cap);
    c->zbuf = malloc((size_t)c->zcap);
    c->scr = calloc((size_t)c->n_threads, sizeof *c->scr);
    if (!c->logits || !c->in_ids || !c->top_ids || !c->q || !c->q_tail || !c->tmp16 || !c->raw ||
        !c->zbuf || !c->scr)
        return ec_fail(d, EC_ERR_NOMEM, "distill-export: cannot allocate shard buffers");
    for (int i = 0; i < c->n_threads; i++) {
        c->scr[i].heap = malloc((size_t)k * sizeof *c->scr[i].heap);
        c->scr[i].in_top = malloc(c->n_vocab);
        if (!c->scr[i].heap || !c->scr[i].in_top)
            return ec_fail(d, EC_ERR_NOMEM, "distill-export: cannot allocate scratch");
    }
    return EC_OK;
}

enum ec_status ec_distill_export(const struct ec_distill_opts *o, struct ec_distill_result *r,
                                 struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    struct ctx c;
    memset(&c, 0, sizeof c);
    memset(r, 0, sizeof *r);
    c.o = o;
    c.dir_fd = -1;
    struct shard_final *fin = NULL;
    char *spath = NULL;

    if (!o->teacher_path || !o->out_dir || (!o->text_path == !o->tokens_path))
        return ec_fail(d, EC_ERR_ARG, "distill-export: need a teacher, an output folder and "
                                      "exactly one of a text and a token file");
    if (o->seq_len < 2 || o->seq_len > (1u << 20))
        return ec_fail(d, EC_ERR_ARG, "distill-export: seq_len %" PRIu32 " outside 2..1048576",
                       o->seq_len);
    if (!(o->temperature > 0) || !isfinite(o->temperature))
        return ec_fail(d, EC_ERR_ARG, "distill-export: temperature %g must be > 0",
                       o->temperature);
    if (o->top_k < 1 || o->top_k > EC_DISTILL_MAX_TOP_K)
        return ec_fail(d, EC_ERR_ARG, "distill-export: top_k %" PRIu32 " outside 1..%d",
                       o->top_k, EC_DISTILL_MAX_TOP_K);
    if (o->shard_tokens % o->seq_len != 0)
        return ec_fail(d, EC_ERR_ARG,
                       "distill-export: shard tokens %" PRIu64 " must be a multiple of seq_len %" PRIu32,
                       o->shard_tokens, o->seq_len);
    if (o->max_seqs < 0 || (o->zlib_level < 0 || o->zlib_level > 9))
        return ec_fail(d, EC_ERR_ARG, "distill-export: max_seqs or zlib level out of range");
    c.L = o->seq_len;
    c.k = o->top_k;
    c.n_threads = 1;
#ifdef _OPENMP
    c.n_threads = o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
#endif

    if ((st = ec_model_open(&c.m, o->teacher_path, d)) != EC_OK)
        return st;
    c.n_vocab = c.m.hp.n_vocab;
    if (c.k > c.n_vocab) {
        st = ec_fail(d, EC_ERR_ARG, "distill-export: top_k %" PRIu32 " exceeds the vocabulary of %"
                     PRIu32, c.k, c.n_vocab);
        goto out;
    }
    c.id_bytes = c.n_vocab <= 65536 ? 2 : 4;
    if (!(c.teacher_files = cJSON_CreateArray())) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = teacher_hash(o->teacher_path, c.teacher_sha, c.teacher_files, d)) != EC_OK ||
        (st = read_input(o, &c.m, &c.tokens, &c.n_text_tokens, c.input_sha, d)) != EC_OK)
        goto out;
    for (int64_t i = 0; i < c.n_text_tokens; i++) {
        if (c.tokens[i] < 0 || (uint32_t)c.tokens[i] >= c.n_vocab) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: token %" PRId64 " has id %" PRId32
                         " outside the teacher's vocabulary of %" PRIu32,
                         o->tokens_path ? o->tokens_path : o->text_path, i, c.tokens[i],
                         c.n_vocab);
            goto out;
        }
    }
    c.n_seqs = (uint64_t)c.n_text_tokens / c.L;
    if (o->max_seqs > 0 && (uint64_t)o->max_seqs < c.n_seqs)
        c.n_seqs = (uint64_t)o->max_seqs;
    if (c.n_seqs == 0) {
        st = ec_fail(d, EC_ERR_ARG, "%s: %" PRId64 " tokens, fewer than one sequence of %" PRIu32,
                     o->tokens_path ? o->tokens_path : o->text_path, c.n_text_tokens, c.L);
        goto out;
    }
    uint64_t shard_tokens = o->shard_tokens;
    if (shard_tokens == 0) {
        uint64_t n = (DEFAULT_SHARD_TOKENS + c.L / 2) / c.L;
        shard_tokens = (n ? n : 1) * c.L;
    }
    c.seqs_per_shard = shard_tokens / c.L;
    if (c.seqs_per_shard > UINT32_MAX) {
        st = ec_fail(d, EC_ERR_ARG, "distill-export: too many sequences per shard");
        goto out;
    }
    c.n_shards = (uint32_t)((c.n_seqs + c.seqs_per_shard - 1) / c.seqs_per_shard);
    if (c.n_shards > 99999) {
        st = ec_fail(d, EC_ERR_ARG, "distill-export: %" PRIu32 " shards, at most 99999: raise "
                     "--shard-tokens", c.n_shards);
        goto out;
    }
    c.args = build_args(&c);
    char *ajs = c.args ? cJSON_PrintUnformatted(c.args) : NULL;
    if (!ajs) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out;
    }
    struct ec_sha256 h;
    ec_sha256_init(&h);
    ec_sha256_update(&h, ajs, strlen(ajs));
    ec_sha256_final(&h, c.fp);
    ec_sha256_to_hex(c.fp, c.fp_hex);
    cJSON_free(ajs);

    /* the folder: create, lock, check what is there */
    if (!ec_path_is_dir(o->out_dir) && mkdir(o->out_dir, 0777) != 0 && errno != EEXIST) {
        st = ec_fail(d, EC_ERR_IO, "%s: cannot create the folder: %s", o->out_dir,
                     strerror(errno));
        goto out;
    }
    c.dir_fd = open(o->out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c.dir_fd < 0) {
        st = ec_fail(d, EC_ERR_IO, "%s: cannot open the folder: %s", o->out_dir, strerror(errno));
        goto out;
    }
    if (flock(c.dir_fd, LOCK_EX | LOCK_NB) != 0) {
        st = ec_fail(d, EC_ERR_IO, "%s: another edgec distill-export is writing this folder",
                     o->out_dir);
        goto out;
    }
    if ((st = check_existing(&c, d)) != EC_OK || (st = clean_dir(&c, d)) != EC_OK)
        goto out;

    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = c.L;
    eo.n_threads = o->n_threads;
    eo.kv_f16 = !o->kv_f32;
    if ((st = ec_engine_new(&c.e, &c.m, &eo, d)) != EC_OK || (st = alloc_buffers(&c, d)) != EC_OK)
        goto out;
    r->text_tokens = (uint64_t)c.n_text_tokens;
    r->n_seqs = c.n_seqs;
    r->n_tokens = c.n_seqs * c.L;
    r->n_shards = c.n_shards;

    /* the manifest goes first: it carries the fingerprint a resumed run checks */
    if ((st = write_manifest(&c, NULL, NULL, d)) != EC_OK)
        goto out;

    c.pr = (struct ec_distill_progress){.tokens_total = r->n_tokens, .n_shards = c.n_shards};
    const double t0 = ec_now_seconds();
    for (uint32_t i = 0; i < c.n_shards; i++) {
        char name[32];
        ec_distill_shard_name(i, name, sizeof name);
        free(spath);
        if (!(spath = ec_path_join(o->out_dir, name))) {
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
        struct ec_distill_shard_expect ex;
        shard_expect(&c, i, &ex);
        uint64_t nt = (uint64_t)ex.n_seqs * c.L;
        if (shard_ok(&c, i, spath)) {
            r->n_shards_reused++;
            c.pr.tokens_reused += nt;
            c.pr.tokens_done += nt;
        } else if ((st = write_shard(&c, i, spath, &r->tokens_evaluated, d)) != EC_OK) {
            goto out;
        }
        c.pr.shards_done = i + 1;
        if (o->on_progress)
            o->on_progress(o->user, &c.pr);
    }
    r->seconds = ec_now_seconds() - t0;

    /* final manifest from the files as they are on disk */
    if (!(fin = calloc(c.n_shards, sizeof *fin))) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < c.n_shards; i++) {
        char name[32];
        ec_distill_shard_name(i, name, sizeof name);
        free(spath);
        if (!(spath = ec_path_join(o->out_dir, name))) {
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
        struct ec_mapped_file mf;
        if ((st = ec_mapped_file_open(&mf, spath, d)) != EC_OK)
            goto out;
        struct ec_distill_shard_expect ex;
        shard_expect(&c, i, &ex);
        st = ec_distill_shard_decode(mf.data, (size_t)mf.size_bytes, spath, &ex, NULL, d);
        if (st == EC_OK) {
            fin[i].bytes = mf.size_bytes;
            fin[i].crc = ec_get_u32le(mf.data + 64);
            ec_sha256_hex(mf.data, (size_t)mf.size_bytes, fin[i].sha);
            r->shard_bytes += mf.size_bytes;
        }
        ec_mapped_file_close(&mf);
        if (st != EC_OK)
            goto out;
    }
    uint64_t mbytes = 0;
    if ((st = write_manifest(&c, fin, &mbytes, d)) != EC_OK)
        goto out;
    r->total_bytes = r->shard_bytes + mbytes;
out:
    free(spath);
    free(fin);
    ctx_release(&c);
    return st;
}
