/* src/distill/distill_priv.h: helpers shared by the distill exporter and reader. */
#ifndef EDGEC_DISTILL_PRIV_H
#define EDGEC_DISTILL_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "edgec/distill.h"

#define EC_DISTILL_MAGIC "ECDS"

static inline void ec_put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ec_put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t ec_get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ec_get_u64le(const uint8_t *p)
{
    return (uint64_t)ec_get_u32le(p) | (uint64_t)ec_get_u32le(p + 4) << 32;
}

/* Bytes of the inflated payload for n_tokens records (0 on overflow). */
uint64_t ec_distill_payload_bytes(uint64_t n_tokens, uint32_t top_k, uint32_t id_bytes);

/* "shard-%05u.ecds" into buf (>= 32 bytes) */
void ec_distill_shard_name(uint32_t index, char *buf, size_t cap);

/* 64 hex digits -> 32 bytes; false when malformed */
bool ec_distill_hex_decode(const char *hex, uint8_t out[32]);

#endif
