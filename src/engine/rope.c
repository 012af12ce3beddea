/* src/engine/rope.c: rotary position embedding parameters and cos/sin cache,
 * as llama.cpp derives them (see edgec/engine.h). Shared by the engine and the
 * pruners' calibration pass. */
#include <math.h>

#include "edgec/engine.h"

/* ggml_rope_yarn_corr_dim: the dimension whose wavelength fits n_rot turns
 * in the original context */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

enum ec_status ec_rope_init(struct ec_rope *r, const struct ec_hparams *hp, const float *freq_factors,
                            const char *what, struct ec_diag *d)
{
    r->n_rot = hp->head_dim;
    r->theta_scale = powf(hp->rope_theta, -2.0f / (float)r->n_rot);
    r->freq_scale = 1.0f;
    r->ext_factor = 0.0f;
    r->attn_factor = 1.0f;
    r->corr_dims[0] = r->corr_dims[1] = 0.0f;
    r->freq_factors = freq_factors;
    switch (hp->rope_scaling) {
    case EC_ROPE_SCALING_NONE:
        break;
    case EC_ROPE_SCALING_LINEAR:
        if (hp->rope_factor > 0)
            r->freq_scale = 1.0f / hp->rope_factor;
        break;
    case EC_ROPE_SCALING_LLAMA3:
        if (!freq_factors)
            return ec_fail(d, EC_ERR_FORMAT, "%s: llama3 rope scaling without a rope_freqs.weight tensor", what);
        break;
    case EC_ROPE_SCALING_YARN: {
        if (!(hp->rope_factor > 0))
            return ec_fail(d, EC_ERR_FORMAT, "%s: YaRN rope scaling without a positive factor", what);
        r->freq_scale = 1.0f / hp->rope_factor;
        r->ext_factor = 1.0f;
        /* llama_context: attn_factor = mscale(factor) / (1 + 0.1 ln factor), the
         * second factor cancelling the one ggml's rope_yarn multiplies in */
        const float factor = 1.0f / r->freq_scale;
        const float mscale = factor <= 1.0f ? 1.0f : 0.1f * 1.0f * logf(factor) + 1.0f;
        r->attn_factor = mscale * (1.0f / (1.0f + 0.1f * logf(factor)));
        const int n_ctx_orig = (int)(hp->rope_orig_ctx ? hp->rope_orig_ctx : hp->n_ctx_train);
        const float beta_fast = 32.0f, beta_slow = 1.0f;
        float start = floorf(yarn_corr_dim((int)r->n_rot, n_ctx_orig, beta_fast, hp->rope_theta));
        float end = ceilf(yarn_corr_dim((int)r->n_rot, n_ctx_orig, beta_slow, hp->rope_theta));
        r->corr_dims[0] = start > 0.0f ? start : 0.0f;
        r->corr_dims[1] = end < (float)(r->n_rot - 1) ? end : (float)(r->n_rot - 1);
        break;
    }
    default:
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: rope scaling type %d is not supported", what,
                       (int)hp->rope_scaling);
    }
    return EC_OK;
}

/* ggml's rope_yarn_ramp */
static float yarn_ramp(float low, float high, int i0)
{
    const float y = (float)(i0 / 2 - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

void ec_rope_cache(const struct ec_rope *r, uint32_t pos0, int64_t n, float *cs)
{
    const uint32_t n_rot = r->n_rot;
    for (int64_t t = 0; t < n; t++) {
        float *c = cs + t * n_rot;
        float theta = (float)(pos0 + (uint32_t)t);
        for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
            const float ff = r->freq_factors ? r->freq_factors[i0 / 2] : 1.0f;
            /* ggml's rope_yarn(theta / ff, ...) */
            const float extrap = theta / ff;
            const float interp = r->freq_scale * extrap;
            float th = interp, mscale = r->attn_factor;
            if (r->ext_factor != 0.0f) {
                const float mix = yarn_ramp(r->corr_dims[0], r->corr_dims[1], (int)i0) * r->ext_factor;
                th = interp * (1 - mix) + extrap * mix;
                mscale *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
            }
            c[i0] = cosf(th) * mscale;
            c[i0 + 1] = sinf(th) * mscale;
            theta *= r->theta_scale;
        }
    }
}
