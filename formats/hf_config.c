/* formats/hf_config.c: config.json -> struct ec_hparams.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
 * (architectures[0]). Optional keys take the defaults of the transformers
 * config classes (LlamaConfig, MistralConfig, Qwen2Config): rope_theta 10000,
 * rms_norm_eps 1e-6, tie_word_embeddings false, num_key_value_heads =
 * num_attention_heads, head_dim = hidden_size / num_attention_heads.
 * The shape keys (hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, vocab_size) are required: a checkpoint without them is
 * refused rather than silently given a 7B default.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "edgec/model.h"

static const char supported_archs[] = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

/* Reads an optional non-negative integer key. Returns EC_OK and leaves *out
 * untouched when the key is absent or null. */
static enum ec_status get_u32(const cJSON *root, const char *key, bool required, uint32_t *out,
                              const char *path, struct ec_diag *d)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        if (required)
            return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': required key is missing", path, key);
        return EC_OK;
    }
    if (!cJSON_IsNumber(it))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected an integer", path, key);
    double v = it->valuedouble;
    if (!(v >= 0.0) || v > 4294967295.0 || floor(v) != v)
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected a non-negative 32-bit integer, found %g",
                       path, key, v);
    if (required && v == 0.0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': must be positive, found 0", path, key);
    *out = (uint32_t)v;
    return EC_OK;
}

static enum ec_status get_float(const cJSON *root, const char *key, float *out, const char *path,
                                struct ec_diag *d)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it))
        return EC_OK;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected a finite number", path, key);
    *out = (float)it->valuedouble;
    return EC_OK;
}

static enum ec_status get_bool(const cJSON *root, const char *key, bool *out, const char *path,
                               struct ec_diag *d)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it))
        return EC_OK;
    if (!cJSON_IsBool(it))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '%s': expected true or false", path, key);
    *out = cJSON_IsTrue(it);
    return EC_OK;
}

static enum ec_status parse_rope_scaling(struct ec_hparams *hp, const cJSON *root, const char *path,
                                         struct ec_diag *d)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    hp->rope_scaling = EC_ROPE_SCALING_NONE;
    hp->rope_factor = 1.0f;
    hp->rope_orig_ctx = 0;
    hp->rope_low_freq_factor = 0.0f;
    hp->rope_high_freq_factor = 0.0f;
    if (!rs || cJSON_IsNull(rs))
        return EC_OK;
    if (!cJSON_IsObject(rs))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'rope_scaling': expected an object or null", path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty)
        ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(ty))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'rope_scaling.type': expected a string", path);
    const char *t = ty->valuestring;
    if (strcmp(t, "default") == 0)
        return EC_OK;
    if (strcmp(t, "linear") == 0)
        hp->rope_scaling = EC_ROPE_SCALING_LINEAR;
    else if (strcmp(t, "yarn") == 0)
        hp->rope_scaling = EC_ROPE_SCALING_YARN;
    else if (strcmp(t, "llama3") == 0)
        hp->rope_scaling = EC_ROPE_SCALING_LLAMA3;
    else
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: key 'rope_scaling.type': '%s' is not supported (supported: linear, yarn, llama3)",
                       path, t);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rs, "factor");
    if (!cJSON_IsNumber(f) || !(f->valuedouble > 0.0) || !isfinite(f->valuedouble))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key 'rope_scaling.factor': expected a positive number", path);
    hp->rope_factor = (float)f->valuedouble;
    enum ec_status st = get_u32(rs, "original_max_position_embeddings",
                                hp->rope_scaling == EC_ROPE_SCALING_LLAMA3, &hp->rope_orig_ctx, path, d);
    if (st != EC_OK) {
        ec_diag_prefix(d, "in 'rope_scaling'");
        return st;
    }
    if (hp->rope_scaling == EC_ROPE_SCALING_LLAMA3) {
        /* transformers' defaults for the llama3 rope type */
        hp->rope_low_freq_factor = 1.0f;
        hp->rope_high_freq_factor = 4.0f;
        if ((st = get_float(rs, "low_freq_factor", &hp->rope_low_freq_factor, path, d)) != EC_OK ||
            (st = get_float(rs, "high_freq_factor", &hp->rope_high_freq_factor, path, d)) != EC_OK)
            return st;
        if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: key 'rope_scaling.high_freq_factor': must exceed low_freq_factor (%g <= %g)",
                           path, (double)hp->rope_high_freq_factor, (double)hp->rope_low_freq_factor);
    }
    return EC_OK;
}

enum ec_status ec_hparams_from_config_json(struct ec_hparams *hp, const char *json, size_t len,
                                           const char *path, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    memset(hp, 0, sizeof *hp);
    if (!path)
        path = "config.json";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        size_t off = (e && e >= json && e <= json + len) ? (size_t)(e - json) : 0;
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %zu: malformed JSON", path, off);
    }
    if (!cJSON_IsObject(root)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        goto out_free;
    }

    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'architectures': expected a non-empty array of strings "
                     "(supported: %s)", path, supported_archs);
        goto out_free;
    }
    const char *arch = a0->valuestring;
    if (strcmp(arch, "LlamaForCausalLM") == 0) {
        hp->family = EC_ARCH_LLAMA;
        hp->hf_arch = "LlamaForCausalLM";
        hp->gguf_arch = "llama";
    } else if (strcmp(arch, "MistralForCausalLM") == 0) {
        hp->family = EC_ARCH_MISTRAL;
        hp->hf_arch = "MistralForCausalLM";
        hp->gguf_arch = "llama"; /* as llama.cpp's converter writes Mistral */
    } else if (strcmp(arch, "Qwen2ForCausalLM") == 0) {
        hp->family = EC_ARCH_QWEN2;
        hp->hf_arch = "Qwen2ForCausalLM";
        hp->gguf_arch = "qwen2";
    } else {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: key 'architectures': '%s' is not supported (supported: %s)",
                     path, arch, supported_archs);
        goto out_free;
    }

    if ((st = get_u32(root, "hidden_size", true, &hp->n_embd, path, d)) != EC_OK ||
        (st = get_u32(root, "intermediate_size", true, &hp->n_ff, path, d)) != EC_OK ||
        (st = get_u32(root, "num_hidden_layers", true, &hp->n_layer, path, d)) != EC_OK ||
        (st = get_u32(root, "num_attention_heads", true, &hp->n_head, path, d)) != EC_OK ||
        (st = get_u32(root, "vocab_size", true, &hp->n_vocab, path, d)) != EC_OK)
        goto out_free;

    hp->n_head_kv = hp->n_head;
    if ((st = get_u32(root, "num_key_value_heads", false, &hp->n_head_kv, path, d)) != EC_OK)
        goto out_free;
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'num_key_value_heads': %u does not divide "
                     "num_attention_heads %u", path, hp->n_head_kv, hp->n_head);
        goto out_free;
    }
    hp->head_dim = 0;
    if ((st = get_u32(root, "head_dim", false, &hp->head_dim, path, d)) != EC_OK)
        goto out_free;
    if (hp->head_dim == 0) {
        if (hp->n_embd % hp->n_head != 0) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'num_attention_heads': %u does not divide hidden_size %u "
                         "and no head_dim is given", path, hp->n_head, hp->n_embd);
            goto out_free;
        }
        hp->head_dim = hp->n_embd / hp->n_head;
    }

    hp->n_ctx_train = hp->family == EC_ARCH_LLAMA ? 2048 : hp->family == EC_ARCH_MISTRAL ? 131072 : 32768;
    if ((st = get_u32(root, "max_position_embeddings", false, &hp->n_ctx_train, path, d)) != EC_OK)
        goto out_free;
    hp->rope_theta = 10000.0f;
    hp->norm_eps = 1e-6f;
    if ((st = get_float(root, "rope_theta", &hp->rope_theta, path, d)) != EC_OK ||
        (st = get_float(root, "rms_norm_eps", &hp->norm_eps, path, d)) != EC_OK)
        goto out_free;
    if (!(hp->rope_theta > 0.0f)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'rope_theta': must be positive", path);
        goto out_free;
    }
    if (!(hp->norm_eps > 0.0f)) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: key 'rms_norm_eps': must be positive", path);
        goto out_free;
    }
    if ((st = parse_rope_scaling(hp, root, path, d)) != EC_OK)
        goto out_free;

    hp->tied_embeddings = false;
    if ((st = get_bool(root, "tie_word_embeddings", &hp->tied_embeddings, path, d)) != EC_OK)
        goto out_free;

    hp->attn_qkv_bias = false;
    hp->attn_out_bias = false;
    hp->mlp_bias = false;
    if (hp->family == EC_ARCH_QWEN2) {
        hp->attn_qkv_bias = true; /* Qwen2Attention: q/k/v bias=True, o_proj bias=False */
    } else if (hp->family == EC_ARCH_LLAMA) {
        bool ab = false;
        if ((st = get_bool(root, "attention_bias", &ab, path, d)) != EC_OK ||
            (st = get_bool(root, "mlp_bias", &hp->mlp_bias, path, d)) != EC_OK)
            goto out_free;
        hp->attn_qkv_bias = ab;
        hp->attn_out_bias = ab;
    }

    hp->sliding_window = 0;
    if (hp->family == EC_ARCH_MISTRAL) {
        if ((st = get_u32(root, "sliding_window", false, &hp->sliding_window, path, d)) != EC_OK)
            goto out_free;
    } else if (hp->family == EC_ARCH_QWEN2) {
        bool use_sw = false;
        if ((st = get_bool(root, "use_sliding_window", &use_sw, path, d)) != EC_OK)
            goto out_free;
        if (use_sw && (st = get_u32(root, "sliding_window", false, &hp->sliding_window, path, d)) != EC_OK)
            goto out_free;
    }

out_free:
    cJSON_Delete(root);
    return st;
}
