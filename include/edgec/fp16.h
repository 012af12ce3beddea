/* edgec/fp16.h: IEEE half and bfloat16 conversions (scalar references).
 *
 * fp32 -> fp16: round to nearest even, overflow to +-Inf, subnormals kept,
 * NaN stays NaN (quiet). fp32 -> bf16 follows ggml's reference:
 * NaN -> (u >> 16) | 0x40, else (u + 0x7FFF + ((u >> 16) & 1)) >> 16.
 */
#ifndef EDGEC_FP16_H
#define EDGEC_FP16_H

#include <stddef.h>
#include <stdint.h>

uint16_t ec_fp32_to_fp16(float f);
float ec_fp16_to_fp32(uint16_t h);
uint16_t ec_fp32_to_bf16(float f);
float ec_bf16_to_fp32(uint16_t h);

void ec_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n);
void ec_fp16_to_fp32_row(const uint16_t *x, float *y, size_t n);
void ec_fp32_to_bf16_row(const float *x, uint16_t *y, size_t n);
void ec_bf16_to_fp32_row(const uint16_t *x, float *y, size_t n);

/* The same conversions from bytes at any alignment (a tensor in a
 * safetensors file may start at any offset). */
void ec_fp16_bytes_to_fp32_row(const void *src, float *y, size_t n);
void ec_bf16_bytes_to_fp32_row(const void *src, float *y, size_t n);

#endif
