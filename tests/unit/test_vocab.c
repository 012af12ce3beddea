/* Vocabulary loading: tokenizer.model, tokenizer.json, HF folders, against
 * the tokenizer.ggml.* keys llama.cpp's converter wrote (golden/convert). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/sha256.h"

static cJSON *load_json_file(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d = {0};
    cr_assert_eq(ec_read_file(path, 64u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(j, "%s: bad JSON", path);
    return j;
}

static const cJSON *golden_kv(const cJSON *g, const char *outtype, const char *key)
{
    const cJSON *kvs = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "files"), outtype), "kv");
    const cJSON *it;
    cJSON_ArrayForEach(it, kvs) {
        if (strcmp(cJSON_GetObjectItem(it, "key")->valuestring, key) == 0)
            return it;
    }
    return NULL;
}

static void hex_tokens(const struct ec_vocab *v, char hex[65])
{
    struct ec_sha256 s;
    ec_sha256_init(&s);
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        uint64_t n = strlen(v->tokens[i]);
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(n >> (8 * b));
        ec_sha256_update(&s, le, 8);
        ec_sha256_update(&s, v->tokens[i], n);
    }
    uint8_t dg[32];
    ec_sha256_final(&s, dg);
    ec_sha256_to_hex(dg, hex);
}

/* little-endian host assumed (x86-64, aarch64) */
static void hex_raw(const void *p, size_t n, char hex[65]) { ec_sha256_hex(p, n, hex); }

static void check_against_golden(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/convert/%s.json", model);
    char *gpath = ec_test_shared(rel);
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mdir = ec_test_shared(rel);
    char *cfg_path = ec_path_join(mdir, "config.json");
    char *cfg_text = NULL;
    size_t cfg_len = 0;
    struct ec_diag d = {0};
    cr_assert_eq(ec_read_file(cfg_path, 1 << 20, &cfg_text, &cfg_len, &d), EC_OK, "%s", d.msg);
    struct ec_hparams hp;
    cr_assert_eq(ec_hparams_from_config_json(&hp, cfg_text, cfg_len, cfg_path, &d), EC_OK, "%s", d.msg);
    struct ec_vocab v;
    cr_assert_eq(ec_vocab_from_hf_dir(&v, mdir, &hp, &d), EC_OK, "%s", d.msg);
    cJSON *g = load_json_file(gpath);
    const char *outtypes[] = {"F32", "F16", "BF16"};
    for (int o = 0; o < 3; o++) {
        const char *ot = outtypes[o];
        cr_assert_str_eq(cJSON_GetObjectItem(golden_kv(g, ot, "tokenizer.ggml.model"), "value")->valuestring,
                         v.type == EC_VOCAB_SPM ? "llama" : "gpt2");
        cr_assert_str_eq(cJSON_GetObjectItem(golden_kv(g, ot, "tokenizer.ggml.pre"), "value")->valuestring, v.pre);
        const cJSON *kt = golden_kv(g, ot, "tokenizer.ggml.tokens");
        cr_assert_eq((uint32_t)cJSON_GetObjectItem(kt, "length")->valuedouble, v.n_tokens);
        char hex[65];
        hex_tokens(&v, hex);
        cr_assert_str_eq(hex, cJSON_GetObjectItem(kt, "sha256_raw")->valuestring, "%s %s tokens", model, ot);
        hex_raw(v.scores, v.n_tokens * sizeof(float), hex);
        cr_assert_str_eq(hex, cJSON_GetObjectItem(golden_kv(g, ot, "tokenizer.ggml.scores"), "sha256_raw")->valuestring,
                         "%s %s scores", model, ot);
        hex_raw(v.token_types, v.n_tokens * sizeof(int32_t), hex);
        cr_assert_str_eq(hex,
                         cJSON_GetObjectItem(golden_kv(g, ot, "tokenizer.ggml.token_type"), "sha256_raw")->valuestring,
                         "%s %s token types", model, ot);
        struct { const char *key; int32_t have; } ids[] = {
            {"tokenizer.ggml.bos_token_id", v.bos_id}, {"tokenizer.ggml.eos_token_id", v.eos_id},
            {"tokenizer.ggml.unknown_token_id", v.unk_id}, {"tokenizer.ggml.padding_token_id", v.pad_id},
            {"tokenizer.ggml.seperator_token_id", v.sep_id},
        };
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
            const cJSON *kv = golden_kv(g, ot, ids[i].key);
            if (kv)
                cr_assert_eq(ids[i].have, (int32_t)cJSON_GetObjectItem(kv, "value")->valuedouble, "%s", ids[i].key);
            else
                cr_assert_eq(ids[i].have, -1, "%s should be unset", ids[i].key);
        }
        const cJSON *ab = golden_kv(g, ot, "tokenizer.ggml.add_bos_token");
        const cJSON *ae = golden_kv(g, ot, "tokenizer.ggml.add_eos_token");
        cr_assert_eq(v.has_add_bos, ab != NULL);
        cr_assert_eq(v.has_add_eos, ae != NULL);
        if (ab)
            cr_assert_eq(v.add_bos, cJSON_IsTrue(cJSON_GetObjectItem(ab, "value")));
        if (ae)
            cr_assert_eq(v.add_eos, cJSON_IsTrue(cJSON_GetObjectItem(ae, "value")));
        cr_assert_null(golden_kv(g, ot, "tokenizer.ggml.merges"));
        cr_assert_eq(v.n_merges, 0);
    }
    cJSON_Delete(g);
    ec_vocab_release(&v);
    free(cfg_text);
    free(cfg_path);
    free(mdir);
    free(gpath);
}

Test(vocab, stories260K_matches_converter_kvs) { check_against_golden("stories260K"); }
Test(vocab, stories_student_256_matches_converter_kvs) { check_against_golden("stories-student-256"); }

Test(vocab, sp_model_pieces_and_specs)
{
    char *p = ec_test_shared("models/tokenizers/llama2-32k/tokenizer.model");
    struct ec_mapped_file mf;
    struct ec_diag d = {0};
    cr_assert_eq(ec_mapped_file_open(&mf, p, &d), EC_OK, "%s", d.msg);
    struct ec_vocab v;
    cr_assert_eq(ec_vocab_from_sp_model(&v, mf.data, mf.size_bytes, p, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(v.n_tokens, 32000);
    cr_assert_str_eq(v.tokens[0], "<unk>");
    cr_assert_eq(v.token_types[0], EC_TOK_UNKNOWN);
    cr_assert_eq(v.token_types[1], EC_TOK_CONTROL);
    cr_assert_eq(v.token_types[2], EC_TOK_CONTROL);
    cr_assert_str_eq(v.tokens[3], "<0x00>");
    cr_assert_eq(v.token_types[3], EC_TOK_BYTE);
    cr_assert_str_eq(v.tokens[13], "<0x0A>");
    cr_assert_eq(v.bos_id, 1);
    cr_assert_eq(v.eos_id, 2);
    cr_assert_eq(v.unk_id, 0);
    cr_assert_eq(v.pad_id, -1);
    cr_assert(v.add_space_prefix);
    cr_assert_str_eq(v.pre, "default");

    /* the same vocabulary's tokenizer.json gives the same pieces */
    char *jp = ec_test_shared("models/tokenizers/llama2-32k/tokenizer.json");
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ec_read_file(jp, 64u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    struct ec_vocab j;
    cr_assert_eq(ec_vocab_from_tokenizer_json(&j, text, len, jp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(j.type, EC_VOCAB_SPM);
    cr_assert_eq(j.n_tokens, v.n_tokens);
    for (uint32_t i = 0; i < v.n_tokens; i++) {
        cr_assert_str_eq(j.tokens[i], v.tokens[i], "token %u", i);
        cr_assert_eq(j.scores[i], -1000.0f);
        if (v.token_types[i] == EC_TOK_BYTE || v.token_types[i] == EC_TOK_NORMAL)
            cr_assert_eq(j.token_types[i], v.token_types[i], "token %u", i);
    }
    cr_assert_eq(j.token_types[0], EC_TOK_CONTROL); /* LlamaHfVocab: special -> CONTROL */
    cr_assert_eq(j.unk_id, 0);
    cr_assert_gt(j.n_spm_merges, 60000);
    cr_assert_str_eq(j.spm_merges[0], "\xe2\x96\x81 t");
    ec_vocab_release(&j);
    free(text);
    free(jp);
    ec_vocab_release(&v);
    ec_mapped_file_close(&mf);
    free(p);
}

Test(vocab, sp_model_truncations_fail_with_offsets)
{
    char *p = ec_test_shared("models/tokenizers/tok512/tok512.model");
    struct ec_mapped_file mf;
    struct ec_diag d = {0};
    cr_assert_eq(ec_mapped_file_open(&mf, p, &d), EC_OK, "%s", d.msg);
    struct ec_vocab v;
    cr_assert_eq(ec_vocab_from_sp_model(&v, mf.data, mf.size_bytes, "tok512.model", &d), EC_OK, "%s", d.msg);
    cr_assert_eq(v.n_tokens, 512);
    ec_vocab_release(&v);
    /* every truncation either fails cleanly or (at a message boundary) parses fewer pieces */
    int n_fail = 0;
    for (size_t n = 0; n < mf.size_bytes; n += 7) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, mf.data, n);
        ec_diag_clear(&d);
        enum ec_status st = ec_vocab_from_sp_model(&v, copy, n, "tok512.model", &d);
        if (st != EC_OK) {
            cr_assert_eq(st, EC_ERR_FORMAT, "%s", d.msg);
            cr_assert(strstr(d.msg, "tok512.model") != NULL, "%s", d.msg);
            n_fail++;
        } else {
            cr_assert_leq(v.n_tokens, 512);
            ec_vocab_release(&v);
        }
        free(copy);
    }
    cr_assert_gt(n_fail, 0);
    /* a corrupted length field */
    uint8_t bad[] = {0x0a, 0x7f, 0x0a, 0x01, 'a'};
    ec_diag_clear(&d);
    cr_assert_eq(ec_vocab_from_sp_model(&v, bad, sizeof bad, "bad.model", &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "at byte 1") != NULL, "%s", d.msg);
    ec_mapped_file_close(&mf);
    free(p);
}

Test(vocab, tokenizer_json_656K_llama_hf_form)
{
    char *mdir = ec_test_shared("models/tinystories-656K");
    struct ec_diag d = {0};
    struct ec_hparams hp;
    char *cfg = ec_path_join(mdir, "config.json");
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ec_read_file(cfg, 1 << 20, &text, &len, &d), EC_OK);
    cr_assert_eq(ec_hparams_from_config_json(&hp, text, len, cfg, &d), EC_OK, "%s", d.msg);
    struct ec_vocab v;
    cr_assert_eq(ec_vocab_from_hf_dir(&v, mdir, &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(v.type, EC_VOCAB_SPM);
    cr_assert_eq(v.n_tokens, 2048);
    cr_assert_str_eq(v.tokens[1], "<|start_story|>");
    cr_assert_eq(v.bos_id, 1);
    cr_assert_eq(v.eos_id, 2);
    cr_assert_eq(v.unk_id, 0);
    cr_assert_eq(v.pad_id, 0);
    cr_assert(v.has_add_bos && v.add_bos);
    cr_assert(v.has_add_eos && !v.add_eos);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(v.token_types[i], EC_TOK_CONTROL);
    int n_byte = 0;
    for (uint32_t i = 0; i < v.n_tokens; i++)
        n_byte += v.token_types[i] == EC_TOK_BYTE;
    cr_assert_eq(n_byte, 0); /* this vocabulary has no <0xXX> pieces */
    cr_assert_str_eq(v.tokens[3], "\n");
    cr_assert_eq(v.token_types[3], EC_TOK_NORMAL);
    cr_assert_eq(v.scores[100], -1000.0f);
    ec_vocab_release(&v);
    free(text);
    free(cfg);
    free(mdir);
}

static const char gpt2_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":8,\"content\":\"<|endoftext|>\",\"special\":true},"
    "{\"id\":9,\"content\":\"<extra>\",\"special\":false}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
    "\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":false,\"ignore_merges\":true,"
    "\"vocab\":{\"a\":0,\"b\":1,\"\xc4\xa0\":2,\"ab\":3,\"\xc4\xa0" "ab\":4,\"c\":5,\"\xc4\xa0" "a\":6,\"1\":7},"
    "\"merges\":[[\"a\",\"b\"],[\"\xc4\xa0\",\"ab\"],[\"\xc4\xa0\",\"a\"]]}}";

Test(vocab, tokenizer_json_byte_level_bpe)
{
    struct ec_vocab v;
    struct ec_diag d = {0};
    cr_assert_eq(ec_vocab_from_tokenizer_json(&v, gpt2_json, strlen(gpt2_json), "t.json", &d), EC_OK, "%s", d.msg);
    cr_assert_eq(v.type, EC_VOCAB_BPE);
    cr_assert_str_eq(v.pre, "llama-bpe");
    cr_assert_eq(v.n_tokens, 10);
    cr_assert_eq(v.n_merges, 3);
    cr_assert_str_eq(v.merges[0], "a b");
    cr_assert_str_eq(v.merges[1], "\xc4\xa0 ab");
    cr_assert_eq(v.token_types[8], EC_TOK_CONTROL);
    cr_assert_eq(v.token_types[9], EC_TOK_USER_DEFINED);
    cr_assert_eq(v.token_types[0], EC_TOK_NORMAL);
    cr_assert_null(v.scores);
    cr_assert_null(v.note);
    ec_vocab_release(&v);
}

Test(vocab, tokenizer_json_errors_name_file_and_key)
{
    struct ec_vocab v;
    struct ec_diag d = {0};
    const char *bad[][2] = {
        {"{\"model\":", "at byte"},
        {"{}", "'model'"},
        {"{\"model\":{\"type\":\"Unigram\"}}", "'model.type'"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":[1]}}", "'model.vocab'"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":-1}}}", "'model.vocab.a'"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0,\"b\":0}}}", "'model.vocab.b'"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0},\"merges\":[3]}}", "'model.merges[0]'"},
        {"{\"added_tokens\":[{\"id\":\"x\"}],\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0}}}",
         "'added_tokens'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ec_diag_clear(&d);
        enum ec_status st = ec_vocab_from_tokenizer_json(&v, bad[i][0], strlen(bad[i][0]), "tok.json", &d);
        cr_assert_neq(st, EC_OK, "case %zu", i);
        cr_assert(strstr(d.msg, "tok.json") && strstr(d.msg, bad[i][1]), "case %zu: %s", i, d.msg);
    }
}
