/* edgec/dtype.h: element types.
 *
 * Values equal the ggml/GGUF type numbers so that the number stored in a GGUF
 * file and the enum agree. Retired ggml numbers stay reserved. Types that GGUF
 * lacks (safetensors-only dtypes) take values from EC_DTYPE_EXT_BASE upward.
 *
 * Size information lives here (src/core/dtype.c) so that formats/ can compute
 * byte sizes without seeing a quantizer; kernels live in quantizers/traits.c.
 */
#ifndef EDGEC_DTYPE_H
#define EDGEC_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ec_dtype {
    EC_F32 = 0,
    EC_F16 = 1,
    EC_Q4_0 = 2,
    EC_Q4_1 = 3,
    /* 4, 5: retired (Q4_2, Q4_3) */
    EC_Q5_0 = 6,
    EC_Q5_1 = 7,
    EC_Q8_0 = 8,
    EC_Q8_1 = 9,
    EC_Q2_K = 10,
    EC_Q3_K = 11,
    EC_Q4_K = 12,
    EC_Q5_K = 13,
    EC_Q6_K = 14,
    EC_Q8_K = 15,
    EC_IQ2_XXS = 16,
    EC_IQ2_XS = 17,
    EC_IQ3_XXS = 18,
    EC_IQ1_S = 19,
    EC_IQ4_NL = 20,
    EC_IQ3_S = 21,
    EC_IQ2_S = 22,
    EC_IQ4_XS = 23,
    EC_I8 = 24,
    EC_I16 = 25,
    EC_I32 = 26,
    EC_I64 = 27,
    EC_F64 = 28,
    EC_IQ1_M = 29,
    EC_BF16 = 30,
    /* 31, 32, 33: retired (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) */
    EC_TQ1_0 = 34,
    EC_TQ2_0 = 35,
    EC_GGML_TYPE_COUNT = 39, /* first number past ggml's table at the golden commit */

    /* safetensors-only dtypes: recognised so that they can be named and rejected */
    EC_DTYPE_EXT_BASE = 1000,
    EC_BOOL = 1000,
    EC_U8 = 1001,
    EC_U16 = 1002,
    EC_U32 = 1003,
    EC_U64 = 1004,
    EC_F8_E4M3 = 1005,
    EC_F8_E5M2 = 1006,
    EC_DTYPE_EXT_END
};

struct ec_dtype_info {
    const char *name;     /* "F32", "Q4_K", ...; NULL for unused slots */
    uint32_t block_elems; /* elements per block (1 for plain types) */
    uint32_t block_bytes; /* bytes per block */
    bool is_quantized;    /* block-quantized (not a plain scalar type) */
};

/* NULL when t is not a known type. */
const struct ec_dtype_info *ec_dtype_info(enum ec_dtype t);

/* "F32"... or "?" when unknown. */
const char *ec_dtype_name(enum ec_dtype t);

/* Case-insensitive lookup by name ("q4_k", "F16"). Returns false when unknown. */
bool ec_dtype_from_name(const char *name, enum ec_dtype *out);

/* Bytes of a row of n elements; 0 when n is not a multiple of the block size
 * or the type is unknown. */
size_t ec_dtype_row_bytes(enum ec_dtype t, uint64_t n_elems);

/* Overflow-safe byte size of a tensor: *bytes = row_bytes(ne[0]) * ne[1]*...;
 * false on overflow, unknown type or ne[0] not a multiple of the block. */
bool ec_dtype_tensor_bytes(enum ec_dtype t, int ndim, const uint64_t *ne, uint64_t *bytes);

#endif
