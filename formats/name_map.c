/* formats/name_map.c: Hugging Face <-> GGUF tensor names (Llama, Mistral, Qwen2).
 *
 * llama.cpp's converter maps names through gguf-py's TensorNameMap; for the
 * three families edgec reads, the map reduces to one table of per-layer
 * suffixes plus three global names. Both directions use the same table, so a
 * name survives a round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/model.h"

struct name_pair {
    const char *hf;   /* without the ".weight"/".bias" suffix */
    const char *gguf; /* same */
};

static const struct name_pair global_names[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

/* model.layers.N.<hf> -> blk.N.<gguf> */
static const struct name_pair layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Split "stem.weight" / "stem.bias"; returns the suffix (with its dot) or NULL. */
static const char *param_suffix(const char *name, size_t *stem_len)
{
    static const char *const suffixes[] = {".weight", ".bias"};
    size_t n = strlen(name);
    for (size_t i = 0; i < N_ELEMS(suffixes); i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) {
            *stem_len = n - k;
            return suffixes[i];
        }
    }
    return NULL;
}

/* Parse "<prefix><decimal>." at the start of s; returns the rest or NULL. */
static const char *parse_layer(const char *s, const char *prefix, unsigned long *layer)
{
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl) != 0)
        return NULL;
    const char *p = s + pl;
    if (*p < '0' || *p > '9')
        return NULL;
    unsigned long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 1000000ul)
            return NULL;
        p++;
    }
    if (*p != '.')
        return NULL;
    *layer = v;
    return p + 1;
}

static char *map_name(const char *name, bool to_gguf)
{
    size_t stem_len = 0;
    const char *suffix = param_suffix(name, &stem_len);
    if (!suffix)
        return NULL;
    char stem[256];
    if (stem_len >= sizeof stem)
        return NULL;
    memcpy(stem, name, stem_len);
    stem[stem_len] = '\0';

    for (size_t i = 0; i < N_ELEMS(global_names); i++) {
        const char *from = to_gguf ? global_names[i].hf : global_names[i].gguf;
        const char *to = to_gguf ? global_names[i].gguf : global_names[i].hf;
        if (strcmp(stem, from) == 0) {
            size_t n = strlen(to) + strlen(suffix) + 1;
            char *out = malloc(n);
            if (out)
                snprintf(out, n, "%s%s", to, suffix);
            return out;
        }
    }
    unsigned long layer = 0;
    const char *rest = parse_layer(stem, to_gguf ? "model.layers." : "blk.", &layer);
    if (!rest)
        return NULL;
    for (size_t i = 0; i < N_ELEMS(layer_names); i++) {
        const char *from = to_gguf ? layer_names[i].hf : layer_names[i].gguf;
        const char *to = to_gguf ? layer_names[i].gguf : layer_names[i].hf;
        if (strcmp(rest, from) == 0) {
            size_t n = strlen(to) + strlen(suffix) + 40;
            char *out = malloc(n);
            if (out)
                snprintf(out, n, "%s%lu.%s%s", to_gguf ? "blk." : "model.layers.", layer, to,
                         suffix);
            return out;
        }
    }
    return NULL;
}

char *ec_hf_to_gguf_name(const char *hf_name)
{
    return hf_name ? map_name(hf_name, true) : NULL;
}

char *ec_gguf_to_hf_name(const char *gguf_name)
{
    return gguf_name ? map_name(gguf_name, false) : NULL;
}

bool ec_hf_name_ignorable(const char *hf_name)
{
    /* convert_hf_to_gguf.py drops these before mapping (prepare_tensors). */
    static const char *const skipped[] = {".attention.masked_bias", ".attention.bias",
                                          ".rotary_emb.inv_freq"};
    size_t n = strlen(hf_name);
    for (size_t i = 0; i < N_ELEMS(skipped); i++) {
        size_t k = strlen(skipped[i]);
        if (n >= k && strcmp(hf_name + n - k, skipped[i]) == 0)
            return true;
    }
    return false;
}
