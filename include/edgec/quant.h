/* edgec/quant.h: block quantization (reference kernels, traits table, row drivers).
 *
 * Owner: quantizers/ (traits.c, q_legacy.c, k_quants.c, iq4.c).
 *
 * Every kernel here reproduces the bytes of llama.cpp's ggml_quantize_chunk and
 * the floats of its dequantize_row_<t> (golden commit c392e509, see
 * shared/golden/README.md section 1) bit for bit. They are plain scalar C built
 * with -ffp-contract=off; operation order follows ggml where rounding depends
 * on it.
 *
 * Sizes (elements and bytes per block) come from ec_dtype_info() in
 * edgec/dtype.h; the structs below only fix the byte layout, checked by
 * _Static_assert. All multi-byte fields are little-endian (the host order
 * on every supported target); fp16 fields hold IEEE binary16 bit patterns.
 *
 * Row layout: a row of n elements (n a multiple of the block size) is
 * n / block_elems consecutive blocks. Rows are innermost-first as in GGUF.
 */
#ifndef EDGEC_QUANT_H
#define EDGEC_QUANT_H

#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/status.h"

#define EC_QK_LEGACY 32 /* elements per Q4_0..Q8_0 / IQ4_NL block */
#define EC_QK_K 256     /* elements per K-quant / IQ4_XS super-block */

/* ---- block layouts -------------------------------------------------------- */

/* Q4_0: y = (q - 8) * d; element j < 16 in the low nibble of qs[j], j + 16 in the high one */
struct ec_block_q4_0 {
    uint16_t d;     /* fp16 scale */
    uint8_t qs[16]; /* 32 x 4-bit */
};
_Static_assert(sizeof(struct ec_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* Q4_1: y = q * d + m */
struct ec_block_q4_1 {
    uint16_t d;     /* fp16 scale */
    uint16_t m;     /* fp16 minimum */
    uint8_t qs[16]; /* 32 x 4-bit, nibbles as Q4_0 */
};
_Static_assert(sizeof(struct ec_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* Q5_0: q = nibble | (bit j of qh) << 4; y = (q - 16) * d */
struct ec_block_q5_0 {
    uint16_t d;     /* fp16 scale */
    uint8_t qh[4];  /* fifth bits, u32 LE: bit j for element j */
    uint8_t qs[16]; /* low nibbles as Q4_0 */
};
_Static_assert(sizeof(struct ec_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* Q5_1: y = q * d + m */
struct ec_block_q5_1 {
    uint16_t d;     /* fp16 scale */
    uint16_t m;     /* fp16 minimum */
    uint8_t qh[4];  /* fifth bits as Q5_0 */
    uint8_t qs[16]; /* low nibbles */
};
_Static_assert(sizeof(struct ec_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* Q8_0: y = q * d */
struct ec_block_q8_0 {
    uint16_t d;    /* fp16 scale */
    int8_t qs[32]; /* 32 x int8 */
};
_Static_assert(sizeof(struct ec_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* Q2_K: 16 sub-blocks of 16; y = d * (sc & 15) * q - dmin * (sc >> 4) */
struct ec_block_q2_k {
    uint8_t scales[16]; /* low nibble scale, high nibble min, per sub-block */
    uint8_t qs[64];     /* 256 x 2-bit, see README layout */
    uint16_t d;         /* fp16 super-block scale for scales */
    uint16_t dmin;      /* fp16 super-block scale for mins */
};
_Static_assert(sizeof(struct ec_block_q2_k) == 84, "q2_k block is 84 bytes");

/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales; y = d * (s - 32) * q */
struct ec_block_q3_k {
    uint8_t hmask[32];  /* high (third) bit of each quant */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 x 6-bit scales, packed */
    uint16_t d;         /* fp16 super-block scale */
};
_Static_assert(sizeof(struct ec_block_q3_k) == 110, "q3_k block is 110 bytes");

/* Q4_K: 8 sub-blocks of 32, 6-bit scales and mins; y = d * sc * q - dmin * m */
struct ec_block_q4_k {
    uint16_t d;         /* fp16 super-block scale for scales */
    uint16_t dmin;      /* fp16 super-block scale for mins */
    uint8_t scales[12]; /* 8 x (6-bit scale, 6-bit min), packed */
    uint8_t qs[128];    /* 256 x 4-bit */
};
_Static_assert(sizeof(struct ec_block_q4_k) == 144, "q4_k block is 144 bytes");

/* Q5_K: as Q4_K plus a fifth bit per quant */
struct ec_block_q5_k {
    uint16_t d;         /* fp16 super-block scale for scales */
    uint16_t dmin;      /* fp16 super-block scale for mins */
    uint8_t scales[12]; /* as Q4_K */
    uint8_t qh[32];     /* fifth bits */
    uint8_t qs[128];    /* low nibbles */
};
_Static_assert(sizeof(struct ec_block_q5_k) == 176, "q5_k block is 176 bytes");

/* Q6_K: 16 sub-blocks of 16, int8 scales; y = d * sc * (q - 32) */
struct ec_block_q6_k {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* sub-block scales */
    uint16_t d;        /* fp16 super-block scale */
};
_Static_assert(sizeof(struct ec_block_q6_k) == 210, "q6_k block is 210 bytes");

/* IQ4_NL: y = d * K[q] with the non-linear table ec_iq4nl_values */
struct ec_block_iq4_nl {
    uint16_t d;     /* fp16 scale */
    uint8_t qs[16]; /* 32 x 4-bit table indices, nibbles as Q4_0 */
};
_Static_assert(sizeof(struct ec_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales; y = (d * (ls - 32)) * K[q] */
struct ec_block_iq4_xs {
    uint16_t d;          /* fp16 super-block scale */
    uint16_t scales_h;   /* high 2 bits of the 8 sub-block scales */
    uint8_t scales_l[4]; /* low 4 bits, two per byte */
    uint8_t qs[128];     /* 256 x 4-bit table indices */
};
_Static_assert(sizeof(struct ec_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

/* The 16 levels of IQ4_NL / IQ4_XS, ascending. */
extern const int8_t ec_iq4nl_values[16];

/* ---- traits ----------------------------------------------------------------- */

/* Dequantize a row of n elements (n a multiple of the block). */
typedef void (*ec_to_f32_fn)(const void *src, float *dst, int64_t n);
/* Quantize a row of n elements without importance weights. */
typedef void (*ec_from_f32_fn)(const float *src, void *dst, int64_t n);
/* Quantize one row of n elements with importance weights w[n] (the row's
 * imatrix); w == NULL gives the same bytes as the _ref version. A row is the
 * unit: some types normalise by statistics of the whole row. */
typedef void (*ec_from_f32_imat_fn)(const float *src, void *dst, int64_t n, const float *w);

struct ec_dtype_traits {
    enum ec_dtype type;
    ec_to_f32_fn to_f32;               /* never NULL in the table */
    ec_from_f32_fn from_f32_ref;       /* never NULL in the table */
    ec_from_f32_imat_fn from_f32_imat; /* never NULL in the table */
    /* Fast paths (SIMD), byte-identical to the two above, or NULL when the
     * reference is the only kernel. The drivers use them when present. */
    ec_from_f32_fn from_f32_fast;
    ec_from_f32_imat_fn from_f32_imat_fast;
    float tol; /* 0: must be bit-exact with the reference */
};

/* The traits of t, or NULL when edgec has no kernels for t (unknown, or a
 * type such as IQ2_XXS that is not implemented). Thread-safe (static data). */
const struct ec_dtype_traits *ec_dtype_traits(enum ec_dtype t);

/* Types with kernels, in enum order: writes up to cap of them to out and
 * returns how many there are in total. */
int ec_dtype_traits_list(enum ec_dtype *out, int cap);

/* The SIMD fast paths pick AVX2 at run time when the CPU has it. Tests use
 * ec_quant_simd_allow_avx2(false) to run the baseline (SSE2) build of the
 * same kernels; true restores the detection. Not thread-safe against
 * concurrent quantization. */
bool ec_quant_simd_avx2(void);
void ec_quant_simd_allow_avx2(bool allow);

/* ---- drivers ------------------------------------------------------------------ */

/* Quantize n_rows rows of n_per_row floats (row-major, contiguous) into dst
 * (n_rows * ec_dtype_row_bytes(t, n_per_row) bytes), exactly as llama.cpp's
 * ggml_quantize_chunk(t, src, dst, 0, n_rows, n_per_row, imatrix):
 * imatrix (length n_per_row, may be NULL) is applied to every row; Q8_0 and
 * the plain types ignore it. Rows are split into fixed chunks across OpenMP
 * threads; the bytes do not depend on the thread count.
 * Returns EC_ERR_UNSUPPORTED for a type without kernels, EC_ERR_ARG when
 * n_per_row is not a positive multiple of the block, counts are negative, or
 * pointers are NULL while n_rows > 0, EC_ERR_NOMEM when the size overflows.
 * n_rows == 0 is a no-op that returns EC_OK. */
enum ec_status ec_quantize_rows(enum ec_dtype t, const float *src, void *dst, int64_t n_rows,
                                int64_t n_per_row, const float *imatrix, struct ec_diag *d);

/* Dequantize n_rows rows of n_per_row elements from src into dst (floats). Same
 * argument checks and threading as ec_quantize_rows. */
enum ec_status ec_dequantize_rows(enum ec_dtype t, const void *src, float *dst, int64_t n_rows,
                                  int64_t n_per_row, struct ec_diag *d);

/* ---- reference kernels ----------------------------------------------------------- */
/* n is the row length in elements, a multiple of the type's block; w as for
 * ec_from_f32_imat_fn. */

void ec_q4_0_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q4_0_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q4_0_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q4_1_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q4_1_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q4_1_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q5_0_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q5_0_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q5_0_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q5_1_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q5_1_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q5_1_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q8_0_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q8_0_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q8_0_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q8_0_quantize_row_fast(const float *x, void *y, int64_t n);
void ec_q8_0_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);

void ec_q2_k_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q2_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q2_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q2_k_quantize_row_fast(const float *x, void *y, int64_t n);
void ec_q2_k_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);
void ec_q3_k_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q3_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q3_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q3_k_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);
void ec_q4_k_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q4_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q4_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q4_k_quantize_row_fast(const float *x, void *y, int64_t n);
void ec_q4_k_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);
void ec_q5_k_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q5_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q5_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q5_k_quantize_row_fast(const float *x, void *y, int64_t n);
void ec_q5_k_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);
void ec_q6_k_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_q6_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_q6_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_q6_k_quantize_row_fast(const float *x, void *y, int64_t n);
void ec_q6_k_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w);

void ec_iq4_nl_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_iq4_nl_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_iq4_nl_dequantize_row_ref(const void *x, float *y, int64_t n);
void ec_iq4_xs_quantize_row_ref(const float *x, void *y, int64_t n);
void ec_iq4_xs_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *w);
void ec_iq4_xs_dequantize_row_ref(const void *x, float *y, int64_t n);

#endif
