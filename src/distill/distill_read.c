/* Reading and verifying edgec-distill exports (layout in edgec/distill.h and
 * docs/distill-format.md). Every length read from a file is checked before it
 * is used: these readers are fuzz targets. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "distill_priv.h"
#include "edgec/io.h"
#include "edgec/sha256.h"

#define MANIFEST_MAX_BYTES (64ull << 20)
/* refuse to inflate shards larger than this (a limit, not a format rule) */
#define PAYLOAD_MAX_BYTES (16ull << 30)

uint64_t ec_distill_payload_bytes(uint64_t n_tokens, uint32_t top_k, uint32_t id_bytes)
{
    /* per token: (1 + k) ids, k + 1 u16 (q_top, k-1 deltas, q_tail) */
    uint64_t per = (uint64_t)id_bytes * (1 + (uint64_t)top_k) + 2 * ((uint64_t)top_k + 1);
    if (n_tokens != 0 && per > UINT64_MAX / n_tokens)
        return 0;
    return n_tokens * per;
}

void ec_distill_shard_name(uint32_t index, char *buf, size_t cap)
{
    snprintf(buf, cap, "shard-%05" PRIu32 ".ecds", index);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool ec_distill_hex_decode(const char *hex, uint8_t out[32])
{
    if (!hex || strlen(hex) != 64)
        return false;
    for (int i = 0; i < 32; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return false;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return true;
}

void ec_distill_records_release(struct ec_distill_records *r)
{
    if (!r)
        return;
    free(r->input_ids);
    free(r->topk_ids);
    free(r->logp);
    free(r->tail_logp);
    memset(r, 0, sizeof *r);
}

/* element i of a byte-shuffled array of n elements of w bytes */
static uint32_t unshuffle_at(const uint8_t *a, uint64_t n, uint32_t w, uint64_t i)
{
    uint32_t v = 0;
    for (uint32_t b = 0; b < w; b++)
        v |= (uint32_t)a[b * n + i] << (8 * b);
    return v;
}

enum ec_status ec_distill_shard_decode(const uint8_t *buf, size_t n, const char *name,
                                       const struct ec_distill_shard_expect *ex,
                                       struct ec_distill_records *rec, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    uint8_t *raw = NULL;
    if (rec)
        memset(rec, 0, sizeof *rec);
    if (n < EC_DISTILL_HEADER_BYTES)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header",
                       name, n, EC_DISTILL_HEADER_BYTES);
    if (memcmp(buf, EC_DISTILL_MAGIC, 4) != 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: magic is not \"ECDS\"", name);
    uint32_t version = ec_get_u32le(buf + 4);
    if (version != EC_DISTILL_VERSION)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: at byte 4: version %" PRIu32 ", expected %d",
                       name, version, EC_DISTILL_VERSION);
    uint32_t hbytes = ec_get_u32le(buf + 8);
    if (hbytes != EC_DISTILL_HEADER_BYTES)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte 8: header size %" PRIu32 ", expected %d",
                       name, hbytes, EC_DISTILL_HEADER_BYTES);
    uint32_t hcrc = (uint32_t)crc32(0L, buf, 104);
    if (ec_get_u32le(buf + 104) != hcrc)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 104: header crc32 %08" PRIx32 " does not match the header "
                       "(%08" PRIx32 ")",
                       name, ec_get_u32le(buf + 104), hcrc);
    if (ec_get_u32le(buf + 68) != 0 || ec_get_u32le(buf + 108) != 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %d: reserved bytes are not zero", name,
                       ec_get_u32le(buf + 68) != 0 ? 68 : 108);
    const uint32_t index = ec_get_u32le(buf + 12), n_seqs = ec_get_u32le(buf + 24);
    const uint64_t first_seq = ec_get_u64le(buf + 16);
    const uint32_t seq_len = ec_get_u32le(buf + 28), top_k = ec_get_u32le(buf + 32);
    const uint32_t id_bytes = ec_get_u32le(buf + 36), steps = ec_get_u32le(buf + 40);
    const uint32_t n_vocab = ec_get_u32le(buf + 44);
    const uint64_t raw_bytes = ec_get_u64le(buf + 48), stored = ec_get_u64le(buf + 56);
    const uint32_t pcrc = ec_get_u32le(buf + 64);
    struct {
        const char *what;
        unsigned off;
        uint64_t got, want;
    } checks[] = {
        {"shard index", 12, index, ex->index},
        {"first sequence", 16, first_seq, ex->first_seq},
        {"sequence count", 24, n_seqs, ex->n_seqs},
        {"seq_len", 28, seq_len, ex->seq_len},
        {"top_k", 32, top_k, ex->top_k},
        {"id bytes", 36, id_bytes, ex->id_bytes},
        {"steps per nat", 40, steps, EC_DISTILL_STEPS_PER_NAT},
        {"n_vocab", 44, n_vocab, ex->n_vocab},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (checks[i].got != checks[i].want)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: at byte %u: %s is %" PRIu64 ", the manifest says %" PRIu64, name,
                           checks[i].off, checks[i].what, checks[i].got, checks[i].want);
    if (ex->fingerprint && memcmp(buf + 72, ex->fingerprint, 32) != 0)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 72: fingerprint belongs to another export", name);
    if ((id_bytes != 2 && id_bytes != 4) || (id_bytes == 2 && n_vocab > 65536) || n_vocab == 0 ||
        top_k == 0 || top_k > n_vocab || top_k > EC_DISTILL_MAX_TOP_K || seq_len == 0)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: inconsistent header: id bytes %" PRIu32 ", n_vocab %" PRIu32
                       ", top_k %" PRIu32 ", seq_len %" PRIu32,
                       name, id_bytes, n_vocab, top_k, seq_len);
    const uint64_t n_tok = (uint64_t)n_seqs * seq_len;
    const uint64_t want_raw = ec_distill_payload_bytes(n_tok, top_k, id_bytes);
    if (want_raw == 0 || raw_bytes != want_raw)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 48: payload size %" PRIu64 ", expected %" PRIu64
                       " for %" PRIu64 " records",
                       name, raw_bytes, want_raw, n_tok);
    if (raw_bytes > PAYLOAD_MAX_BYTES)
        return ec_fail(d, EC_ERR_NOMEM, "%s: payload of %" PRIu64 " bytes exceeds the limit", name,
                       raw_bytes);
    if (stored != (uint64_t)n - EC_DISTILL_HEADER_BYTES)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 56: header says %" PRIu64 " stored bytes, the file holds %" PRIu64
                       " after the header (truncated or extended)",
                       name, stored, (uint64_t)n - EC_DISTILL_HEADER_BYTES);
    const uint8_t *zs = buf + EC_DISTILL_HEADER_BYTES;
    uint32_t c = (uint32_t)crc32(0L, zs, (uInt)0);
    /* crc32 takes uInt lengths: feed in 1 GiB pieces */
    for (uint64_t o = 0; o < stored;) {
        uint64_t piece = stored - o < (1u << 30) ? stored - o : (1u << 30);
        c = (uint32_t)crc32(c, zs + o, (uInt)piece);
        o += piece;
    }
    if (c != pcrc)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte %d: crc32 of the stored data is %08" PRIx32
                       ", the header says %08" PRIx32,
                       name, EC_DISTILL_HEADER_BYTES, c, pcrc);
    raw = malloc(raw_bytes ? (size_t)raw_bytes : 1);
    if (!raw)
        return ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %" PRIu64 " bytes", name, raw_bytes);
    uLongf dlen = (uLongf)raw_bytes;
    uLong slen = (uLong)stored;
    int zr = uncompress2(raw, &dlen, zs, &slen);
    if (zr != Z_OK || dlen != raw_bytes || slen != stored) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: at byte %d: zlib stream does not inflate to %" PRIu64
                     " bytes (zlib %d, got %lu bytes from %lu of %" PRIu64 ")",
                     name, EC_DISTILL_HEADER_BYTES, raw_bytes, zr, (unsigned long)dlen,
                     (unsigned long)slen, stored);
        goto out_free;
    }

    const uint64_t nk = n_tok * top_k;
    const uint8_t *a_in = raw;
    const uint8_t *a_ids = a_in + n_tok * id_bytes;
    const uint8_t *a_top = a_ids + nk * id_bytes;
    const uint8_t *a_del = a_top + n_tok * 2;
    const uint8_t *a_tail = a_del + n_tok * (top_k - 1) * 2;
    if (rec) {
        rec->n_tokens = n_tok;
        rec->top_k = top_k;
        rec->input_ids = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *rec->input_ids);
        rec->topk_ids = malloc((size_t)(nk ? nk : 1) * sizeof *rec->topk_ids);
        rec->logp = malloc((size_t)(nk ? nk : 1) * sizeof *rec->logp);
        rec->tail_logp = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *rec->tail_logp);
        if (!rec->input_ids || !rec->topk_ids || !rec->logp || !rec->tail_logp) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %" PRIu64 " records", name, n_tok);
            goto out_free;
        }
    }
    const double step = 1.0 / EC_DISTILL_STEPS_PER_NAT;
    for (uint64_t t = 0; t < n_tok; t++) {
        uint32_t in = unshuffle_at(a_in, n_tok, id_bytes, t);
        if (in >= n_vocab) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: record %" PRIu64 ": input id %" PRIu32
                         " outside the vocabulary of %" PRIu32, name, t, in, n_vocab);
            goto out_free;
        }
        uint32_t q = unshuffle_at(a_top, n_tok, 2, t);
        for (uint32_t j = 0; j < top_k; j++) {
            uint64_t e = t * top_k + j;
            uint32_t id = unshuffle_at(a_ids, nk, id_bytes, e);
            if (id >= n_vocab) {
                st = ec_fail(d, EC_ERR_FORMAT, "%s: record %" PRIu64 " rank %" PRIu32
                             ": token id %" PRIu32 " outside the vocabulary of %" PRIu32,
                             name, t, j, id, n_vocab);
                goto out_free;
            }
            if (j > 0) {
                q += unshuffle_at(a_del, n_tok * (top_k - 1), 2, t * (top_k - 1) + j - 1);
                if (q > EC_DISTILL_Q_MAX) {
                    st = ec_fail(d, EC_ERR_FORMAT, "%s: record %" PRIu64 " rank %" PRIu32
                                 ": log-probability offsets sum past %u", name, t, j,
                                 EC_DISTILL_Q_MAX);
                    goto out_free;
                }
            }
            if (rec) {
                rec->topk_ids[e] = (int32_t)id;
                rec->logp[e] = -(double)q * step;
            }
        }
        if (rec) {
            rec->input_ids[t] = (int32_t)in;
            rec->tail_logp[t] = -(double)unshuffle_at(a_tail, n_tok, 2, t) * step;
        }
    }
out_free:
    free(raw);
    if (st != EC_OK && rec)
        ec_distill_records_release(rec);
    return st;
}

/* ---- manifest ---- */

void ec_distill_manifest_release(struct ec_distill_manifest *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; m->shards && i < m->n_shards; i++)
        free(m->shards[i].file);
    free(m->shards);
    free(m->dir);
    free(m->teacher_path);
    free(m->teacher_name);
    free(m->teacher_arch);
    free(m->teacher_sha256);
    free(m->tokenizer_type);
    free(m->fingerprint);
    memset(m, 0, sizeof *m);
}

bool ec_distill_is_export(const char *dir)
{
    char *p = ec_path_join(dir, EC_DISTILL_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    bool yes = false;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (p && ec_path_exists(p) && ec_read_file(p, MANIFEST_MAX_BYTES, &text, &len, &d) == EC_OK) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
        yes = cJSON_IsString(f) && strcmp(f->valuestring, EC_DISTILL_FORMAT) == 0;
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return yes;
}

struct jctx {
    const char *path;
    struct ec_diag *d;
};

static enum ec_status jnum(const struct jctx *c, const cJSON *o, const char *where, const char *key,
                           uint64_t max, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return ec_fail(c->d, EC_ERR_FORMAT, "%s: %s'%s': missing or not a number", c->path, where,
                       key);
    double x = v->valuedouble;
    if (!(x >= 0) || x > (double)max || x != floor(x))
        return ec_fail(c->d, EC_ERR_FORMAT,
                       "%s: %s'%s': %.17g is not an integer in 0..%" PRIu64, c->path, where, key,
                       x, max);
    *out = (uint64_t)x;
    return EC_OK;
}

static enum ec_status jstr(const struct jctx *c, const cJSON *o, const char *where, const char *key,
                           char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return ec_fail(c->d, EC_ERR_FORMAT, "%s: %s'%s': missing or not a string", c->path, where,
                       key);
    *out = strdup(v->valuestring);
    if (!*out)
        return ec_fail(c->d, EC_ERR_NOMEM, "%s: out of memory", c->path);
    return EC_OK;
}

static bool is_hex64(const char *s)
{
    uint8_t tmp[32];
    return ec_distill_hex_decode(s, tmp);
}

enum ec_status ec_distill_manifest_load(struct ec_distill_manifest *m, const char *dir,
                                        struct ec_diag *d)
{
    memset(m, 0, sizeof *m);
    char *path = ec_path_join(dir, EC_DISTILL_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    enum ec_status st = ec_read_file(path, MANIFEST_MAX_BYTES, &text, &len, d);
    if (st == EC_OK)
        st = ec_distill_manifest_parse(m, dir, text, len, d);
    free(text);
    free(path);
    return st;
}

enum ec_status ec_distill_manifest_parse(struct ec_distill_manifest *m, const char *dir,
                                         const char *text, size_t len, struct ec_diag *d)
{
    memset(m, 0, sizeof *m);
    char *path = ec_path_join(dir, EC_DISTILL_MANIFEST);
    cJSON *j = NULL;
    enum ec_status st = EC_OK;
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    struct jctx c = {.path = path, .d = d};
    j = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(j)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: not a JSON object", path);
        goto out_free;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, EC_DISTILL_FORMAT) != 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: 'format' is not \"%s\"", path, EC_DISTILL_FORMAT);
        goto out_free;
    }
    uint64_t v = 0;
    if ((st = jnum(&c, j, "", "version", UINT32_MAX, &v)) != EC_OK)
        goto out_free;
    if (v != EC_DISTILL_VERSION) {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: 'version' %" PRIu64 ", this edgec reads %d", path,
                     v, EC_DISTILL_VERSION);
        goto out_free;
    }
    const cJSON *cpl = cJSON_GetObjectItemCaseSensitive(j, "complete");
    m->complete = cJSON_IsTrue(cpl);
    if (!m->complete) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: the export is incomplete (an interrupted run): rerun edgec "
                     "distill-export with the same arguments to finish it",
                     path);
        goto out_free;
    }
    if (!(m->dir = strdup(dir))) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_free;
    }
    const cJSON *teacher = cJSON_GetObjectItemCaseSensitive(j, "teacher");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "tokenizer");
    if (!cJSON_IsObject(teacher) || !cJSON_IsObject(tok)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: 'teacher' and 'tokenizer' must be objects", path);
        goto out_free;
    }
    uint64_t n_vocab, top_k, seq_len, id_bytes, steps, shard_tokens, n_seqs, n_tokens;
    if ((st = jstr(&c, teacher, "teacher.", "path", &m->teacher_path)) ||
        (st = jstr(&c, teacher, "teacher.", "name", &m->teacher_name)) ||
        (st = jstr(&c, teacher, "teacher.", "architecture", &m->teacher_arch)) ||
        (st = jstr(&c, teacher, "teacher.", "sha256", &m->teacher_sha256)) ||
        (st = jstr(&c, tok, "tokenizer.", "type", &m->tokenizer_type)) ||
        (st = jstr(&c, j, "", "fingerprint", &m->fingerprint)) ||
        (st = jnum(&c, j, "", "n_vocab", UINT32_MAX, &n_vocab)) ||
        (st = jnum(&c, j, "", "top_k", EC_DISTILL_MAX_TOP_K, &top_k)) ||
        (st = jnum(&c, j, "", "seq_len", UINT32_MAX, &seq_len)) ||
        (st = jnum(&c, j, "", "id_bytes", 4, &id_bytes)) ||
        (st = jnum(&c, j, "", "steps_per_nat", UINT32_MAX, &steps)) ||
        (st = jnum(&c, j, "", "shard_tokens", UINT64_C(1) << 40, &shard_tokens)) ||
        (st = jnum(&c, j, "", "n_seqs", UINT32_MAX, &n_seqs)) ||
        (st = jnum(&c, j, "", "n_tokens", UINT64_C(1) << 52, &n_tokens)))
        goto out_free;
    const cJSON *temp = cJSON_GetObjectItemCaseSensitive(j, "temperature");
    if (!cJSON_IsNumber(temp) || !(temp->valuedouble > 0) || !isfinite(temp->valuedouble)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: 'temperature' missing or not a positive number", path);
        goto out_free;
    }
    m->temperature = temp->valuedouble;
    if (!is_hex64(m->fingerprint) || !is_hex64(m->teacher_sha256)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: 'fingerprint' and 'teacher.sha256' must be 64 hex "
                     "digits", path);
        goto out_free;
    }
    if (n_vocab == 0 || top_k == 0 || top_k > n_vocab || seq_len < 2 ||
        (id_bytes != 2 && id_bytes != 4) || (id_bytes == 2 && n_vocab > 65536) ||
        steps != EC_DISTILL_STEPS_PER_NAT || shard_tokens == 0 || shard_tokens % seq_len != 0 ||
        n_tokens != n_seqs * seq_len) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: inconsistent counts: n_vocab %" PRIu64 ", top_k %" PRIu64
                     ", seq_len %" PRIu64 ", id_bytes %" PRIu64 ", steps_per_nat %" PRIu64
                     ", shard_tokens %" PRIu64 ", n_seqs %" PRIu64 ", n_tokens %" PRIu64,
                     path, n_vocab, top_k, seq_len, id_bytes, steps, shard_tokens, n_seqs,
                     n_tokens);
        goto out_free;
    }
    m->n_vocab = (uint32_t)n_vocab;
    m->top_k = (uint32_t)top_k;
    m->seq_len = (uint32_t)seq_len;
    m->id_bytes = (uint32_t)id_bytes;
    m->steps_per_nat = (uint32_t)steps;
    m->shard_tokens = shard_tokens;
    m->n_seqs = n_seqs;
    m->n_tokens = n_tokens;
    const uint64_t seqs_per_shard = shard_tokens / seq_len;

    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(j, "shards");
    int ns = cJSON_GetArraySize(shards);
    uint64_t want_shards = (n_seqs + seqs_per_shard - 1) / seqs_per_shard;
    if (!cJSON_IsArray(shards) || (uint64_t)ns != want_shards) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: 'shards': %d entries, expected %" PRIu64 " for %" PRIu64
                     " sequences of %" PRIu64 " per shard",
                     path, cJSON_IsArray(shards) ? ns : -1, want_shards, n_seqs, seqs_per_shard);
        goto out_free;
    }
    m->shards = calloc((size_t)(ns ? ns : 1), sizeof *m->shards);
    if (!m->shards) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
        goto out_free;
    }
    m->n_shards = (uint32_t)ns;
    uint64_t seq = 0;
    for (int i = 0; i < ns; i++) {
        const cJSON *s = cJSON_GetArrayItem(shards, i);
        struct ec_distill_shard_info *si = &m->shards[i];
        char where[48];
        snprintf(where, sizeof where, "shards[%d].", i);
        uint64_t idx, fs, nsq, nt, bytes, crc;
        char *sha = NULL;
        if (!cJSON_IsObject(s)) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: 'shards[%d]' is not an object", path, i);
            goto out_free;
        }
        if ((st = jstr(&c, s, where, "file", &si->file)) ||
            (st = jnum(&c, s, where, "index", UINT32_MAX, &idx)) ||
            (st = jnum(&c, s, where, "first_seq", UINT32_MAX, &fs)) ||
            (st = jnum(&c, s, where, "n_seqs", UINT32_MAX, &nsq)) ||
            (st = jnum(&c, s, where, "n_tokens", UINT64_C(1) << 52, &nt)) ||
            (st = jnum(&c, s, where, "bytes", UINT64_C(1) << 52, &bytes)) ||
            (st = jnum(&c, s, where, "crc32", UINT32_MAX, &crc)) ||
            (st = jstr(&c, s, where, "sha256", &sha)))
            goto out_free;
        bool sha_ok = is_hex64(sha);
        if (sha_ok)
            memcpy(si->sha256, sha, 65);
        free(sha);
        char want_name[32];
        ec_distill_shard_name((uint32_t)i, want_name, sizeof want_name);
        uint64_t want_nsq = n_seqs - seq < seqs_per_shard ? n_seqs - seq : seqs_per_shard;
        if (!sha_ok || strcmp(si->file, want_name) != 0 || idx != (uint64_t)i || fs != seq ||
            nsq != want_nsq || nt != nsq * seq_len ||
            bytes < EC_DISTILL_HEADER_BYTES) {
            st = ec_fail(d, EC_ERR_FORMAT,
                         "%s: 'shards[%d]': expected file %s, index %d, first_seq %" PRIu64
                         ", n_seqs %" PRIu64 ", n_tokens %" PRIu64
                         ", bytes >= %d and a sha256; found %s, %" PRIu64 ", %" PRIu64
                         ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "%s",
                         path, i, want_name, i, seq, want_nsq, want_nsq * seq_len,
                         EC_DISTILL_HEADER_BYTES, si->file, idx, fs, nsq, nt, bytes,
                         sha_ok ? "" : ", bad sha256");
            goto out_free;
        }
        si->index = (uint32_t)idx;
        si->first_seq = fs;
        si->n_seqs = (uint32_t)nsq;
        si->n_tokens = nt;
        si->bytes = bytes;
        si->crc32 = (uint32_t)crc;
        seq += nsq;
    }
out_free:
    cJSON_Delete(j);
    free(path);
    if (st != EC_OK)
        ec_distill_manifest_release(m);
    return st;
}

enum ec_status ec_distill_shard_read(const struct ec_distill_manifest *m, uint32_t i,
                                     struct ec_distill_records *rec, struct ec_diag *d)
{
    if (i >= m->n_shards)
        return ec_fail(d, EC_ERR_ARG, "%s: no shard %" PRIu32 " (the export has %" PRIu32 ")",
                       m->dir, i, m->n_shards);
    const struct ec_distill_shard_info *si = &m->shards[i];
    char *path = ec_path_join(m->dir, si->file);
    if (!path)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    struct ec_mapped_file mf;
    enum ec_status st = ec_mapped_file_open(&mf, path, d);
    if (st != EC_OK)
        goto out_free;
    if (mf.size_bytes != si->bytes) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, path,
                     mf.size_bytes, si->bytes);
        goto out_close;
    }
    if (mf.size_bytes >= EC_DISTILL_HEADER_BYTES && ec_get_u32le(mf.data + 64) != si->crc32) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: at byte 64: crc32 %08" PRIx32 ", the manifest says %08" PRIx32, path,
                     ec_get_u32le(mf.data + 64), si->crc32);
        goto out_close;
    }
    char hex[65];
    ec_sha256_hex(mf.data, (size_t)mf.size_bytes, hex);
    if (strcmp(hex, si->sha256) != 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: sha256 %s, the manifest says %s", path, hex,
                     si->sha256);
        goto out_close;
    }
    uint8_t fp[32];
    ec_distill_hex_decode(m->fingerprint, fp);
    struct ec_distill_shard_expect ex = {
        .index = i,
        .first_seq = si->first_seq,
        .n_seqs = si->n_seqs,
        .seq_len = m->seq_len,
        .top_k = m->top_k,
        .id_bytes = m->id_bytes,
        .n_vocab = m->n_vocab,
        .fingerprint = fp,
    };
    st = ec_distill_shard_decode(mf.data, (size_t)mf.size_bytes, path, &ex, rec, d);
out_close:
    ec_mapped_file_close(&mf);
out_free:
    free(path);
    return st;
}

enum ec_status ec_distill_verify(const char *dir, struct ec_distill_manifest *m, struct ec_diag *d)
{
    enum ec_status st = ec_distill_manifest_load(m, dir, d);
    if (st != EC_OK)
        return st;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        if ((st = ec_distill_shard_read(m, i, NULL, d)) != EC_OK) {
            ec_distill_manifest_release(m);
            return st;
        }
    }
    return EC_OK;
}
