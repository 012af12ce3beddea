/* edgec-genmodel: write a random Llama checkpoint folder for demos and benchmarks.
 *
 *   edgec-genmodel OUT_DIR [--hidden N --ffn N --layers N --heads N --kv-heads N
 *                  --vocab N --ctx N --seed S --dtype f32|f16|bf16 --tied]
 *
 * Writes config.json, generation_config.json, tokenizer_config.json,
 * tokenizer.model (a SentencePiece BPE ModelProto with byte fallback:
 * <unk>, <s>, </s>, the 256 <0xXX> byte pieces, then generated pieces) and
 * model.safetensors with weights from a fixed-seed PRNG (normal, std 0.02
 * for embeddings, 1/sqrt(fan_in) for projections, norms near 1). Tensors
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
    long hidden, ffn, layers, heads, kv_heads, vocab, ctx, seed;
    const char *dtype;
    bool tied;
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

static int write_weights(const char *dir, const struct cfg *c, enum ec_dtype dt)
{
    size_t cap = 8 + 9 * (size_t)c->layers;
    struct spec *sp = calloc(cap, sizeof *sp);
    size_t n = 0;
    uint64_t hd = (uint64_t)(c->hidden / c->heads);
    uint64_t kvd = hd * (uint64_t)c->kv_heads;
    float s_h = 1.0f / sqrtf((float)c->hidden), s_f = 1.0f / sqrtf((float)c->ffn);
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
        uint64_t shapes[9][3] = {{1, H, 0}, {2, H, H}, {2, H, kvd}, {2, H, kvd}, {2, H, H},
                                 {1, H, 0}, {2, H, F}, {2, H, F},   {2, F, H}};
        for (int k = 0; k < 9; k++) {
            snprintf(nm, sizeof nm, "model.layers.%ld.%s.weight", l, parts[k]);
            float sd = shapes[k][0] == 1 ? 0.0f : (k == 8 ? s_f : s_h);
            ADD(nm, (int)shapes[k][0], shapes[k][1], shapes[k][2], sd);
        }
    }
    ADD("model.norm.weight", 1, (uint64_t)c->hidden, 0, 0.0f);
    if (!c->tied)
        ADD("lm_head.weight", 2, (uint64_t)c->hidden, (uint64_t)c->vocab, s_h);
#undef ADD

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
    struct cfg c = {.hidden = 64, .ffn = 172, .layers = 2, .heads = 8, .kv_heads = 4,
                    .vocab = 512, .ctx = 512, .seed = 1, .dtype = "f32"};
    bool help = false;
    const struct ec_opt opts[] = {
        {"hidden", 0, EC_OPT_INT, &c.hidden, "N", "hidden size (default 64)"},
        {"ffn", 0, EC_OPT_INT, &c.ffn, "N", "FFN intermediate size (default 172)"},
        {"layers", 0, EC_OPT_INT, &c.layers, "N", "layers (default 2)"},
        {"heads", 0, EC_OPT_INT, &c.heads, "N", "attention heads (default 8)"},
        {"kv-heads", 0, EC_OPT_INT, &c.kv_heads, "N", "key/value heads (default 4)"},
        {"vocab", 0, EC_OPT_INT, &c.vocab, "N", "vocabulary size, >= 300 (default 512)"},
        {"ctx", 0, EC_OPT_INT, &c.ctx, "N", "max_position_embeddings (default 512)"},
        {"seed", 0, EC_OPT_INT, &c.seed, "S", "PRNG seed (default 1)"},
        {"dtype", 0, EC_OPT_STRING, &c.dtype, "T", "f32 (default), f16 or bf16"},
        {"tied", 0, EC_OPT_FLAG, &c.tied, NULL, "tie lm_head to the embedding (no lm_head)"},
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
        printf("Usage: edgec-genmodel OUT_DIR [options]\nWrite a random Llama checkpoint folder.\n");
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
    if (c.hidden < 2 || c.ffn < 1 || c.layers < 1 || c.heads < 1 || c.kv_heads < 1 ||
        c.hidden % c.heads || c.heads % c.kv_heads || (c.hidden / c.heads) % 2 || c.vocab < 300 ||
        c.ctx < 1 || c.hidden > 1 << 20 || c.ffn > 1 << 22 || c.layers > 4096 || c.vocab > 1 << 22)
        return die("", "inconsistent sizes (hidden must split into an even head_dim per head, "
                         "heads into kv-heads, vocab >= 300)");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return die("cannot create ", dir);

    char text[4096];
    snprintf(text, sizeof text,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %ld,\n  \"intermediate_size\": %ld,\n"
             "  \"num_attention_heads\": %ld,\n  \"num_key_value_heads\": %ld,\n"
             "  \"num_hidden_layers\": %ld,\n  \"hidden_act\": \"silu\",\n"
             "  \"rms_norm_eps\": 1e-05,\n  \"vocab_size\": %ld,\n"
             "  \"max_position_embeddings\": %ld,\n  \"rope_theta\": 10000.0,\n"
             "  \"rope_scaling\": null,\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
             "  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
             "  \"torch_dtype\": \"%s\",\n  \"initializer_range\": 0.02\n}\n",
             c.hidden, c.ffn, c.heads, c.kv_heads, c.layers, c.vocab, c.ctx,
             c.tied ? "true" : "false",
             dt == EC_F32 ? "float32" : dt == EC_F16 ? "float16" : "bfloat16");
    int rc = write_text(dir, "config.json", text);
    if (!rc)
        rc = write_text(dir, "generation_config.json",
                        "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
    if (!rc)
        rc = write_text(dir, "tokenizer_config.json",
                        "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"add_bos_token\": true,\n"
                        "  \"add_eos_token\": false,\n  \"bos_token\": \"<s>\",\n"
                        "  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n"
                        "  \"legacy\": true\n}\n");
    if (!rc)
        rc = write_tokenizer(dir, c.vocab);
    if (!rc)
        rc = write_weights(dir, &c, dt);
    free(pos);
    return rc;
}
