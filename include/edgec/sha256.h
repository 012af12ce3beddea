/* edgec/sha256.h: SHA-256 (FIPS 180-4), used for recipe hashes and tests. */
#ifndef EDGEC_SHA256_H
#define EDGEC_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct ec_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    size_t buf_len;
};
void ec_sha256_init(struct ec_sha256 *s);
void ec_sha256_update(struct ec_sha256 *s, const void *data, size_t n);
void ec_sha256_final(struct ec_sha256 *s, uint8_t out[32]);
/* hex must hold 65 bytes. */
void ec_sha256_hex(const void *data, size_t n, char hex[65]);
void ec_sha256_to_hex(const uint8_t digest[32], char hex[65]);

#endif
