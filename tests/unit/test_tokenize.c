/* Tokenizer: llama_tokenize(add_special=true, parse_special=false) goldens,
 * the held-out token stream, HF-reference prompt ids, BPE on a synthetic vocab. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"

static void load_model_vocab(const char *model, struct ec_vocab *v)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mdir = ec_test_shared(rel);
    char *cfg = ec_path_join(mdir, "config.json");
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d = {0};
    struct ec_hparams hp;
    cr_assert_eq(ec_read_file(cfg, 1 << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_hparams_from_config_json(&hp, text, len, cfg, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_vocab_from_hf_dir(v, mdir, &hp, &d), EC_OK, "%s", d.msg);
    free(text);
    free(cfg);
    free(mdir);
}

static void check_golden_cases(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/tokenize/%s.json", model);
    char *gp = ec_test_shared(rel);
    struct ec_vocab v;
    load_model_vocab(model, &v);
    struct ec_diag d = {0};
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ec_read_file(gp, 16 << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *g = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(g);
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "tokens");
        int32_t *ids;
        size_t n;
        cr_assert_eq(ec_tokenizer_encode(t, s, strlen(s), true, false, &ids, &n, &d), EC_OK, "%s", d.msg);
        cr_assert_eq((int)n, cJSON_GetArraySize(want), "%s %s: %zu tokens, want %d", model, name, n,
                     cJSON_GetArraySize(want));
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(ids[i], (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble, "%s %s: token %zu", model,
                         name, i);
        /* decoding (minus BOS) gives back the text for byte-exact SPM pieces */
        char *back;
        size_t blen;
        cr_assert_eq(ec_tokenizer_decode(t, ids, n, &back, &blen, &d), EC_OK, "%s", d.msg);
        cr_assert_eq(blen, strlen(s), "%s %s: decode length", model, name);
        cr_assert(memcmp(back, s, blen) == 0, "%s %s: decode differs", model, name);
        free(back);
        free(ids);
        n_cases++;
    }
    cr_assert_eq(n_cases, 22);
    cJSON_Delete(g);
    free(text);
    ec_tokenizer_free(t);
    ec_vocab_release(&v);
    free(gp);
}

Test(tokenize, stories260K_golden_cases) { check_golden_cases("stories260K"); }
Test(tokenize, stories_student_256_golden_cases) { check_golden_cases("stories-student-256"); }

static void check_heldout(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/perplexity/%s.heldout_tokens.i32", model);
    char *tp = ec_test_shared(rel);
    char *dp = ec_test_shared("data/tinystories_heldout.txt");
    struct ec_vocab v;
    load_model_vocab(model, &v);
    struct ec_diag d = {0};
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    char *text = NULL, *want = NULL;
    size_t len = 0, wlen = 0;
    cr_assert_eq(ec_read_file(dp, 16 << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_read_file(tp, 16 << 20, &want, &wlen, &d), EC_OK, "%s", d.msg);
    if (len > 0 && text[len - 1] == '\n')
        len--; /* llama-perplexity drops one final newline */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids;
    size_t n;
    cr_assert_eq(ec_tokenizer_encode(t, text, len, true, false, &ids, &n, &d), EC_OK, "%s", d.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    cr_log_info("%s: %zu bytes -> %zu tokens in %.4f s", model, len, n, secs);
    cr_assert_lt(secs, 0.5, "encoding took %.3f s", secs);
    cr_assert_eq(n * 4, wlen, "%s: %zu tokens, want %zu", model, n, wlen / 4);
    for (size_t i = 0; i < n; i++) {
        int32_t w;
        memcpy(&w, want + 4 * i, 4);
        cr_assert_eq(ids[i], w, "%s: heldout token %zu", model, i);
    }
    free(ids);
    free(text);
    free(want);
    ec_tokenizer_free(t);
    ec_vocab_release(&v);
    free(tp);
    free(dp);
}

Test(tokenize, stories260K_heldout_stream) { check_heldout("stories260K"); }
Test(tokenize, stories_student_256_heldout_stream) { check_heldout("stories-student-256"); }

Test(tokenize, tinystories_656K_prompt_matches_hf_reference)
{
    char *rp = ec_test_shared("models/tinystories-656K/reference/numpy_once_upon_a_time.json");
    struct ec_vocab v;
    load_model_vocab("tinystories-656K", &v);
    struct ec_diag d = {0};
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ec_read_file(rp, 1 << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *r = cJSON_ParseWithLength(text, len);
    const char *prompt = cJSON_GetObjectItem(r, "prompt")->valuestring;
    const cJSON *want = cJSON_GetObjectItem(r, "prompt_ids_incl_bos");
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    int32_t *ids;
    size_t n;
    cr_assert_eq(ec_tokenizer_encode(t, prompt, strlen(prompt), true, false, &ids, &n, &d), EC_OK, "%s", d.msg);
    cr_assert_eq((int)n, cJSON_GetArraySize(want));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble, "token %zu", i);
    free(ids);
    /* the generated text decodes from its ids: the model spelled "<|end_story|>"
     * as text pieces before the EOS id, which is CONTROL and dropped */
    const cJSON *toks = cJSON_GetObjectItem(r, "tokens");
    size_t nt = (size_t)cJSON_GetArraySize(toks);
    int32_t *all = malloc(nt * sizeof *all);
    for (size_t i = 0; i < nt; i++)
        all[i] = (int32_t)cJSON_GetArrayItem(toks, (int)i)->valuedouble;
    char *out;
    size_t olen;
    cr_assert_eq(ec_tokenizer_decode(t, all, nt, &out, &olen, &d), EC_OK, "%s", d.msg);
    const char *ref = cJSON_GetObjectItem(r, "text")->valuestring;
    size_t rlen = strlen(ref);
    cr_assert_eq(all[nt - 1], v.eos_id);
    cr_assert_eq(olen, rlen);
    cr_assert(memcmp(out, ref, rlen) == 0, "decoded: %s", out);
    free(out);
    free(all);
    ec_tokenizer_free(t);
    cJSON_Delete(r);
    free(text);
    ec_vocab_release(&v);
    free(rp);
}

/* parse_special: "<s>" becomes BOS only when asked */
Test(tokenize, parse_special_matches_control_tokens)
{
    struct ec_vocab v;
    load_model_vocab("stories260K", &v);
    struct ec_diag d = {0};
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    int32_t *a, *b;
    size_t na, nb;
    const char *s = "<s> Once";
    cr_assert_eq(ec_tokenizer_encode(t, s, strlen(s), false, true, &a, &na, &d), EC_OK);
    cr_assert_eq(ec_tokenizer_encode(t, s, strlen(s), false, false, &b, &nb, &d), EC_OK);
    cr_assert_eq(a[0], 1);
    cr_assert_neq(b[0], 1);
    cr_assert_gt(nb, na);
    int32_t bad = 99999;
    char *out;
    size_t olen;
    cr_assert_eq(ec_tokenizer_decode(t, &bad, 1, &out, &olen, &d), EC_ERR_ARG);
    free(a);
    free(b);
    ec_tokenizer_free(t);
    ec_vocab_release(&v);
}

/* byte-level BPE on a hand-made vocabulary (llama-bpe pre-tokenizer) */
static const char bpe_json[] =
    "{\"added_tokens\":[{\"id\":20,\"content\":\"<|eot|>\",\"special\":true}],"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}},"
    "{\"type\":\"ByteLevel\",\"use_regex\":false}]},\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{"
    "\"a\":0,\"b\":1,\"c\":2,\"\xc4\xa0\":3,\"ab\":4,\"\xc4\xa0" "ab\":5,\"1\":6,\"2\":7,\"3\":8,\"4\":9,"
    "\"12\":10,\"123\":11,\"'\":12,\"s\":13,\"'s\":14,\"\xc4\x8a\":15,\"!\":16,\"bc\":17,\"\xc4\xa0" "a\":18,"
    "\"abc\":19},"
    "\"merges\":[\"a b\",\"\xc4\xa0 ab\",\"1 2\",\"12 3\",\"' s\",\"\xc4\xa0 a\",\"b c\"]}}";

static void enc(const struct ec_tokenizer *t, const char *s, const int32_t *want, size_t nw)
{
    struct ec_diag d = {0};
    int32_t *ids;
    size_t n;
    cr_assert_eq(ec_tokenizer_encode(t, s, strlen(s), true, true, &ids, &n, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(n, nw, "'%s': %zu tokens, want %zu", s, n, nw);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], want[i], "'%s': token %zu is %d, want %d", s, i, ids[i], want[i]);
    char *back;
    size_t blen;
    cr_assert_eq(ec_tokenizer_decode(t, ids, n, &back, &blen, &d), EC_OK);
    /* control tokens are dropped on decode */
    const char *eot = strstr(s, "<|eot|>");
    size_t expect_len = eot ? (size_t)(eot - s) : strlen(s);
    cr_assert_eq(blen, expect_len, "'%s' decoded as '%s'", s, back);
    cr_assert(memcmp(back, s, blen) == 0);
    free(back);
    free(ids);
}

/* BOS as llama.cpp adds it (and llama-perplexity puts it at a chunk's
 * start): the add_bos_token key when given, else SPM and Llama 3 BPE yes,
 * other BPE (Qwen2, GPT-2) no */
Test(tokenize, adds_bos_follows_llama_cpp_defaults)
{
    struct ec_vocab v;
    struct ec_diag d = {0};
    cr_assert_eq(ec_vocab_from_tokenizer_json(&v, bpe_json, strlen(bpe_json), "bpe.json", &d), EC_OK, "%s", d.msg);
    cr_assert(!v.has_add_bos);
    cr_assert(!ec_vocab_adds_bos(&v), "llama-bpe without a BOS id cannot add one");
    v.bos_id = 20;
    cr_assert(ec_vocab_adds_bos(&v), "llama-bpe adds BOS by default");
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    int32_t *ids;
    size_t n;
    cr_assert_eq(ec_tokenizer_encode(t, "ab", 2, true, false, &ids, &n, &d), EC_OK, "%s", d.msg);
    cr_assert(n == 2 && ids[0] == 20 && ids[1] == 4, "BOS then 'ab': %zu tokens, first %d", n, n ? ids[0] : -1);
    free(ids);
    ec_tokenizer_free(t);
    char *pre = v.pre;
    v.pre = "qwen2";
    cr_assert(!ec_vocab_adds_bos(&v), "qwen2 BPE adds no BOS by default");
    v.has_add_bos = true;
    v.add_bos = true;
    cr_assert(ec_vocab_adds_bos(&v), "an explicit add_bos_token wins");
    v.pre = "llama-bpe";
    v.add_bos = false;
    cr_assert(!ec_vocab_adds_bos(&v), "an explicit add_bos_token wins");
    v.pre = pre;
    ec_vocab_release(&v);
}

Test(tokenize, byte_level_bpe_merges_and_pretokenizer)
{
    struct ec_vocab v;
    struct ec_diag d = {0};
    cr_assert_eq(ec_vocab_from_tokenizer_json(&v, bpe_json, strlen(bpe_json), "bpe.json", &d), EC_OK, "%s", d.msg);
    cr_assert_str_eq(v.pre, "llama-bpe");
    struct ec_tokenizer *t;
    cr_assert_eq(ec_tokenizer_new(&t, &v, &d), EC_OK, "%s", d.msg);
    enc(t, "ab ab", (const int32_t[]){4, 5}, 2);
    enc(t, "abc", (const int32_t[]){19}, 1);        /* ignore_merges: whole word in vocab */
    enc(t, "1234", (const int32_t[]){11, 9}, 2);    /* digits in groups of 3 */
    enc(t, "ab's", (const int32_t[]){4, 14}, 2);    /* contraction split */
    enc(t, "ab\n\nab", (const int32_t[]){4, 15, 15, 4}, 4);
    enc(t, "ab!!", (const int32_t[]){4, 16, 16}, 3);
    enc(t, "a  b", (const int32_t[]){0, 3, 3, 1}, 4); /* "a", " ", " b" -> Ġ b has no merge */
    enc(t, "ab<|eot|>", (const int32_t[]){4, 20}, 2);
    ec_tokenizer_free(t);
    ec_vocab_release(&v);
}
