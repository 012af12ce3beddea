/* src/tokenizer/tokenizer.c: SPM and byte-level BPE tokenizers (see edgec/tokenizer.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/tokenizer.h"

/* ---- string -> int hash map (keys borrowed or owned by the table) ---- */

struct strmap {
    const char **keys; /* NULL = empty slot */
    uint32_t *lens;
    int32_t *vals;
    size_t cap;        /* power of two */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool strmap_init(struct strmap *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16)
        m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->lens = calloc(m->cap, sizeof *m->lens);
    m->vals = calloc(m->cap, sizeof *m->vals);
    return m->keys && m->lens && m->vals;
}

static void strmap_free(struct strmap *m)
{
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Insert or overwrite (the last value wins, as llama.cpp's token_to_id). */
static void strmap_put(struct strmap *m, const char *k, size_t n, int32_t v)
{
    size_t i = (size_t)hash_bytes(k, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == n && memcmp(m->keys[i], k, n) == 0) {
            m->vals[i] = v;
            return;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = k;
    m->lens[i] = (uint32_t)n;
    m->vals[i] = v;
}

static int32_t strmap_get(const struct strmap *m, const char *k, size_t n)
{
    if (!m->cap)
        return -1;
    size_t i = (size_t)hash_bytes(k, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == n && memcmp(m->keys[i], k, n) == 0)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

enum pre_kind { PRE_GPT2 = 0, PRE_LLAMA3, PRE_QWEN2 };

struct ec_tokenizer {
    const struct ec_vocab *v;
    struct strmap tok;     /* piece -> id */
    struct strmap merges;  /* "a b" -> rank (merges or spm_merges) */
    bool spm;
    bool rank_mode;        /* SPM scored by merge rank */
    bool add_bos, add_eos;
    enum pre_kind pre;
    bool ignore_merges;
    int32_t *specials;     /* ids matched as text, longest first */
    size_t n_specials;
    char byte_enc[256][3]; /* byte-level BPE: byte -> UTF-8 of its mapped code point */
    uint8_t byte_enc_len[256];
};

static size_t utf8_len(uint8_t c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

static int cmp_special_len(const void *a, const void *b, void *ctx)
{
    const struct ec_vocab *v = ctx;
    size_t la = strlen(v->tokens[*(const int32_t *)a]), lb = strlen(v->tokens[*(const int32_t *)b]);
    if (la != lb)
        return la > lb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

enum ec_status ec_tokenizer_new(struct ec_tokenizer **out, const struct ec_vocab *v, struct ec_diag *d)
{
    *out = NULL;
    if (v->type != EC_VOCAB_SPM && v->type != EC_VOCAB_BPE)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "tokenizer: vocabulary type %d is not supported", (int)v->type);
    if (v->n_tokens == 0 || !v->tokens || !v->token_types)
        return ec_fail(d, EC_ERR_ARG, "tokenizer: empty vocabulary");
    if (v->type == EC_VOCAB_SPM && !v->scores && v->n_spm_merges == 0)
        return ec_fail(d, EC_ERR_ARG, "tokenizer: SPM vocabulary without scores or merges");
    struct ec_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return ec_fail(d, EC_ERR_NOMEM, "tokenizer: out of memory");
    t->v = v;
    t->spm = v->type == EC_VOCAB_SPM;
    t->add_bos = ec_vocab_adds_bos(v);
    t->add_eos = v->has_add_eos ? v->add_eos : false;
    if (!strmap_init(&t->tok, v->n_tokens))
        goto out_nomem;
    for (uint32_t i = 0; i < v->n_tokens; i++)
        strmap_put(&t->tok, v->tokens[i], strlen(v->tokens[i]), (int32_t)i);

    char **mlist = t->spm ? v->spm_merges : v->merges;
    uint32_t nm = t->spm ? v->n_spm_merges : v->n_merges;
    t->rank_mode = t->spm && nm > 0;
    if (!strmap_init(&t->merges, nm))
        goto out_nomem;
    for (uint32_t i = 0; i < nm; i++) {
        /* first rank wins for duplicate pairs */
        if (strmap_get(&t->merges, mlist[i], strlen(mlist[i])) < 0)
            strmap_put(&t->merges, mlist[i], strlen(mlist[i]), (int32_t)i);
    }

    if (v->pre && strcmp(v->pre, "llama-bpe") == 0) {
        t->pre = PRE_LLAMA3;
        t->ignore_merges = true;
    } else if (v->pre && strcmp(v->pre, "qwen2") == 0) {
        t->pre = PRE_QWEN2;
    } else {
        t->pre = PRE_GPT2;
    }

    t->specials = malloc(v->n_tokens * sizeof *t->specials);
    if (!t->specials)
        goto out_nomem;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        int32_t ty = v->token_types[i];
        if ((ty == EC_TOK_CONTROL || ty == EC_TOK_USER_DEFINED || ty == EC_TOK_UNKNOWN) && v->tokens[i][0])
            t->specials[t->n_specials++] = (int32_t)i;
    }
    qsort_r(t->specials, t->n_specials, sizeof *t->specials, cmp_special_len, (void *)v);

    /* GPT-2 bytes_to_unicode */
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        if (cp < 0x80) {
            t->byte_enc[b][0] = (char)cp;
            t->byte_enc_len[b] = 1;
        } else {
            t->byte_enc[b][0] = (char)(0xc0 | (cp >> 6));
            t->byte_enc[b][1] = (char)(0x80 | (cp & 0x3f));
            t->byte_enc_len[b] = 2;
        }
    }
    *out = t;
    return EC_OK;

out_nomem:
    ec_tokenizer_free(t);
    return ec_fail(d, EC_ERR_NOMEM, "tokenizer: out of memory for %u tokens", v->n_tokens);
}

void ec_tokenizer_free(struct ec_tokenizer *t)
{
    if (!t)
        return;
    strmap_free(&t->tok);
    strmap_free(&t->merges);
    free(t->specials);
    free(t);
}

int32_t ec_tokenizer_find(const struct ec_tokenizer *t, const char *piece, size_t len)
{
    return strmap_get(&t->tok, piece, len);
}

/* ---- growable buffers ---- */

struct ids {
    int32_t *a;
    size_t n, cap;
    bool oom;
};

static void ids_push(struct ids *o, int32_t id)
{
    if (o->oom)
        return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        int32_t *na = realloc(o->a, nc * sizeof *na);
        if (!na) {
            o->oom = true;
            return;
        }
        o->a = na;
        o->cap = nc;
    }
    o->a[o->n++] = id;
}

struct sbuf {
    char *a;
    size_t n, cap;
    bool oom;
};

static void sbuf_add(struct sbuf *s, const char *p, size_t n)
{
    if (s->oom)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        while (nc < s->n + n + 1)
            nc *= 2;
        char *na = realloc(s->a, nc);
        if (!na) {
            s->oom = true;
            return;
        }
        s->a = na;
        s->cap = nc;
    }
    memcpy(s->a + s->n, p, n);
    s->n += n;
    s->a[s->n] = '\0';
}

bool ec_vocab_adds_bos(const struct ec_vocab *v)
{
    if (v->has_add_bos)
        return v->add_bos;
    /* llama.cpp: SPM yes; BPE only for Llama 3's pre-tokenizer (its default
     * BOS id is meaningless without a bos_token_id, so that needs one) */
    return v->type == EC_VOCAB_SPM ||
           (v->type == EC_VOCAB_BPE && v->pre && strcmp(v->pre, "llama-bpe") == 0 && v->bos_id >= 0);
}

int32_t ec_vocab_chunk_bos(const struct ec_vocab *v)
{
    return v->bos_id >= 0 && ec_vocab_adds_bos(v) ? v->bos_id : -1;
}

/* ---- the bigram merge loop shared by SPM and BPE ---- */

struct sym {
    int32_t prev, next;
    const char *text;
    size_t n;
};

struct bigram {
    int32_t left, right;
    double score; /* higher first */
    size_t size;  /* bytes of left+right when queued */
};

struct heap {
    struct bigram *a;
    size_t n, cap;
    bool oom;
};

static bool bigram_before(const struct bigram *x, const struct bigram *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
    if (h->oom)
        return;
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        struct bigram *na = realloc(h->a, nc * sizeof *na);
        if (!na) {
            h->oom = true;
            return;
        }
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->a[0];
    struct bigram last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->a[c + 1], &h->a[c]))
            c++;
        if (!bigram_before(&h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

struct work {
    struct sym *syms;
    size_t cap;
    struct heap heap;
    struct sbuf key; /* scratch for "a b" */
    bool oom;
};

/* Score a candidate pair, or return false when it cannot merge. */
static bool pair_score(const struct ec_tokenizer *t, struct work *w, const struct sym *l, const struct sym *r,
                       double *score)
{
    if (t->spm && !t->rank_mode) {
        int32_t id = strmap_get(&t->tok, l->text, l->n + r->n); /* l and r are adjacent in memory */
        if (id < 0)
            return false;
        *score = t->v->scores[id];
        return true;
    }
    w->key.n = 0;
    sbuf_add(&w->key, l->text, l->n);
    sbuf_add(&w->key, " ", 1);
    sbuf_add(&w->key, r->text, r->n);
    if (w->key.oom)
        return false;
    int32_t rank = strmap_get(&t->merges, w->key.a, w->key.n);
    if (rank < 0)
        return false;
    if (t->rank_mode && strmap_get(&t->tok, l->text, l->n + r->n) < 0)
        return false;
    *score = -(double)rank;
    return true;
}

static void try_add(const struct ec_tokenizer *t, struct work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    double score;
    if (!pair_score(t, w, &w->syms[left], &w->syms[right], &score))
        return;
    heap_push(&w->heap, (struct bigram){.left = left, .right = right, .score = score,
                                        .size = w->syms[left].n + w->syms[right].n});
}

/* Split text into UTF-8 characters and merge; returns the symbol count. */
static size_t merge_text(const struct ec_tokenizer *t, struct work *w, const char *text, size_t len)
{
    if (len > w->cap) {
        size_t nc = w->cap ? w->cap : 256;
        while (nc < len)
            nc *= 2;
        struct sym *ns = realloc(w->syms, nc * sizeof *ns);
        if (!ns) {
            w->oom = true;
            return 0;
        }
        w->syms = ns;
        w->cap = nc;
    }
    size_t ns = 0;
    for (size_t off = 0; off < len;) {
        size_t n = utf8_len((uint8_t)text[off]);
        if (n > len - off)
            n = len - off;
        w->syms[ns] = (struct sym){.prev = (int32_t)ns - 1, .next = off + n < len ? (int32_t)ns + 1 : -1,
                                   .text = text + off, .n = n};
        ns++;
        off += n;
    }
    w->heap.n = 0;
    for (size_t i = 1; i < ns; i++)
        try_add(t, w, (int32_t)i - 1, (int32_t)i);
    while (w->heap.n > 0) {
        struct bigram b = heap_pop(&w->heap);
        struct sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size || l->next != b.right)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->syms[r->next].prev = b.left;
        try_add(t, w, l->prev, b.left);
        try_add(t, w, b.left, l->next);
    }
    if (w->heap.oom || w->key.oom)
        w->oom = true;
    return ns;
}

static void spm_byte_token(const struct ec_tokenizer *t, uint8_t c, struct ids *out)
{
    static const char hx[] = "0123456789ABCDEF";
    char buf[6] = {'<', '0', 'x', hx[c >> 4], hx[c & 15], '>'};
    int32_t id = strmap_get(&t->tok, buf, 6);
    if (id < 0)
        id = strmap_get(&t->tok, (const char *)&c, 1);
    if (id < 0)
        id = t->v->unk_id;
    if (id >= 0)
        ids_push(out, id);
}

static void spm_tokenize(const struct ec_tokenizer *t, struct work *w, const char *text, size_t len, struct ids *out)
{
    size_t ns = merge_text(t, w, text, len);
    if (w->oom || ns == 0)
        return;
    for (int32_t i = 0; i != -1; i = w->syms[i].next) {
        const struct sym *s = &w->syms[i];
        int32_t id = strmap_get(&t->tok, s->text, s->n);
        if (id >= 0) {
            ids_push(out, id);
        } else {
            for (size_t k = 0; k < s->n; k++)
                spm_byte_token(t, (uint8_t)s->text[k], out);
        }
    }
}

/* ---- byte-level BPE pre-tokenizer ---- */

static uint32_t decode_cp(const uint8_t *s, size_t len, size_t *adv)
{
    uint8_t c = s[0];
    size_t n = utf8_len(c);
    if (n == 1 || n > len) {
        *adv = 1;
        return c >= 0x80 ? 0xFFFD : c;
    }
    uint32_t cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *adv = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *adv = n;
    return cp;
}

static bool cp_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool cp_number(uint32_t c)
{
    static const uint32_t r[][2] = {
        {'0', '9'}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9},
        {0x966, 0x96F}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2189},
        {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x3007, 0x3007}, {0x3021, 0x3029},
        {0xFF10, 0xFF19},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (c >= r[i][0] && c <= r[i][1])
            return true;
    return false;
}

static bool cp_letter(uint32_t c)
{
    static const uint32_t r[][2] = {
        {'A', 'Z'}, {'a', 'z'}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6}, {0xD8, 0xF6},
        {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x370, 0x374}, {0x376, 0x37D}, {0x37F, 0x37F},
        {0x386, 0x386}, {0x388, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x560, 0x588},
        {0x5D0, 0x5EA}, {0x620, 0x64A}, {0x671, 0x6D3}, {0x904, 0x939}, {0xE01, 0xE30}, {0x10A0, 0x10FF},
        {0x1100, 0x11FF}, {0x1E00, 0x1FBC}, {0x2C00, 0x2CE4}, {0x3041, 0x3096}, {0x309D, 0x309F},
        {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E}, {0x3400, 0x4DBF},
        {0x4E00, 0x9FFF}, {0xA000, 0xA48C}, {0xAC00, 0xD7A3}, {0xF900, 0xFAFF}, {0xFF21, 0xFF3A},
        {0xFF41, 0xFF5A}, {0xFF66, 0xFFDC}, {0x20000, 0x323AF},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (c >= r[i][0] && c <= r[i][1])
            return true;
    return false;
}

enum { CL_L = 1, CL_N = 2, CL_S = 4, CL_NL = 8 };

struct cps {
    uint32_t *cp;
    uint8_t *cl;
    uint32_t *off; /* byte offset of each code point; off[n] = len */
    size_t n;
};

static size_t match_contraction(const struct cps *c, size_t i, bool icase)
{
    if (c->cp[i] != '\'' || i + 1 >= c->n)
        return 0;
    uint32_t a = c->cp[i + 1], b = i + 2 < c->n ? c->cp[i + 2] : 0;
    if (icase) {
        if (a >= 'A' && a <= 'Z')
            a |= 0x20;
        if (b >= 'A' && b <= 'Z')
            b |= 0x20;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* Length (in code points) of the pre-tokenizer match at i; always >= 1. */
static size_t pre_match(const struct cps *c, size_t i, enum pre_kind kind)
{
    size_t n = c->n, j, k;
    uint8_t f = c->cl[i];
    if ((k = match_contraction(c, i, kind != PRE_GPT2)) > 0)
        return k;
    if (kind == PRE_GPT2) {
        j = i + (c->cp[i] == ' ' && i + 1 < n ? 1 : 0);
        uint8_t g = c->cl[j];
        if (j > i && (g & CL_S))
            j = i; /* " " followed by whitespace: fall through to \s rules */
        g = c->cl[j];
        if (g & CL_L) {
            while (j < n && (c->cl[j] & CL_L))
                j++;
            return j - i;
        }
        if (g & CL_N) {
            while (j < n && (c->cl[j] & CL_N))
                j++;
            return j - i;
        }
        if (!(g & CL_S)) {
            while (j < n && !(c->cl[j] & (CL_L | CL_N | CL_S)))
                j++;
            return j - i;
        }
    } else {
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        j = i;
        if (!(f & (CL_NL | CL_L | CL_N)) && i + 1 < n && (c->cl[i + 1] & CL_L))
            j = i + 1;
        if (c->cl[j] & CL_L) {
            while (j < n && (c->cl[j] & CL_L))
                j++;
            return j - i;
        }
        /* \p{N}{1,3} or \p{N} */
        if (f & CL_N) {
            size_t maxn = kind == PRE_LLAMA3 ? 3 : 1;
            for (j = i; j < n && j - i < maxn && (c->cl[j] & CL_N); j++)
                ;
            return j - i;
        }
        /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
        j = i + (c->cp[i] == ' ' ? 1 : 0);
        if (j < n && !(c->cl[j] & (CL_S | CL_L | CL_N))) {
            while (j < n && !(c->cl[j] & (CL_S | CL_L | CL_N)))
                j++;
            while (j < n && (c->cl[j] & CL_NL))
                j++;
            return j - i;
        }
        /* \s*[\r\n]+ */
        size_t last_nl = 0;
        bool any_nl = false;
        for (j = i; j < n && (c->cl[j] & CL_S); j++)
            if (c->cl[j] & CL_NL) {
                last_nl = j;
                any_nl = true;
            }
        if (any_nl)
            return last_nl + 1 - i;
    }
    /* \s+(?!\S) then \s+ */
    for (j = i; j < n && (c->cl[j] & CL_S); j++)
        ;
    if (j == i)
        return 1; /* unreachable: every class is covered above */
    if (j == n || j - i == 1)
        return j - i;
    return j - i - 1;
}

static void bpe_word(const struct ec_tokenizer *t, struct work *w, struct sbuf *enc, const char *word, size_t len,
                     struct ids *out)
{
    enc->n = 0;
    for (size_t k = 0; k < len; k++)
        sbuf_add(enc, t->byte_enc[(uint8_t)word[k]], t->byte_enc_len[(uint8_t)word[k]]);
    if (enc->oom) {
        w->oom = true;
        return;
    }
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->tok, enc->a, enc->n);
        if (id >= 0) {
            ids_push(out, id);
            return;
        }
    }
    size_t ns = merge_text(t, w, enc->a, enc->n);
    if (w->oom || ns == 0)
        return;
    for (int32_t i = 0; i != -1; i = w->syms[i].next) {
        const struct sym *s = &w->syms[i];
        int32_t id = strmap_get(&t->tok, s->text, s->n);
        if (id >= 0) {
            ids_push(out, id);
            continue;
        }
        for (size_t k = 0; k < s->n;) {
            size_t m = utf8_len((uint8_t)s->text[k]);
            if (m > s->n - k)
                m = s->n - k;
            id = strmap_get(&t->tok, s->text + k, m);
            if (id >= 0)
                ids_push(out, id);
            k += m;
        }
    }
}

static void bpe_tokenize(const struct ec_tokenizer *t, struct work *w, const char *text, size_t len, struct ids *out)
{
    struct cps c = {0};
    struct sbuf enc = {0};
    c.cp = malloc((len + 1) * sizeof *c.cp);
    c.cl = malloc(len + 1);
    c.off = malloc((len + 1) * sizeof *c.off);
    if (!c.cp || !c.cl || !c.off) {
        w->oom = true;
        goto out_free;
    }
    for (size_t off = 0; off < len;) {
        size_t adv;
        uint32_t cp = decode_cp((const uint8_t *)text + off, len - off, &adv);
        c.cp[c.n] = cp;
        c.cl[c.n] = (uint8_t)((cp_letter(cp) ? CL_L : 0) | (cp_number(cp) ? CL_N : 0) | (cp_space(cp) ? CL_S : 0) |
                              (cp == '\r' || cp == '\n' ? CL_NL : 0));
        c.off[c.n++] = (uint32_t)off;
        off += adv;
    }
    c.off[c.n] = (uint32_t)len;
    for (size_t i = 0; i < c.n && !w->oom;) {
        size_t m = pre_match(&c, i, t->pre);
        bpe_word(t, w, &enc, text + c.off[i], c.off[i + m] - c.off[i], out);
        i += m;
    }
out_free:
    free(c.cp);
    free(c.cl);
    free(c.off);
    free(enc.a);
}

/* ---- fragments: raw text and special tokens ---- */

struct frag {
    size_t off, len; /* raw text when id < 0 */
    int32_t id;
};

struct frags {
    struct frag *a;
    size_t n, cap;
};

static bool frags_insert(struct frags *f, size_t at, struct frag x)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        struct frag *na = realloc(f->a, nc * sizeof *na);
        if (!na)
            return false;
        f->a = na;
        f->cap = nc;
    }
    memmove(f->a + at + 1, f->a + at, (f->n - at) * sizeof *f->a);
    f->a[at] = x;
    f->n++;
    return true;
}

static bool partition_specials(const struct ec_tokenizer *t, const char *text, struct frags *f, bool parse_special)
{
    for (size_t s = 0; s < t->n_specials; s++) {
        int32_t id = t->specials[s];
        int32_t ty = t->v->token_types[id];
        if (!parse_special && ty != EC_TOK_USER_DEFINED)
            continue;
        const char *pat = t->v->tokens[id];
        size_t pl = strlen(pat);
        for (size_t i = 0; i < f->n; i++) {
            if (f->a[i].id >= 0 || f->a[i].len < pl)
                continue;
            const char *base = text + f->a[i].off;
            const char *hit = memmem(base, f->a[i].len, pat, pl);
            if (!hit)
                continue;
            size_t pre = (size_t)(hit - base);
            struct frag rest = {.off = f->a[i].off + pre + pl, .len = f->a[i].len - pre - pl, .id = -1};
            struct frag tok = {.off = 0, .len = 0, .id = id};
            if (pre == 0) {
                f->a[i] = tok;
            } else {
                f->a[i].len = pre;
                if (!frags_insert(f, ++i, tok))
                    return false;
            }
            if (rest.len > 0 && !frags_insert(f, i + 1, rest))
                return false;
            /* the loop continues with the remainder at i + 1 */
        }
    }
    return true;
}

enum ec_status ec_tokenizer_encode(const struct ec_tokenizer *t, const char *text, size_t len, bool add_special,
                                   bool parse_special, int32_t **ids_out, size_t *n_out, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    struct ids out = {0};
    struct frags f = {0};
    struct work w = {0};
    struct sbuf buf = {0};
    *ids_out = NULL;
    *n_out = 0;
    const struct ec_vocab *v = t->v;
    if (add_special && t->add_bos) {
        if (v->bos_id < 0) {
            st = ec_fail(d, EC_ERR_ARG, "tokenizer: add_bos is set but the vocabulary has no BOS token");
            goto out_free;
        }
        ids_push(&out, v->bos_id);
    }
    if (len > 0) {
        if (!frags_insert(&f, 0, (struct frag){.off = 0, .len = len, .id = -1}) ||
            !partition_specials(t, text, &f, parse_special)) {
            st = ec_fail(d, EC_ERR_NOMEM, "tokenizer: out of memory");
            goto out_free;
        }
    }
    bool prev_special = true;
    for (size_t i = 0; i < f.n; i++) {
        if (f.a[i].id >= 0) {
            ids_push(&out, f.a[i].id);
            prev_special = true;
            continue;
        }
        const char *p = text + f.a[i].off;
        if (t->spm) {
            buf.n = 0;
            if (v->add_space_prefix && prev_special)
                sbuf_add(&buf, "\xe2\x96\x81", 3);
            for (size_t k = 0; k < f.a[i].len; k++) {
                if (p[k] == ' ')
                    sbuf_add(&buf, "\xe2\x96\x81", 3);
                else
                    sbuf_add(&buf, p + k, 1);
            }
            if (buf.oom) {
                w.oom = true;
                break;
            }
            spm_tokenize(t, &w, buf.a, buf.n, &out);
        } else {
            bpe_tokenize(t, &w, p, f.a[i].len, &out);
        }
        prev_special = false;
        if (w.oom)
            break;
    }
    if (add_special && t->add_eos) {
        if (v->eos_id < 0) {
            st = ec_fail(d, EC_ERR_ARG, "tokenizer: add_eos is set but the vocabulary has no EOS token");
            goto out_free;
        }
        ids_push(&out, v->eos_id);
    }
    if (w.oom || out.oom) {
        st = ec_fail(d, EC_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
        goto out_free;
    }
    *ids_out = out.a;
    *n_out = out.n;
    out.a = NULL;
out_free:
    free(out.a);
    free(f.a);
    free(w.syms);
    free(w.heap.a);
    free(w.key.a);
    free(buf.a);
    return st;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum ec_status ec_tokenizer_decode(const struct ec_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                                   size_t *len, struct ec_diag *d)
{
    struct sbuf s = {0};
    const struct ec_vocab *v = t->v;
    *text = NULL;
    *len = 0;
    sbuf_add(&s, "", 0);
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || (uint32_t)id >= v->n_tokens) {
            free(s.a);
            return ec_fail(d, EC_ERR_ARG, "tokenizer: id %d at position %zu is out of range (vocabulary of %u)", id,
                           i, v->n_tokens);
        }
        const char *p = v->tokens[id];
        int32_t ty = v->token_types[id];
        if (ty == EC_TOK_CONTROL || ty == EC_TOK_UNUSED)
            continue;
        if (ty == EC_TOK_USER_DEFINED) {
            sbuf_add(&s, p, strlen(p));
        } else if (t->spm) {
            if (ty == EC_TOK_BYTE && strlen(p) == 6 && hexval(p[3]) >= 0 && hexval(p[4]) >= 0) {
                char b = (char)(hexval(p[3]) * 16 + hexval(p[4]));
                sbuf_add(&s, &b, 1);
            } else if (ty == EC_TOK_UNKNOWN) {
                sbuf_add(&s, "\xe2\x96\x85", 3);
            } else {
                for (; *p; p++) {
                    if (strncmp(p, "\xe2\x96\x81", 3) == 0) {
                        sbuf_add(&s, " ", 1);
                        p += 2;
                    } else {
                        sbuf_add(&s, p, 1);
                    }
                }
            }
        } else {
            /* byte-level: map each code point back to its byte */
            size_t L = strlen(p);
            for (size_t k = 0; k < L;) {
                size_t adv;
                uint32_t cp = decode_cp((const uint8_t *)p + k, L - k, &adv);
                int b = -1;
                for (int x = 0; x < 256 && b < 0; x++) {
                    size_t bl = t->byte_enc_len[x];
                    if (bl == adv && memcmp(t->byte_enc[x], p + k, bl) == 0)
                        b = x;
                }
                if (b >= 0) {
                    char ch = (char)b;
                    sbuf_add(&s, &ch, 1);
                } else {
                    (void)cp;
                    sbuf_add(&s, p + k, adv);
                }
                k += adv;
            }
        }
    }
    if (s.oom) {
        free(s.a);
        return ec_fail(d, EC_ERR_NOMEM, "tokenizer: out of memory decoding %zu ids", n_ids);
    }
    size_t skip = t->spm && v->add_space_prefix && s.n > 0 && s.a[0] == ' ' ? 1 : 0;
    memmove(s.a, s.a + skip, s.n - skip + 1);
    *text = s.a;
    *len = s.n - skip;
    return EC_OK;
}
