/* Element type sizes and names (see edgec/dtype.h). */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "edgec/dtype.h"

#define QK_K 256

static const struct ec_dtype_info ggml_types[EC_GGML_TYPE_COUNT] = {
    [EC_F32] = {"F32", 1, 4, false},
    [EC_F16] = {"F16", 1, 2, false},
    [EC_Q4_0] = {"Q4_0", 32, 18, true},
    [EC_Q4_1] = {"Q4_1", 32, 20, true},
    [EC_Q5_0] = {"Q5_0", 32, 22, true},
    [EC_Q5_1] = {"Q5_1", 32, 24, true},
    [EC_Q8_0] = {"Q8_0", 32, 34, true},
    [EC_Q8_1] = {"Q8_1", 32, 36, true},
    [EC_Q2_K] = {"Q2_K", QK_K, 84, true},
    [EC_Q3_K] = {"Q3_K", QK_K, 110, true},
    [EC_Q4_K] = {"Q4_K", QK_K, 144, true},
    [EC_Q5_K] = {"Q5_K", QK_K, 176, true},
    [EC_Q6_K] = {"Q6_K", QK_K, 210, true},
    [EC_Q8_K] = {"Q8_K", QK_K, 292, true},
    [EC_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, true},
    [EC_IQ2_XS] = {"IQ2_XS", QK_K, 74, true},
    [EC_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, true},
    [EC_IQ1_S] = {"IQ1_S", QK_K, 50, true},
    [EC_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [EC_IQ3_S] = {"IQ3_S", QK_K, 110, true},
    [EC_IQ2_S] = {"IQ2_S", QK_K, 82, true},
    [EC_IQ4_XS] = {"IQ4_XS", QK_K, 136, true},
    [EC_I8] = {"I8", 1, 1, false},
    [EC_I16] = {"I16", 1, 2, false},
    [EC_I32] = {"I32", 1, 4, false},
    [EC_I64] = {"I64", 1, 8, false},
    [EC_F64] = {"F64", 1, 8, false},
    [EC_IQ1_M] = {"IQ1_M", QK_K, 56, true},
    [EC_BF16] = {"BF16", 1, 2, false},
    [EC_TQ1_0] = {"TQ1_0", QK_K, 54, true},
    [EC_TQ2_0] = {"TQ2_0", QK_K, 66, true},
};

static const struct ec_dtype_info ext_types[EC_DTYPE_EXT_END - EC_DTYPE_EXT_BASE] = {
    [EC_BOOL - EC_DTYPE_EXT_BASE] = {"BOOL", 1, 1, false},
    [EC_U8 - EC_DTYPE_EXT_BASE] = {"U8", 1, 1, false},
    [EC_U16 - EC_DTYPE_EXT_BASE] = {"U16", 1, 2, false},
    [EC_U32 - EC_DTYPE_EXT_BASE] = {"U32", 1, 4, false},
    [EC_U64 - EC_DTYPE_EXT_BASE] = {"U64", 1, 8, false},
    [EC_F8_E4M3 - EC_DTYPE_EXT_BASE] = {"F8_E4M3", 1, 1, false},
    [EC_F8_E5M2 - EC_DTYPE_EXT_BASE] = {"F8_E5M2", 1, 1, false},
};

const struct ec_dtype_info *ec_dtype_info(enum ec_dtype t)
{
    const struct ec_dtype_info *info = NULL;
    if ((unsigned)t < EC_GGML_TYPE_COUNT)
        info = &ggml_types[t];
    else if (t >= EC_DTYPE_EXT_BASE && t < EC_DTYPE_EXT_END)
        info = &ext_types[t - EC_DTYPE_EXT_BASE];
    return (info && info->name) ? info : NULL;
}

const char *ec_dtype_name(enum ec_dtype t)
{
    const struct ec_dtype_info *i = ec_dtype_info(t);
    return i ? i->name : "?";
}

bool ec_dtype_from_name(const char *name, enum ec_dtype *out)
{
    for (unsigned t = 0; t < EC_GGML_TYPE_COUNT; t++) {
        if (ggml_types[t].name && strcasecmp(ggml_types[t].name, name) == 0) {
            *out = (enum ec_dtype)t;
            return true;
        }
    }
    for (unsigned t = EC_DTYPE_EXT_BASE; t < EC_DTYPE_EXT_END; t++) {
        const struct ec_dtype_info *i = &ext_types[t - EC_DTYPE_EXT_BASE];
        if (i->name && strcasecmp(i->name, name) == 0) {
            *out = (enum ec_dtype)t;
            return true;
        }
    }
    return false;
}

size_t ec_dtype_row_bytes(enum ec_dtype t, uint64_t n_elems)
{
    const struct ec_dtype_info *i = ec_dtype_info(t);
    if (!i || n_elems % i->block_elems)
        return 0;
    uint64_t blocks = n_elems / i->block_elems;
    if (blocks > SIZE_MAX / i->block_bytes)
        return 0;
    return (size_t)(blocks * i->block_bytes);
}

bool ec_dtype_tensor_bytes(enum ec_dtype t, int ndim, const uint64_t *ne, uint64_t *bytes)
{
    const struct ec_dtype_info *i = ec_dtype_info(t);
    if (!i || ndim < 0)
        return false;
    uint64_t n0 = ndim > 0 ? ne[0] : 1;
    if (n0 % i->block_elems)
        return false;
    uint64_t b = n0 / i->block_elems;
    if (b != 0 && i->block_bytes > UINT64_MAX / b)
        return false;
    b *= i->block_bytes;
    for (int k = 1; k < ndim; k++) {
        if (ne[k] != 0 && b > UINT64_MAX / ne[k])
            return false;
        b *= ne[k];
    }
    *bytes = b;
    return true;
}
