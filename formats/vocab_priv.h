/* formats/vocab_priv.h: helpers shared by the vocabulary loaders (not public). */
#ifndef EDGEC_FORMATS_VOCAB_PRIV_H
#define EDGEC_FORMATS_VOCAB_PRIV_H

#include <cjson/cJSON.h>

#include "edgec/model.h"

/* Allocate n tokens (all NULL), scores (if with_scores) and token types. */
enum ec_status ec_vocab_alloc_tokens(struct ec_vocab *v, uint32_t n, bool with_scores, const char *path,
                                     struct ec_diag *d);
/* llama.cpp's does_token_look_special(): "<|...|>", "<｜...｜>", "<unused...>",
 * "<pad>", "<mask>", "<2mass>", "[@BOS@]". */
bool ec_token_looks_special(const char *s);
/* Parse JSON text; on failure an EC_ERR_FORMAT naming path and the byte offset. */
enum ec_status ec_json_parse(cJSON **out, const char *json, size_t len, const char *path, struct ec_diag *d);

#endif
