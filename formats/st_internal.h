/* formats/st_internal.h: helpers shared by the safetensors reader and writer
 * (private to formats/). */
#ifndef EDGEC_ST_INTERNAL_H
#define EDGEC_ST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Offset of the first byte that is not part of a valid UTF-8 sequence
 * (overlong forms, surrogates and code points past U+10FFFF are invalid),
 * or -1 when all n bytes are valid. */
int64_t ec_utf8_invalid_at(const uint8_t *s, size_t n);

#endif
