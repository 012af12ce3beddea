/* formats/sp_model.c: SentencePiece tokenizer.model (a protobuf ModelProto).
 *
 * A minimal wire-format reader, bounds-checked at every step:
 *   ModelProto     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece  1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec    3 model_type, 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
 *   NormalizerSpec 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces
 * Unknown fields are skipped. Token types follow llama.cpp's converter
 * (_create_vocab_sentencepiece): UNKNOWN, CONTROL, UNUSED and BYTE pieces keep
 * their type, NORMAL and USER_DEFINED pieces become NORMAL.
 */
#include <stdlib.h>
#include <string.h>

#include "edgec/model.h"

struct pb {
    const uint8_t *buf;
    size_t base; /* offset of buf[0] in the file, for messages */
    size_t n, pos;
    const char *path;
};

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

static enum ec_status pb_varint(struct pb *p, uint64_t *out, struct ec_diag *d)
{
    uint64_t v = 0;
    size_t start = p->pos;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p->pos >= p->n)
            return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: varint runs past the end of its message",
                           p->path, p->base + start);
        uint8_t b = p->buf[p->pos++];
        if (shift == 63 && (b & 0x7e))
            return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: varint overflows 64 bits", p->path,
                           p->base + start);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return EC_OK;
        }
    }
    return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: varint longer than 10 bytes", p->path, p->base + start);
}

/* Reads a field key; *wire and *field are set. */
static enum ec_status pb_key(struct pb *p, uint32_t *field, uint32_t *wire, struct ec_diag *d)
{
    size_t at = p->pos;
    uint64_t k;
    enum ec_status st = pb_varint(p, &k, d);
    if (st != EC_OK)
        return st;
    *wire = (uint32_t)(k & 7);
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: invalid field number %llu", p->path, p->base + at,
                       (unsigned long long)(k >> 3));
    *field = (uint32_t)(k >> 3);
    return EC_OK;
}

/* A length-delimited payload: sub-reader over it. */
static enum ec_status pb_len(struct pb *p, struct pb *sub, struct ec_diag *d)
{
    size_t at = p->pos;
    uint64_t len;
    enum ec_status st = pb_varint(p, &len, d);
    if (st != EC_OK)
        return st;
    if (len > p->n - p->pos)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: length %llu exceeds the %zu bytes left", p->path,
                       p->base + at, (unsigned long long)len, p->n - p->pos);
    sub->buf = p->buf + p->pos;
    sub->base = p->base + p->pos;
    sub->n = (size_t)len;
    sub->pos = 0;
    sub->path = p->path;
    p->pos += (size_t)len;
    return EC_OK;
}

static enum ec_status pb_fixed32(struct pb *p, uint32_t *out, struct ec_diag *d)
{
    if (p->n - p->pos < 4)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: fixed32 runs past the end of its message", p->path,
                       p->base + p->pos);
    const uint8_t *b = p->buf + p->pos;
    *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    p->pos += 4;
    return EC_OK;
}

static enum ec_status pb_skip(struct pb *p, uint32_t wire, struct ec_diag *d)
{
    uint64_t v;
    uint32_t u;
    struct pb sub;
    switch (wire) {
    case PB_VARINT:
        return pb_varint(p, &v, d);
    case PB_FIXED64:
        if (p->n - p->pos < 8)
            return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: fixed64 runs past the end of its message",
                           p->path, p->base + p->pos);
        p->pos += 8;
        return EC_OK;
    case PB_LEN:
        return pb_len(p, &sub, d);
    case PB_FIXED32:
        return pb_fixed32(p, &u, d);
    default:
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: unsupported wire type %u", p->path,
                       p->base + p->pos, wire);
    }
}

static enum ec_status expect_wire(struct pb *p, size_t at, uint32_t field, uint32_t wire, uint32_t want,
                                  const char *what, struct ec_diag *d)
{
    if (wire == want)
        return EC_OK;
    return ec_fail(d, EC_ERR_FORMAT, "%s: field '%s' (%u) at byte %zu: wire type %u, expected %u", p->path, what,
                   field, p->base + at, wire, want);
}

struct sp_info {
    int32_t unk_id, bos_id, eos_id, pad_id;
    int32_t model_type;
    bool byte_fallback;
    bool add_dummy_prefix;
};

static enum ec_status parse_piece(struct pb *p, char **text, float *score, int32_t *type, struct ec_diag *d)
{
    enum ec_status st;
    *text = NULL;
    *score = 0.0f;
    *type = 1;
    while (p->pos < p->n) {
        size_t at = p->pos;
        uint32_t field = 0, wire = 0;
        if ((st = pb_key(p, &field, &wire, d)) != EC_OK)
            return st;
        if (field == 1) {
            struct pb s = {0};
            if ((st = expect_wire(p, at, field, wire, PB_LEN, "piece", d)) != EC_OK ||
                (st = pb_len(p, &s, d)) != EC_OK)
                return st;
            if (memchr(s.buf, 0, s.n))
                return ec_fail(d, EC_ERR_FORMAT, "%s: piece at byte %zu: contains a NUL byte", p->path, s.base);
            free(*text);
            *text = malloc(s.n + 1);
            if (!*text)
                return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", p->path);
            memcpy(*text, s.buf, s.n);
            (*text)[s.n] = '\0';
        } else if (field == 2) {
            uint32_t u = 0;
            if ((st = expect_wire(p, at, field, wire, PB_FIXED32, "score", d)) != EC_OK ||
                (st = pb_fixed32(p, &u, d)) != EC_OK)
                return st;
            memcpy(score, &u, 4);
        } else if (field == 3) {
            uint64_t v = 0;
            if ((st = expect_wire(p, at, field, wire, PB_VARINT, "type", d)) != EC_OK ||
                (st = pb_varint(p, &v, d)) != EC_OK)
                return st;
            if (v < 1 || v > 6)
                return ec_fail(d, EC_ERR_FORMAT, "%s: field 'type' at byte %zu: unknown piece type %llu", p->path,
                               p->base + at, (unsigned long long)v);
            *type = (int32_t)v;
        } else if ((st = pb_skip(p, wire, d)) != EC_OK) {
            return st;
        }
    }
    if (!*text)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: SentencePiece without a 'piece' string", p->path,
                       p->base);
    return EC_OK;
}

static enum ec_status parse_trainer(struct pb *p, struct sp_info *info, struct ec_diag *d)
{
    enum ec_status st;
    while (p->pos < p->n) {
        size_t at = p->pos;
        uint32_t field = 0, wire = 0;
        if ((st = pb_key(p, &field, &wire, d)) != EC_OK)
            return st;
        int32_t *dst = NULL;
        const char *name = NULL;
        switch (field) {
        case 3: dst = &info->model_type; name = "model_type"; break;
        case 40: dst = &info->unk_id; name = "unk_id"; break;
        case 41: dst = &info->bos_id; name = "bos_id"; break;
        case 42: dst = &info->eos_id; name = "eos_id"; break;
        case 43: dst = &info->pad_id; name = "pad_id"; break;
        default: break;
        }
        if (dst || field == 35) {
            uint64_t v = 0;
            if ((st = expect_wire(p, at, field, wire, PB_VARINT, name ? name : "byte_fallback", d)) != EC_OK ||
                (st = pb_varint(p, &v, d)) != EC_OK)
                return st;
            if (field == 35)
                info->byte_fallback = v != 0;
            else
                *dst = (int32_t)(uint32_t)v; /* int32 negatives are sign-extended varints */
        } else if ((st = pb_skip(p, wire, d)) != EC_OK) {
            return st;
        }
    }
    return EC_OK;
}

static enum ec_status parse_normalizer(struct pb *p, struct sp_info *info, struct ec_diag *d)
{
    enum ec_status st;
    while (p->pos < p->n) {
        size_t at = p->pos;
        uint32_t field = 0, wire = 0;
        if ((st = pb_key(p, &field, &wire, d)) != EC_OK)
            return st;
        if (field == 3) {
            uint64_t v = 0;
            if ((st = expect_wire(p, at, field, wire, PB_VARINT, "add_dummy_prefix", d)) != EC_OK ||
                (st = pb_varint(p, &v, d)) != EC_OK)
                return st;
            info->add_dummy_prefix = v != 0;
        } else if ((st = pb_skip(p, wire, d)) != EC_OK) {
            return st;
        }
    }
    return EC_OK;
}

static int32_t id_or_none(int32_t id, uint32_t n)
{
    return id >= 0 && (uint32_t)id < n ? id : -1;
}

enum ec_status ec_vocab_from_sp_model(struct ec_vocab *v, const uint8_t *buf, size_t n, const char *path,
                                      struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    struct pb top = {.buf = buf, .base = 0, .n = n, .pos = 0, .path = path ? path : "tokenizer.model"};
    struct sp_info info = {.unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1, .model_type = 1,
                           .byte_fallback = false, .add_dummy_prefix = true};
    size_t cap = 0;
    memset(v, 0, sizeof *v);
    v->type = EC_VOCAB_SPM;

    while (top.pos < top.n) {
        size_t at = top.pos;
        uint32_t field = 0, wire = 0;
        struct pb sub = {0};
        if ((st = pb_key(&top, &field, &wire, d)) != EC_OK)
            goto out_fail;
        if (field < 1 || field > 3) {
            if ((st = pb_skip(&top, wire, d)) != EC_OK)
                goto out_fail;
            continue;
        }
        if ((st = expect_wire(&top, at, field, wire, PB_LEN,
                              field == 1 ? "pieces" : field == 2 ? "trainer_spec" : "normalizer_spec", d)) != EC_OK ||
            (st = pb_len(&top, &sub, d)) != EC_OK)
            goto out_fail;
        if (field == 1) {
            if (v->n_tokens == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                char **nt = realloc(v->tokens, nc * sizeof *nt);
                if (nt)
                    v->tokens = nt;
                float *ns = nt ? realloc(v->scores, nc * sizeof *ns) : NULL;
                if (ns)
                    v->scores = ns;
                int32_t *ny = ns ? realloc(v->token_types, nc * sizeof *ny) : NULL;
                if (!ny) {
                    st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %zu pieces", top.path, nc);
                    goto out_fail;
                }
                v->token_types = ny;
                cap = nc;
            }
            char *text;
            float score;
            int32_t type;
            if ((st = parse_piece(&sub, &text, &score, &type, d)) != EC_OK) {
                free(text);
                ec_diag_prefix(d, "piece %u", v->n_tokens);
                goto out_fail;
            }
            int32_t tt = EC_TOK_NORMAL;
            if (type == 2)
                tt = EC_TOK_UNKNOWN;
            else if (type == 3)
                tt = EC_TOK_CONTROL;
            else if (type == 5)
                tt = EC_TOK_UNUSED;
            else if (type == 6)
                tt = EC_TOK_BYTE;
            v->tokens[v->n_tokens] = text;
            v->scores[v->n_tokens] = score;
            v->token_types[v->n_tokens] = tt;
            v->n_tokens++;
        } else if (field == 2) {
            if ((st = parse_trainer(&sub, &info, d)) != EC_OK)
                goto out_fail;
        } else {
            if ((st = parse_normalizer(&sub, &info, d)) != EC_OK)
                goto out_fail;
        }
    }
    if (v->n_tokens == 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: no pieces (not a SentencePiece model?)", top.path);
        goto out_fail;
    }
    if (info.model_type != 1 && info.model_type != 2) {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: trainer_spec.model_type %d is not supported (unigram or bpe)",
                     top.path, info.model_type);
        goto out_fail;
    }
    v->pre = strdup("default");
    if (!v->pre) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", top.path);
        goto out_fail;
    }
    v->unk_id = id_or_none(info.unk_id, v->n_tokens);
    v->bos_id = id_or_none(info.bos_id, v->n_tokens);
    v->eos_id = id_or_none(info.eos_id, v->n_tokens);
    v->pad_id = id_or_none(info.pad_id, v->n_tokens);
    v->sep_id = -1;
    v->add_bos = true;
    v->add_eos = false;
    v->add_space_prefix = info.add_dummy_prefix;
    v->has_add_space_prefix = false; /* llama.cpp's converter does not write the key for SPM */
    return EC_OK;

out_fail:
    ec_vocab_release(v);
    return st;
}
