/* edgec-genmodel: write a random Llama-family checkpoint folder for demos,
 * benchmarks and the architecture interop test.
 *
 *   edgec-genmodel OUT_DIR [--arch llama|mistral|qwen2 --hidden N --ffn N
 *                  --layers N --heads N --kv-heads N --head-dim N --vocab N
 *                  --ctx N --seed S --dtype f32|f16|bf16 --tied
 *                  --tokenizer spm|qwen2|llama-bpe --attn-bias --mlp-bias
 *                  --rope-scaling none|linear|llama3|yarn]
 *
 * Writes config.json (LlamaForCausalLM, MistralForCausalLM or
 * Qwen2ForCausalLM), generation_config.json, tokenizer_config.json, the
 * tokenizer and model.safetensors with weights from a fixed-seed PRNG
 * (normal, std 0.02 for embeddings, 1/sqrt(fan_in) for projections, 0.1 for
 * biases, norms near 1). Qwen2 has q/k/v biases, as Qwen2Attention does;
 * --attn-bias (q/k/v/o) and --mlp-bias (gate/up/down) give Llama its
 * optional ones. --rope-scaling linear sets factor 2; llama3 sets Llama 3.1's
 * factors (8, low 1, high 4) with rope_theta 500000 and an original context
 * of 64 tokens, so that the blended band falls inside short test texts;
 * yarn sets Qwen2.5's form with factor 4 and an original context of 64.
 *
 * Tokenizers: "spm" (default for llama and mistral) is tokenizer.model, a
 * SentencePiece BPE ModelProto with byte fallback: <unk>, <s>, </s>, the 256
 * <0xXX> byte pieces, then generated pieces. "qwen2" (default for qwen2) and
 * "llama-bpe" are tokenizer.json files with GPT-2 byte-level BPE and the
 * split regex of Qwen2 (single digits) or Llama 3 (digit runs of up to
 * three): the 256 byte symbols, then tokens built letter by letter from a
 * word list and generated letter strings, with and without a leading space,
 * each with its merge, then three special tokens. Tensors
 * are generated and written in chunks, so memory stays small whatever the
 * size (TinyLlama-1.1B shape: --hidden 2048 --ffn 5632 --layers 22 --heads 32
 * --kv-heads 4 --vocab 32000 writes 4.4 GB in F32, 2.2 GB in F16).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edgec/fp16.h"
#include "edgec/io.h"
#include "edgec/opts.h"
#include "edgec/safetensors.h"

#define CHUNK_ELEMS (1u << 20)

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(struct rng *r) /* (0, 1) */
{
    return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Box-Muller; deterministic for a seed (the pair's second value is used too). */
static float rng_normal(struct rng *r, int *have, float *spare)
{
    if (*have) {
        *have = 0;
        return *spare;
    }
    double u = rng_uniform(r), v = rng_uniform(r);
    double m = sqrt(-2.0 * log(u));
    *spare = (float)(m * sin(2.0 * M_PI * v));
    *have = 1;
    return (float)(m * cos(2.0 * M_PI * v));
}

struct spec {
    char name[96];
    int ndim;
    uint64_t ne[2]; /* innermost first */
    float std;      /* 0: norm weight (1 + small noise) */
};

struct cfg {
    long hidden, ffn, layers, heads, kv_heads, head_dim, vocab, ctx, seed;
    const char *dtype, *arch, *tokenizer, *rope_scaling;
    bool tied, attn_bias, mlp_bias;
    bool sparse; /* data left as holes except first/last element markers */
};

static int die(const char *what, const char *arg)
{
    fprintf(stderr, "edgec-genmodel: %s%s\n", what, arg);
    return 2;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char *p = ec_path_join(dir, name);
    FILE *f = p ? fopen(p, "wb") : NULL;
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "edgec-genmodel: cannot write %s: %s\n", p ? p : name, strerror(errno));
        free(p);
        return 4;
    }
    free(p);
    return 0;
}

/* ---- SentencePiece ModelProto ---- */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap)
            b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "edgec-genmodel: out of memory\n");
            exit(4);
        }
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void pb_varint(struct buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    buf_put(b, tmp, n);
}

static void pb_key(struct buf *b, uint32_t field, uint32_t wire)
{
    pb_varint(b, ((uint64_t)field << 3) | wire);
}

static void pb_bytes(struct buf *b, uint32_t field, const void *data, size_t n)
{
    pb_key(b, field, 2);
    pb_varint(b, n);
    buf_put(b, data, n);
}

static void sp_piece(struct buf *model, const char *piece, float score, int type)
{
    struct buf p = {0};
    pb_bytes(&p, 1, piece, strlen(piece));
    pb_key(&p, 2, 5);
    uint32_t bits;
    memcpy(&bits, &score, 4);
    uint8_t le[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    buf_put(&p, le, 4);
    if (type != 1) {
        pb_key(&p, 3, 0);
        pb_varint(&p, (uint64_t)type);
    }
    pb_bytes(model, 1, p.p, p.n);
    free(p.p);
}

#define N_WORDS 24

/* Generated pieces: "▁" + letter strings in a fixed order, then bare strings. */
static void nth_piece(long i, char *out, size_t cap)
{
    static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";
    static const char *const words[] = {"the", "and", "a", "to", "was", "he", "she", "it", "of",
                                        "in", "said", "day", "they", "her", "his", "with", "Tim",
                                        "Lily", "play", "big", "happy", "dog", "cat", "sun"};
    _Static_assert(sizeof words / sizeof words[0] == N_WORDS, "word list size");
    const long n_words = N_WORDS;
    if (i < n_words) {
        snprintf(out, cap, "\xe2\x96\x81%s", words[i]);
        return;
    }
    i -= n_words;
    bool space = (i % 2) == 0;
    long k = i / 2;
    char s[16];
    int len = 0;
    /* bijective base-26 numbering: a, b, ..., z, aa, ab, ... */
    long v = k + 1;
    while (v > 0 && len < 15) {
        v -= 1;
        s[len++] = letters[v % 26];
        v /= 26;
    }
    s[len] = '\0';
    snprintf(out, cap, "%s%s", space ? "\xe2\x96\x81" : "", s);
}

static int write_tokenizer(const char *dir, long vocab)
{
    struct buf m = {0};
    sp_piece(&m, "<unk>", 0.0f, 2);
    sp_piece(&m, "<s>", 0.0f, 3);
    sp_piece(&m, "</s>", 0.0f, 3);
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        sp_piece(&m, piece, 0.0f, 6);
    }
    char piece[64], word[64];
    for (long i = 0, j = 0; i < vocab - 259; j++) {
        nth_piece(j, piece, sizeof piece);
        /* generated spellings may repeat a word of the leading list: skip them */
        bool dup = false;
        for (long k = 0; j >= N_WORDS && k < N_WORDS && !dup; k++) {
            nth_piece(k, word, sizeof word);
            dup = strcmp(word, piece) == 0;
        }
        if (dup)
            continue;
        sp_piece(&m, piece, -(float)i, 1);
        i++;
    }
    struct buf t = {0}; /* TrainerSpec */
    pb_key(&t, 3, 0), pb_varint(&t, 2);  /* model_type BPE */
    pb_key(&t, 35, 0), pb_varint(&t, 1); /* byte_fallback */
    pb_key(&t, 40, 0), pb_varint(&t, 0);
    pb_key(&t, 41, 0), pb_varint(&t, 1);
    pb_key(&t, 42, 0), pb_varint(&t, 2);
    pb_key(&t, 43, 0), pb_varint(&t, UINT64_MAX); /* pad_id -1 */
    pb_bytes(&m, 2, t.p, t.n);
    struct buf nz = {0}; /* NormalizerSpec */
    pb_bytes(&nz, 1, "identity", 8);
    pb_key(&nz, 3, 0), pb_varint(&nz, 1);
    pb_key(&nz, 4, 0), pb_varint(&nz, 0);
    pb_key(&nz, 5, 0), pb_varint(&nz, 1);
    pb_bytes(&m, 3, nz.p, nz.n);

    char *p = ec_path_join(dir, "tokenizer.model");
    FILE *f = p ? fopen(p, "wb") : NULL;
    int rc = 0;
    if (!f || fwrite(m.p, 1, m.n, f) != m.n || fclose(f) != 0) {
        fprintf(stderr, "edgec-genmodel: cannot write %s\n", p ? p : "tokenizer.model");
        rc = 4;
    }
    free(p);
    free(m.p);
    free(t.p);
    free(nz.p);
    return rc;
}

/* ---- byte-level BPE tokenizer.json ---- */

/* GPT-2's byte -> symbol map: the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF stand for themselves, the others take the code points 256,
 * 257, ... in byte order. out: the symbol's UTF-8, NUL-terminated. */
static void byte_symbol(int b, char out[3])
{
    int cp = b, n = 0;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        for (int x = 0; x < b; x++)
            n += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

struct strset { /* open addressing over owned strings; index = token id */
    char **s;
    size_t n;
    long *slot;
    size_t cap; /* power of two, > 2 n */
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static long strset_find(const struct strset *t, const char *s)
{
    for (size_t i = fnv1a(s) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (t->slot[i] < 0)
            return -1;
        if (strcmp(t->s[t->slot[i]], s) == 0)
            return t->slot[i];
    }
}

static void strset_add(struct strset *t, const char *s)
{
    char *c = strdup(s);
    if (!c) {
        fprintf(stderr, "edgec-genmodel: out of memory\n");
        exit(4);
    }
    size_t i = fnv1a(s) & (t->cap - 1);
    while (t->slot[i] >= 0)
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = (long)t->n;
    t->s[t->n++] = c;
}

/* s as a JSON string: only '"' and '\' need escaping in these tokens (the
 * byte symbols have no control characters). */
static void put_json_str(struct buf *b, const char *s)
{
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_put(b, "\\", 1);
        buf_put(b, s, 1);
    }
    buf_put(b, "\"", 1);
}

static int write_bpe_tokenizer(const char *dir, long vocab, bool qwen2)
{
    /* JSON text of the two split regexes (backslashes escaped once for JSON) */
    static const char re_qwen2[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}"
        "\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
    static const char re_llama3[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s"
        "\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
    static const char *const specials_qwen2[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    static const char *const specials_llama3[3] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
    const char *const *specials = qwen2 ? specials_qwen2 : specials_llama3;
    const long n_base = vocab - 3;
    struct strset t = {0};
    t.cap = 1;
    while (t.cap <= 2 * (size_t)vocab)
        t.cap *= 2;
    t.s = calloc((size_t)vocab, sizeof *t.s);
    t.slot = malloc(t.cap * sizeof *t.slot);
    struct buf merges = {0};
    if (!t.s || !t.slot) {
        fprintf(stderr, "edgec-genmodel: out of memory\n");
        exit(4);
    }
    for (size_t i = 0; i < t.cap; i++)
        t.slot[i] = -1;
    char sym[3];
    for (int b = 0; b < 256; b++) {
        byte_symbol(b, sym);
        strset_add(&t, sym);
    }
    /* words letter by letter, alternately with the space symbol in front:
     * each new prefix is a token and the merge that makes it */
    char space[3], piece[64], cur[80], next[80];
    byte_symbol(' ', space);
    for (long j = 0; (long)t.n < n_base; j++) {
        nth_piece(j / 2, piece, sizeof piece);
        const char *w = piece;
        if (strncmp(w, "\xe2\x96\x81", 3) == 0)
            w += 3; /* nth_piece's SentencePiece space mark */
        if (!*w)
            continue;
        bool sp = (j % 2) == 0;
        snprintf(cur, sizeof cur, "%s", sp ? space : (char[]){w[0], '\0'});
        for (const char *c = sp ? w : w + 1; *c && (long)t.n < n_base; c++) {
            size_t cl = strlen(cur);
            if (cl + 2 > sizeof next)
                break;
            memcpy(next, cur, cl);
            next[cl] = *c;
            next[cl + 1] = '\0';
            if (strset_find(&t, next) < 0) {
                if (merges.n)
                    buf_put(&merges, ",\n      ", 8);
                char pair[96];
                snprintf(pair, sizeof pair, "%s %c", cur, *c);
                put_json_str(&merges, pair);
                strset_add(&t, next);
            }
            memcpy(cur, next, strlen(next) + 1);
        }
    }

    struct buf o = {0};
    char tmp[256];
    int k = snprintf(tmp, sizeof tmp, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                     "  \"added_tokens\": [");
    buf_put(&o, tmp, (size_t)k);
    for (int i = 0; i < 3; i++) {
        k = snprintf(tmp, sizeof tmp,
                     "%s\n    {\"id\": %ld, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, "
                     "\"rstrip\": false, \"normalized\": false, \"special\": true}",
                     i ? "," : "", n_base + i, specials[i]);
        buf_put(&o, tmp, (size_t)k);
    }
    k = snprintf(tmp, sizeof tmp,
                 "\n  ],\n  \"normalizer\": %s,\n  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n"
                 "    \"pretokenizers\": [\n      {\"type\": \"Split\", \"pattern\": {\"Regex\": \"",
                 qwen2 ? "{\"type\": \"NFC\"}" : "null");
    buf_put(&o, tmp, (size_t)k);
    const char *re = qwen2 ? re_qwen2 : re_llama3;
    buf_put(&o, re, strlen(re));
    k = snprintf(tmp, sizeof tmp,
                 "\"}, \"behavior\": \"Isolated\", \"invert\": false},\n"
                 "      {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": %s, "
                 "\"use_regex\": false}\n    ]\n  },\n",
                 qwen2 ? "false" : "true");
    buf_put(&o, tmp, (size_t)k);
    const char *tail1 = "  \"post_processor\": null,\n"
                        "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                        "\"trim_offsets\": true, \"use_regex\": true},\n"
                        "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
                        "    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n"
                        "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
                        "    \"byte_fallback\": false,\n";
    buf_put(&o, tail1, strlen(tail1));
    k = snprintf(tmp, sizeof tmp, "    \"ignore_merges\": %s,\n    \"vocab\": {", qwen2 ? "false" : "true");
    buf_put(&o, tmp, (size_t)k);
    for (size_t i = 0; i < t.n; i++) {
        buf_put(&o, i ? ",\n      " : "\n      ", i ? 8 : 7);
        put_json_str(&o, t.s[i]);
        k = snprintf(tmp, sizeof tmp, ": %zu", i);
        buf_put(&o, tmp, (size_t)k);
    }
    buf_put(&o, "\n    },\n    \"merges\": [\n      ", 29);
    if (merges.n)
        buf_put(&o, merges.p, merges.n);
    buf_put(&o, "\n    ]\n  }\n}\n", 13);
    buf_put(&o, "", 1);
    int rc = write_text(dir, "tokenizer.json", (const char *)o.p);

    /* tokenizer_config.json: Qwen2 says add_bos_token false; Llama 3's, like
     * the real one, says nothing (llama.cpp's llama-bpe default adds BOS) */
    char cfg[1024];
    if (qwen2)
        snprintf(cfg, sizeof cfg,
                 "{\n  \"tokenizer_class\": \"Qwen2Tokenizer\",\n  \"add_bos_token\": false,\n"
                 "  \"add_prefix_space\": false,\n  \"bos_token\": null,\n  \"eos_token\": \"%s\",\n"
                 "  \"pad_token\": \"%s\",\n  \"unk_token\": null,\n  \"model_max_length\": 32768\n}\n",
                 specials[0], specials[0]);
    else
        snprintf(cfg, sizeof cfg,
                 "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n"
                 "  \"bos_token\": \"%s\",\n  \"eos_token\": \"%s\",\n  \"model_max_length\": 131072\n}\n",
                 specials[0], specials[1]);
    if (!rc)
        rc = write_text(dir, "tokenizer_config.json", cfg);
    for (size_t i = 0; i < t.n; i++)
        free(t.s[i]);
    free(t.s);
    free(t.slot);
    free(merges.p);
    free(o.p);
    return rc;
}

/* Sparse checkpoint: the header is written by hand, every tensor's data is a
 * hole (zeros) except two markers, and ftruncate sets the size, so a 4+ GiB
 * file costs a few blocks of disk. Tensor i holds i+1 first and -(i+1) last. */
static int write_sparse(const char *dir, const struct spec *sp, size_t n, enum ec_dtype dt)
{
    if (dt != EC_F32) {
        fprintf(stderr, "edgec-genmodel: --sparse needs --dtype f32\n");
        return 2;
    }
    struct buf h = {0};
    char tmp[256];
    buf_put(&h, "{\"__metadata__\":{\"format\":\"pt\"}", 32);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t elems = sp[i].ne[0] * (sp[i].ndim == 2 ? sp[i].ne[1] : 1);
        int k;
        if (sp[i].ndim == 2)
            k = snprintf(tmp, sizeof tmp,
                         ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
                         sp[i].name, (unsigned long long)sp[i].ne[1], (unsigned long long)sp[i].ne[0],
                         (unsigned long long)off, (unsigned long long)(off + elems * 4));
        else
            k = snprintf(tmp, sizeof tmp,
                         ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}",
                         sp[i].name, (unsigned long long)sp[i].ne[0], (unsigned long long)off,
                         (unsigned long long)(off + elems * 4));
        buf_put(&h, tmp, (size_t)k);
        off += elems * 4;
    }
    buf_put(&h, "}", 1);
    while (h.n % 8)
        buf_put(&h, " ", 1);
    char *dest = ec_path_join(dir, "model.safetensors");
    FILE *f = dest ? fopen(dest, "wb") : NULL;
    int rc = 0;
    if (!f) {
        fprintf(stderr, "edgec-genmodel: cannot write %s\n", dest ? dest : "model.safetensors");
        rc = 4;
        goto out;
    }
    uint8_t len[8];
    for (int b = 0; b < 8; b++)
        len[b] = (uint8_t)((uint64_t)h.n >> (8 * b));
    uint64_t base = 8 + h.n;
    if (fwrite(len, 1, 8, f) != 8 || fwrite(h.p, 1, h.n, f) != h.n)
        rc = 4;
    off = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t elems = sp[i].ne[0] * (sp[i].ndim == 2 ? sp[i].ne[1] : 1);
        float first = (float)(i + 1), last = -(float)(i + 1);
        if (fseeko(f, (off_t)(base + off), SEEK_SET) != 0 || fwrite(&first, 4, 1, f) != 1 ||
            fseeko(f, (off_t)(base + off + elems * 4 - 4), SEEK_SET) != 0 ||
            fwrite(&last, 4, 1, f) != 1)
            rc = 4;
        off += elems * 4;
    }
    if (!rc && (fflush(f) != 0 || ftruncate(fileno(f), (off_t)(base + off)) != 0))
        rc = 4;
    if (fclose(f) != 0)
        rc = 4;
    if (rc)
        fprintf(stderr, "edgec-genmodel: write failed: %s\n", dest);
out:
    free(h.p);
    free(dest);
    return rc;
}

static int write_weights(const char *dir, const struct cfg *c, enum ec_dtype dt)
{
    size_t cap = 8 + 16 * (size_t)c->layers;
    struct spec *sp = calloc(cap, sizeof *sp);
    size_t n = 0;
    uint64_t hd = (uint64_t)c->head_dim;
    uint64_t qd = hd * (uint64_t)c->heads, kvd = hd * (uint64_t)c->kv_heads;
    float s_h = 1.0f / sqrtf((float)c->hidden), s_f = 1.0f / sqrtf((float)c->ffn);
    float s_o = 1.0f / sqrtf((float)qd);
    const float s_b = 0.1f; /* biases */
    bool qkv_b = c->attn_bias || strcmp(c->arch, "qwen2") == 0, o_b = c->attn_bias, mlp_b = c->mlp_bias;
#define ADD(nm, nd, a, b, sd)                                                                  \
    do {                                                                                       \
        snprintf(sp[n].name, sizeof sp[n].name, "%s", nm);                                     \
        sp[n].ndim = nd;                                                                       \
        sp[n].ne[0] = a;                                                                       \
        sp[n].ne[1] = b;                                                                       \
        sp[n].std = sd;                                                                        \
        n++;                                                                                   \
    } while (0)
    char nm[96];
    ADD("model.embed_tokens.weight", 2, (uint64_t)c->hidden, (uint64_t)c->vocab, 0.02f);
    for (long l = 0; l < c->layers; l++) {
        const char *parts[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                               "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        uint64_t H = (uint64_t)c->hidden, F = (uint64_t)c->ffn;
        /* ndim, in, out; weight std; bias? */
        const uint64_t shapes[9][3] = {{1, H, 0}, {2, H, qd}, {2, H, kvd}, {2, H, kvd}, {2, qd, H},
                                       {1, H, 0}, {2, H, F},  {2, H, F},   {2, F, H}};
        const float sds[9] = {0.0f, s_h, s_h, s_h, s_o, 0.0f, s_h, s_h, s_f};
        const bool bias[9] = {false, qkv_b, qkv_b, qkv_b, o_b, false, mlp_b, mlp_b, mlp_b};
        for (int k = 0; k < 9; k++) {
            snprintf(nm, sizeof nm, "model.layers.%ld.%s.weight", l, parts[k]);
            ADD(nm, (int)shapes[k][0], shapes[k][1], shapes[k][2], sds[k]);
            if (bias[k]) {
                snprintf(nm, sizeof nm, "model.layers.%ld.%s.bias", l, parts[k]);
                ADD(nm, 1, shapes[k][2], 0, s_b);
            }
        }
    }
    ADD("model.norm.weight", 1, (uint64_t)c->hidden, 0, 0.0f);
    if (!c->tied)
        ADD("lm_head.weight", 2, (uint64_t)c->hidden, (uint64_t)c->vocab, s_h);
#undef ADD

    if (c->sparse) {
        int src = write_sparse(dir, sp, n, dt);
        free(sp);
        return src;
    }

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_st_writer *w = NULL;
    char *dest = ec_path_join(dir, "model.safetensors");
    float *f32 = malloc(CHUNK_ELEMS * sizeof *f32);
    uint16_t *h16 = malloc(CHUNK_ELEMS * sizeof *h16);
    int rc = 0;
    if (!dest || !f32 || !h16) {
        rc = 4;
        goto out;
    }
    if (ec_st_writer_open(&w, dest, NULL, &d) != EC_OK ||
        ec_st_writer_add_meta(w, "format", "pt", &d) != EC_OK)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (ec_st_writer_add_tensor(w, sp[i].name, dt, sp[i].ndim, sp[i].ne, &d) != EC_OK)
            goto fail;
    if (ec_st_writer_begin_data(w, &d) != EC_OK)
        goto fail;
    struct rng r = {(uint64_t)c->seed * 0x2545F4914F6CDD1Dull + 1};
    int have = 0;
    float spare = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t total = sp[i].ne[0] * (sp[i].ndim == 2 ? sp[i].ne[1] : 1);
        for (uint64_t done = 0; done < total;) {
            size_t k = (size_t)(total - done < CHUNK_ELEMS ? total - done : CHUNK_ELEMS);
            for (size_t j = 0; j < k; j++) {
                float z = rng_normal(&r, &have, &spare);
                f32[j] = sp[i].std == 0.0f ? 1.0f + 0.05f * z : sp[i].std * z;
            }
            const void *src = f32;
            size_t bytes = k * 4;
            if (dt == EC_F16) {
                ec_fp32_to_fp16_row(f32, h16, k);
                src = h16;
                bytes = k * 2;
            } else if (dt == EC_BF16) {
                ec_fp32_to_bf16_row(f32, h16, k);
                src = h16;
                bytes = k * 2;
            }
            if (ec_st_writer_write(w, src, bytes, &d) != EC_OK)
                goto fail;
            done += k;
        }
    }
    if (ec_st_writer_commit(w, &d) != EC_OK)
        goto fail;
    goto out;
fail:
    fprintf(stderr, "edgec-genmodel: %s\n", d.msg);
    rc = ec_status_exit_code(d.code);
    if (rc == 0)
        rc = 5;
out:
    ec_st_writer_free(w);
    free(dest);
    free(f32);
    free(h16);
    free(sp);
    return rc;
}

int main(int argc, char **argv)
{
    struct cfg c = {.hidden = 64, .ffn = 172, .layers = 2, .heads = 8, .kv_heads = 4, .head_dim = 0,
                    .vocab = 512, .ctx = 512, .seed = 1, .dtype = "f32", .arch = "llama", .tokenizer = NULL,
                    .rope_scaling = "none"};
    bool help = false;
    const struct ec_opt opts[] = {
        {"arch", 0, EC_OPT_STRING, &c.arch, "A", "llama (default), mistral or qwen2"},
        {"hidden", 0, EC_OPT_INT, &c.hidden, "N", "hidden size (default 64)"},
        {"ffn", 0, EC_OPT_INT, &c.ffn, "N", "FFN intermediate size (default 172)"},
        {"layers", 0, EC_OPT_INT, &c.layers, "N", "layers (default 2)"},
        {"heads", 0, EC_OPT_INT, &c.heads, "N", "attention heads (default 8)"},
        {"kv-heads", 0, EC_OPT_INT, &c.kv_heads, "N", "key/value heads (default 4)"},
        {"head-dim", 0, EC_OPT_INT, &c.head_dim, "N",
         "per-head size, written to config.json as head_dim (default hidden / heads, not written)"},
        {"vocab", 0, EC_OPT_INT, &c.vocab, "N", "vocabulary size, >= 300 (default 512)"},
        {"ctx", 0, EC_OPT_INT, &c.ctx, "N", "max_position_embeddings (default 512)"},
        {"seed", 0, EC_OPT_INT, &c.seed, "S", "PRNG seed (default 1)"},
        {"dtype", 0, EC_OPT_STRING, &c.dtype, "T", "f32 (default), f16 or bf16"},
        {"tied", 0, EC_OPT_FLAG, &c.tied, NULL, "tie lm_head to the embedding (no lm_head)"},
        {"tokenizer", 0, EC_OPT_STRING, &c.tokenizer, "T",
         "spm (SentencePiece tokenizer.model), qwen2 or llama-bpe (byte-level BPE tokenizer.json); "
         "default qwen2 for --arch qwen2, else spm"},
        {"attn-bias", 0, EC_OPT_FLAG, &c.attn_bias, NULL, "llama: attention_bias (q/k/v/o biases)"},
        {"rope-scaling", 0, EC_OPT_STRING, &c.rope_scaling, "S",
         "none (default), linear (factor 2), llama3 (Llama 3.1's factors, theta 500000, original "
         "context 64) or yarn (factor 4, original context 64)"},
        {"mlp-bias", 0, EC_OPT_FLAG, &c.mlp_bias, NULL, "llama: mlp_bias (gate/up/down biases)"},
        {"sparse", 0, EC_OPT_FLAG, &c.sparse, NULL,
         "sparse file: all zeros except tensor i's first element = i+1 and last = -(i+1) "
         "(f32 only; for >4 GiB offset tests)"},
        {"help", 'h', EC_OPT_FLAG, &help, NULL, "show this help"},
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_opts_parse(opts, argc, argv, &pos, &n_pos, &d) != EC_OK)
        return die("", d.msg);
    if (help || n_pos != 1) {
        printf("Usage: edgec-genmodel OUT_DIR [options]\nWrite a random Llama-family checkpoint folder.\n");
        ec_opts_print_help(stdout, opts);
        free(pos);
        return help ? 0 : 2;
    }
    const char *dir = pos[0];
    enum ec_dtype dt;
    if (strcmp(c.dtype, "f32") == 0)
        dt = EC_F32;
    else if (strcmp(c.dtype, "f16") == 0)
        dt = EC_F16;
    else if (strcmp(c.dtype, "bf16") == 0)
        dt = EC_BF16;
    else
        return die("--dtype: expected f32, f16 or bf16, got ", c.dtype);
    const bool qwen2 = strcmp(c.arch, "qwen2") == 0, mistral = strcmp(c.arch, "mistral") == 0;
    if (!qwen2 && !mistral && strcmp(c.arch, "llama") != 0)
        return die("--arch: expected llama, mistral or qwen2, got ", c.arch);
    if (!c.tokenizer)
        c.tokenizer = qwen2 ? "qwen2" : "spm";
    const bool spm = strcmp(c.tokenizer, "spm") == 0, tok_qwen2 = strcmp(c.tokenizer, "qwen2") == 0;
    if (!spm && !tok_qwen2 && strcmp(c.tokenizer, "llama-bpe") != 0)
        return die("--tokenizer: expected spm, qwen2 or llama-bpe, got ", c.tokenizer);
    if ((c.attn_bias || c.mlp_bias) && strcmp(c.arch, "llama") != 0)
        return die("", "--attn-bias and --mlp-bias are llama options (qwen2 always has q/k/v biases)");
    const bool rs_linear = strcmp(c.rope_scaling, "linear") == 0, rs_llama3 = strcmp(c.rope_scaling, "llama3") == 0,
               rs_yarn = strcmp(c.rope_scaling, "yarn") == 0;
    if (!rs_linear && !rs_llama3 && !rs_yarn && strcmp(c.rope_scaling, "none") != 0)
        return die("--rope-scaling: expected none, linear, llama3 or yarn, got ", c.rope_scaling);
    const bool explicit_hd = c.head_dim > 0;
    if (!explicit_hd && c.heads > 0 && c.hidden % c.heads == 0)
        c.head_dim = c.hidden / c.heads;
    if (c.hidden < 2 || c.ffn < 1 || c.layers < 1 || c.heads < 1 || c.kv_heads < 1 || c.head_dim < 2 ||
        c.head_dim % 2 || c.heads % c.kv_heads || c.vocab < 300 || c.ctx < 1 || c.hidden > 1 << 20 ||
        c.ffn > 1 << 22 || c.layers > 4096 || c.vocab > 1 << 22 || c.head_dim > 1 << 16)
        return die("", "inconsistent sizes (hidden must split into an even head_dim per head unless "
                         "--head-dim is given, heads into kv-heads, vocab >= 300)");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return die("cannot create ", dir);

    /* special token ids: SentencePiece <s> 1 and </s> 2; byte-level BPE the
     * three added tokens at the end */
    long bos = 1, eos = 2;
    if (!spm) {
        bos = tok_qwen2 ? c.vocab - 3 : c.vocab - 3;
        eos = tok_qwen2 ? c.vocab - 3 : c.vocab - 2;
    }
    char hd_line[64] = "", extra[256] = "";
    if (explicit_hd)
        snprintf(hd_line, sizeof hd_line, "  \"head_dim\": %ld,\n", c.head_dim);
    if (qwen2)
        snprintf(extra, sizeof extra,
                 "  \"use_sliding_window\": false,\n  \"sliding_window\": %ld,\n  \"max_window_layers\": %ld,\n",
                 c.ctx, c.layers);
    else if (mistral)
        snprintf(extra, sizeof extra, "  \"sliding_window\": null,\n");
    else
        snprintf(extra, sizeof extra, "  \"attention_bias\": %s,\n  \"mlp_bias\": %s,\n",
                 c.attn_bias ? "true" : "false", c.mlp_bias ? "true" : "false");
    char text[4096];
    snprintf(text, sizeof text,
             "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
             "  \"hidden_size\": %ld,\n  \"intermediate_size\": %ld,\n"
             "  \"num_attention_heads\": %ld,\n  \"num_key_value_heads\": %ld,\n%s"
             "  \"num_hidden_layers\": %ld,\n  \"hidden_act\": \"silu\",\n"
             "  \"rms_norm_eps\": %s,\n  \"vocab_size\": %ld,\n"
             "  \"max_position_embeddings\": %ld,\n  \"rope_theta\": %s,\n"
             "  \"rope_scaling\": %s,\n%s"
             "  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": %ld,\n  \"eos_token_id\": %ld,\n"
             "  \"torch_dtype\": \"%s\",\n  \"initializer_range\": 0.02\n}\n",
             qwen2 ? "Qwen2ForCausalLM" : mistral ? "MistralForCausalLM" : "LlamaForCausalLM",
             qwen2 ? "qwen2" : mistral ? "mistral" : "llama", c.hidden, c.ffn, c.heads, c.kv_heads, hd_line,
             c.layers, qwen2 ? "1e-06" : "1e-05", c.vocab, c.ctx,
             qwen2 || mistral ? "1000000.0" : rs_llama3 ? "500000.0" : "10000.0",
             rs_linear ? "{\"type\": \"linear\", \"factor\": 2.0}"
             : rs_yarn ? "{\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64}"
             : rs_llama3 ? "{\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                           "\"original_max_position_embeddings\": 64, \"rope_type\": \"llama3\"}"
                         : "null",
             extra, c.tied ? "true" : "false", bos, eos,
             dt == EC_F32 ? "float32" : dt == EC_F16 ? "float16" : "bfloat16");
    int rc = write_text(dir, "config.json", text);
    if (!rc) {
        char gen[128];
        snprintf(gen, sizeof gen, "{\n  \"bos_token_id\": %ld,\n  \"eos_token_id\": %ld\n}\n", bos, eos);
        rc = write_text(dir, "generation_config.json", gen);
    }
    if (!rc && spm)
        rc = write_text(dir, "tokenizer_config.json",
                        "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"add_bos_token\": true,\n"
                        "  \"add_eos_token\": false,\n  \"bos_token\": \"<s>\",\n"
                        "  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n"
                        "  \"legacy\": true\n}\n");
    if (!rc)
        rc = spm ? write_tokenizer(dir, c.vocab) : write_bpe_tokenizer(dir, c.vocab, tok_qwen2);
    if (!rc)
        rc = write_weights(dir, &c, dt);
    free(pos);
    return rc;
}
