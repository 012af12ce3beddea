/* Tests for edgec distill-export: stored top-k log-probabilities against the
 * engine's own softmax, determinism, resuming, refusal of other arguments, and
 * malformed shards and manifests. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "common.h"
#include "edgec/distill.h"
#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"

#define TEACHER "models/stories-student-256"
#define TEXT "data/tinystories_heldout.txt"
/* the stored grid is 1/256 nat: rounding error at most half a step, plus
 * float noise of an independent log-sum-exp */
#define GRID_TOL (0.5 / 256 + 1e-9)

struct paths {
    char *teacher, *text;
};

static bool get_paths(struct paths *p)
{
    p->teacher = ec_test_shared(TEACHER);
    if (!p->teacher)
        return false;
    p->text = ec_test_shared(TEXT);
    return p->text != NULL;
}

static void free_paths(struct paths *p)
{
    free(p->teacher);
    free(p->text);
}

static enum ec_status run_export(const struct paths *p, const char *dir, uint32_t L, uint32_t k,
                                 double T, int64_t seqs, uint64_t shard_tokens, int threads,
                                 bool force, struct ec_distill_result *r, struct ec_diag *d)
{
    struct ec_distill_opts o;
    ec_distill_opts_init(&o);
    o.teacher_path = p->teacher;
    o.text_path = p->text;
    o.out_dir = dir;
    o.seq_len = L;
    o.top_k = k;
    o.temperature = T;
    o.max_seqs = seqs;
    o.shard_tokens = shard_tokens;
    o.n_threads = threads;
    o.force = force;
    ec_diag_clear(d);
    return ec_distill_export(&o, r, d);
}

static char *read_whole(const char *path, size_t *n)
{
    char *buf = NULL;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_read_file(path, 1ull << 30, &buf, n, &d), EC_OK, "%s", d.msg);
    return buf;
}

static void write_whole(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static char *join(const char *dir, const char *name)
{
    char *p = ec_path_join(dir, name);
    cr_assert_not_null(p);
    return p;
}

/* every regular file of a and b equal, same names */
static void assert_same_tree(const char *a, const char *b)
{
    DIR *da = opendir(a);
    cr_assert_not_null(da);
    struct dirent *de;
    int n_a = 0;
    while ((de = readdir(da)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n_a++;
        char *pa = join(a, de->d_name), *pb = join(b, de->d_name);
        size_t la, lb;
        char *ba = read_whole(pa, &la), *bb = read_whole(pb, &lb);
        cr_assert(la == lb && memcmp(ba, bb, la) == 0, "%s and %s differ", pa, pb);
        free(ba);
        free(bb);
        free(pa);
        free(pb);
    }
    closedir(da);
    DIR *db = opendir(b);
    int n_b = 0;
    while ((de = readdir(db)) != NULL)
        n_b += de->d_name[0] != '.';
    closedir(db);
    cr_assert_eq(n_a, n_b, "%s has %d files, %s has %d", a, n_a, b, n_b);
}

static void rm_tree(char *dir)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char *p = join(dir, de->d_name);
            unlink(p);
            free(p);
        }
        closedir(dp);
    }
    rmdir(dir);
    free(dir);
}

/* Re-run the teacher on every stored sequence and compare each position's
 * stored ids, log-probabilities and tail mass with an independent long-double
 * log_softmax(logits / T) of the engine's logits. */
static void check_against_engine(const struct paths *p, const char *dir, double T)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_distill_manifest man;
    cr_assert_eq(ec_distill_verify(dir, &man, &d), EC_OK, "%s", d.msg);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, p->teacher, &d), EC_OK, "%s", d.msg);
    /* tokens as edgec perplexity makes them */
    size_t len;
    char *text = read_whole(p->text, &len);
    if (len && text[len - 1] == '\n')
        text[--len] = '\0';
    struct ec_tokenizer *tk;
    cr_assert_eq(ec_tokenizer_new(&tk, &m.vocab, &d), EC_OK, "%s", d.msg);
    int32_t *ids;
    size_t n_ids;
    cr_assert_eq(ec_tokenizer_encode(tk, text, len, true, false, &ids, &n_ids, &d), EC_OK);
    const uint32_t L = man.seq_len, k = man.top_k, nv = man.n_vocab;
    cr_assert_eq(nv, m.hp.n_vocab);
    cr_assert_eq(man.n_tokens, man.n_seqs * L);

    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = L;
    struct ec_engine *e;
    cr_assert_eq(ec_engine_new(&e, &m, &eo, &d), EC_OK, "%s", d.msg);
    float *logits = malloc((size_t)L * nv * sizeof *logits);
    long double *lp = malloc(nv * sizeof *lp);
    int32_t *win = malloc(L * sizeof *win);
    uint8_t *seen = malloc(nv);
    double worst = 0;
    uint64_t n_checked = 0;
    for (uint32_t s = 0; s < man.n_shards; s++) {
        struct ec_distill_records rec;
        cr_assert_eq(ec_distill_shard_read(&man, s, &rec, &d), EC_OK, "%s", d.msg);
        cr_assert_eq(rec.n_tokens, man.shards[s].n_tokens);
        for (uint32_t q = 0; q < man.shards[s].n_seqs; q++) {
            uint64_t seq = man.shards[s].first_seq + q;
            memcpy(win, ids + seq * L, L * sizeof *win);
            const int32_t bos = ec_vocab_chunk_bos(&m.vocab); /* as llama-perplexity's chunks */
            if (bos >= 0)
                win[0] = bos;
            ec_engine_reset(e);
            cr_assert_eq(ec_engine_eval(e, win, L, logits, 0, &d), EC_OK, "%s", d.msg);
            for (uint32_t i = 0; i < L; i++) {
                uint64_t t = (uint64_t)q * L + i;
                cr_assert_eq(rec.input_ids[t], win[i], "seq %llu pos %u: input id",
                             (unsigned long long)seq, i);
                const float *l = logits + (uint64_t)i * nv;
                long double mx = -INFINITY, sum = 0;
                for (uint32_t j = 0; j < nv; j++)
                    mx = fmaxl(mx, (long double)l[j] / T);
                for (uint32_t j = 0; j < nv; j++)
                    sum += expl((long double)l[j] / T - mx);
                for (uint32_t j = 0; j < nv; j++)
                    lp[j] = (long double)l[j] / T - mx - logl(sum);
                memset(seen, 0, nv);
                long double min_in = INFINITY, tail = 0;
                for (uint32_t j = 0; j < k; j++) {
                    int32_t id = rec.topk_ids[t * k + j];
                    cr_assert(id >= 0 && (uint32_t)id < nv);
                    cr_assert(!seen[id], "seq %llu pos %u: id %d twice", (unsigned long long)seq,
                              i, id);
                    seen[id] = 1;
                    double err = fabs(rec.logp[t * k + j] - (double)lp[id]);
                    worst = err > worst ? err : worst;
                    cr_assert(err <= GRID_TOL,
                              "seq %llu pos %u rank %u id %d: stored %.6f, engine %.6Lf",
                              (unsigned long long)seq, i, j, id, rec.logp[t * k + j], lp[id]);
                    if (j > 0)
                        cr_assert(rec.logp[t * k + j] <= rec.logp[t * k + j - 1]);
                    min_in = fminl(min_in, lp[id]);
                }
                for (uint32_t j = 0; j < nv; j++) {
                    if (seen[j])
                        continue;
                    cr_assert(lp[j] <= min_in, "seq %llu pos %u: id %u (%.6Lf) outside the "
                              "top-k but above its minimum %.6Lf", (unsigned long long)seq, i,
                              j, lp[j], min_in);
                    tail += expl(lp[j]);
                }
                if (tail > expl(-255.0L)) {
                    double err = fabs(rec.tail_logp[t] - (double)logl(tail));
                    cr_assert(err <= GRID_TOL, "seq %llu pos %u: tail log-mass %.6f, engine %.6Lf",
                              (unsigned long long)seq, i, rec.tail_logp[t], logl(tail));
                }
                n_checked++;
            }
        }
        ec_distill_records_release(&rec);
    }
    cr_log_info("%llu positions checked at T = %g, largest log-prob error %.6f nats (grid "
                "tolerance %.6f)",
                (unsigned long long)n_checked, T, worst, GRID_TOL);
    cr_assert_eq(n_checked, man.n_tokens);
    free(seen);
    free(win);
    free(lp);
    free(logits);
    ec_engine_free(e);
    free(ids);
    ec_tokenizer_free(tk);
    free(text);
    ec_model_close(&m);
    ec_distill_manifest_release(&man);
}

Test(distill, stored_logprobs_equal_engine_softmax_within_the_grid)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *dir = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, dir, 256, 64, 1.0, 6, 1024, 0, false, &r, &d), EC_OK, "%s",
                 d.msg);
    cr_assert_eq(r.n_tokens, 6 * 256);
    cr_assert_eq(r.n_shards, 2);
    double bpt = (double)r.shard_bytes / (double)r.n_tokens;
    printf("distill: 6 sequences of 256 at k = 64: %.2f bytes/token\n", bpt);
    cr_assert(bpt <= 150.0, "%.2f bytes per token exceeds 150", bpt);
    check_against_engine(&p, dir, 1.0);
    rm_tree(dir);
    free_paths(&p);
}

/* A Qwen2 teacher (byte-level BPE, no BOS added): windows keep the text's
 * first token instead of a BOS, and the stored log-probabilities still equal
 * the engine's (with q/k/v biases and NEOX RoPE). */
Test(distill, qwen2_teacher_windows_start_without_bos)
{
    const char *gen = getenv("EDGEC_GENMODEL"), *root = getenv("EDGEC_SOURCE_ROOT");
    if (!gen || !*gen || !root || !*root)
        cr_skip_test("EDGEC_GENMODEL / EDGEC_SOURCE_ROOT not set (run through meson test)");
    char *tmp = ec_test_tmpdir(), cmd[8192];
    struct paths p = {.teacher = join(tmp, "qwen2"), .text = NULL};
    char *text_rel = join(root, "tests/data/arch_text.txt");
    p.text = text_rel;
    snprintf(cmd, sizeof cmd, "'%s' '%s' --arch qwen2 --hidden 64 --ffn 128 --heads 4 --kv-heads 2 --tied --seed 9",
             gen, p.teacher);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    char *dir = join(tmp, "out");
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, dir, 32, 8, 1.0, 4, 64, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(r.n_tokens, 4 * 32);
    struct ec_distill_manifest man;
    cr_assert_eq(ec_distill_verify(dir, &man, &d), EC_OK, "%s", d.msg);
    struct ec_distill_records rec;
    cr_assert_eq(ec_distill_shard_read(&man, 0, &rec, &d), EC_OK, "%s", d.msg);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, p.teacher, &d), EC_OK, "%s", d.msg);
    cr_assert(m.vocab.bos_id >= 0 && !ec_vocab_adds_bos(&m.vocab));
    for (uint32_t q = 0; q < man.shards[0].n_seqs; q++)
        cr_expect_neq(rec.input_ids[(uint64_t)q * 32], m.vocab.bos_id, "window %u starts with BOS", q);
    ec_model_close(&m);
    ec_distill_records_release(&rec);
    ec_distill_manifest_release(&man);
    check_against_engine(&p, dir, 1.0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    free(dir);
    free(tmp);
    free_paths(&p);
}

Test(distill, temperature_divides_the_logits)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *dir = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, dir, 64, 16, 2.5, 3, 0, 0, false, &r, &d), EC_OK, "%s", d.msg);
    check_against_engine(&p, dir, 2.5);
    rm_tree(dir);
    free_paths(&p);
}

Test(distill, bytes_do_not_depend_on_thread_count)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *a = ec_test_tmpdir(), *b = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, a, 128, 64, 1.0, 4, 256, 1, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(run_export(&p, b, 128, 64, 1.0, 4, 256, 2, false, &r, &d), EC_OK, "%s", d.msg);
    assert_same_tree(a, b);
    rm_tree(a);
    rm_tree(b);
    free_paths(&p);
}

Test(distill, rerun_keeps_complete_shards_and_rewrites_missing_ones)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *a = ec_test_tmpdir(), *b = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, a, 128, 32, 1.0, 6, 256, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(run_export(&p, b, 128, 32, 1.0, 6, 256, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(r.n_shards, 3);
    /* an interrupted run: one shard missing, one left as a temporary file */
    char *s1 = join(b, "shard-00001.ecds"), *tmp = join(b, "shard-00002.ecds.tmp-abcdef");
    cr_assert_eq(rename(s1, tmp), 0);
    cr_assert_eq(run_export(&p, b, 128, 32, 1.0, 6, 256, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(r.n_shards_reused, 2);
    cr_assert_eq(r.tokens_evaluated, 2 * 128);
    assert_same_tree(a, b);
    /* a second rerun evaluates nothing */
    cr_assert_eq(run_export(&p, b, 128, 32, 1.0, 6, 256, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(r.n_shards_reused, 3);
    cr_assert_eq(r.tokens_evaluated, 0);
    assert_same_tree(a, b);
    free(s1);
    free(tmp);
    rm_tree(a);
    rm_tree(b);
    free_paths(&p);
}

Test(distill, other_arguments_are_refused_unless_forced)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *a = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, a, 128, 32, 1.0, 4, 256, 0, false, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(run_export(&p, a, 128, 16, 1.0, 4, 256, 0, false, &r, &d), EC_ERR_ARG);
    cr_assert(strstr(d.msg, "top_k 32 -> 16") && strstr(d.msg, "--force"), "%s", d.msg);
    cr_assert_eq(run_export(&p, a, 128, 16, 1.0, 2, 256, 0, true, &r, &d), EC_OK, "%s", d.msg);
    /* the forced export replaced the old one: its extra shards are gone */
    struct ec_distill_manifest m;
    cr_assert_eq(ec_distill_verify(a, &m, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(m.top_k, 16);
    cr_assert_eq(m.n_shards, 1);
    char *extra = join(a, "shard-00001.ecds");
    cr_assert(!ec_path_exists(extra));
    free(extra);
    ec_distill_manifest_release(&m);
    /* a folder with a foreign manifest.json is refused */
    char *mp = join(a, "manifest.json");
    write_whole(mp, "{\"format\": \"something-else\"}", 28);
    cr_assert_eq(run_export(&p, a, 128, 16, 1.0, 2, 256, 0, false, &r, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "not an edgec-distill manifest"), "%s", d.msg);
    free(mp);
    rm_tree(a);
    free_paths(&p);
}

/* A small export, then damaged copies of its files. */
Test(distill, malformed_shards_and_manifests_are_rejected)
{
    struct paths p;
    if (!get_paths(&p))
        return;
    char *a = ec_test_tmpdir();
    struct ec_distill_result r;
    struct ec_diag d;
    cr_assert_eq(run_export(&p, a, 64, 8, 1.0, 4, 128, 0, false, &r, &d), EC_OK, "%s", d.msg);
    struct ec_distill_manifest m;
    cr_assert_eq(ec_distill_manifest_load(&m, a, &d), EC_OK, "%s", d.msg);
    char *sp = join(a, "shard-00000.ecds");
    size_t n;
    uint8_t *orig = (uint8_t *)read_whole(sp, &n);
    uint8_t fp[32];
    for (int i = 0; i < 32; i++)
        sscanf(m.fingerprint + 2 * i, "%2hhx", &fp[i]);
    struct ec_distill_shard_expect ex = {.index = 0, .first_seq = 0, .n_seqs = 2, .seq_len = 64,
                                         .top_k = 8, .id_bytes = 2, .n_vocab = 512,
                                         .fingerprint = fp};
    cr_assert_eq(ec_distill_shard_decode(orig, n, "s", &ex, NULL, &d), EC_OK, "%s", d.msg);

    /* every truncation fails with a format error (and never reads past the end) */
    for (size_t cut = 0; cut < n; cut += (cut < 200 ? 1 : 97)) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, orig, cut);
        ec_diag_clear(&d);
        cr_assert_eq(ec_distill_shard_decode(t, cut, "s", &ex, NULL, &d), EC_ERR_FORMAT,
                     "cut at %zu", cut);
        free(t);
    }
    ec_diag_clear(&d);
    cr_assert_eq(ec_distill_shard_decode(orig, n - 10, "s", &ex, NULL, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "truncated"), "%s", d.msg);
    /* a flipped payload byte: crc32 mismatch */
    uint8_t *bad = malloc(n);
    memcpy(bad, orig, n);
    bad[n / 2] ^= 0x40;
    ec_diag_clear(&d);
    cr_assert_eq(ec_distill_shard_decode(bad, n, "s", &ex, NULL, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "crc32 of the stored data"), "%s", d.msg);
    /* a flipped header byte: header crc32 */
    memcpy(bad, orig, n);
    bad[30] ^= 1;
    ec_diag_clear(&d);
    cr_assert_eq(ec_distill_shard_decode(bad, n, "s", &ex, NULL, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "header crc32"), "%s", d.msg);
    /* every single-byte flip is rejected or decodes to valid records */
    for (size_t i = 0; i < n; i += 7) {
        memcpy(bad, orig, n);
        bad[i] ^= 0xff;
        ec_diag_clear(&d);
        cr_assert_neq(ec_distill_shard_decode(bad, n, "s", &ex, NULL, &d), EC_OK, "flip %zu", i);
    }
    /* the shard file damaged on disk: the manifest's crc32/sha256 catch it */
    memcpy(bad, orig, n);
    bad[n - 1] ^= 1;
    write_whole(sp, bad, n);
    ec_diag_clear(&d);
    cr_assert_neq(ec_distill_shard_read(&m, 0, NULL, &d), EC_OK);
    cr_assert(strstr(d.msg, "shard-00000.ecds"), "%s", d.msg);
    write_whole(sp, orig, n - 5);
    ec_diag_clear(&d);
    cr_assert_eq(ec_distill_shard_read(&m, 0, NULL, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "the manifest says"), "%s", d.msg);
    write_whole(sp, orig, n);
    ec_distill_manifest_release(&m);

    /* manifests with wrong counts */
    char *mp = join(a, "manifest.json");
    size_t mlen;
    char *mtext = read_whole(mp, &mlen);
    struct {
        const char *from, *to, *expect;
    } cases[] = {
        {"\n\t\"n_tokens\":\t256,", "\n\t\"n_tokens\":\t257,", "inconsistent counts"},
        {"\n\t\"shard_tokens\":\t128,", "\n\t\"shard_tokens\":\t64,",
         "'shards': 2 entries, expected 4"},
        {"\"n_tokens\":\t128,", "\"n_tokens\":\t127,", "'shards[0]'"},
        {"\"first_seq\":\t2,", "\"first_seq\":\t3,", "'shards[1]'"},
        {"\n\t\"top_k\":\t8,", "\n\t\"top_k\":\t9999,", "'top_k'"},
        {"\"complete\":\ttrue", "\"complete\":\tfalse", "incomplete"},
        {"\"file\":\t\"shard-00001.ecds\"", "\"file\":\t\"../shard-00001.ecds\"", "'shards[1]'"},
        {"\n\t\"version\":\t1,", "\n\t\"version\":\t2,", "'version' 2"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *pos = strstr(mtext, cases[c].from);
        cr_assert_not_null(pos, "case %zu: '%s' not in the manifest", c, cases[c].from);
        size_t fl = strlen(cases[c].from), tl = strlen(cases[c].to);
        char *mod = malloc(mlen + tl + 1);
        size_t pre = (size_t)(pos - mtext);
        memcpy(mod, mtext, pre);
        memcpy(mod + pre, cases[c].to, tl);
        memcpy(mod + pre + tl, pos + fl, mlen - pre - fl);
        write_whole(mp, mod, mlen - fl + tl);
        ec_diag_clear(&d);
        cr_assert_neq(ec_distill_manifest_load(&m, a, &d), EC_OK, "case %zu accepted", c);
        cr_assert(strstr(d.msg, cases[c].expect), "case %zu: %s", c, d.msg);
        free(mod);
    }
    write_whole(mp, "[1, 2", 5);
    ec_diag_clear(&d);
    cr_assert_eq(ec_distill_manifest_load(&m, a, &d), EC_ERR_FORMAT);
    write_whole(mp, mtext, mlen);
    cr_assert_eq(ec_distill_verify(a, &m, &d), EC_OK, "%s", d.msg);
    ec_distill_manifest_release(&m);
    free(mtext);
    free(mp);
    free(bad);
    free(orig);
    free(sp);
    rm_tree(a);
    free_paths(&p);
}
