/* edgec/tokenizer.h: text <-> token ids for an ec_vocab, as llama.cpp does it.
 *
 * SPM ("llama") vocabularies: llama.cpp's llm_tokenizer_spm — "▁" prefix when
 * add_space_prefix, spaces -> "▁", UTF-8 characters merged pairwise by the
 * highest piece score (leftmost on ties), characters without a piece ->
 * <0xXX> byte tokens (then the one-byte piece, then unk). When the vocabulary
 * came from a tokenizer.json (spm_merges set), pairs are ranked by the merge
 * list instead (HF BPE order), since those scores are all -1000.
 * BPE ("gpt2") vocabularies: pre-tokenizer split for pre = "llama-bpe",
 * "qwen2" or GPT-2's pattern (anything else), byte-level mapping, merges by
 * rank (lowest first, leftmost on ties); "llama-bpe" ignores merges for words
 * already in the vocabulary. Approximation: \p{L}, \p{N} and \s are decided by
 * built-in tables covering ASCII, Latin-1/Extended, Greek, Cyrillic, Armenian,
 * Hebrew, Arabic, Devanagari, Thai, Georgian, Hangul, kana and CJK ideographs;
 * other scripts' letters count as punctuation.
 *
 * Special tokens: USER_DEFINED pieces are always matched in the text (longest
 * first), CONTROL/UNKNOWN ones only with parse_special, as in llama.cpp's
 * tokenizer_st_partition. add_special adds BOS/EOS per vocab add_bos/add_eos
 * (defaults when not given, as llama.cpp's: SPM and "llama-bpe" add BOS,
 * other BPE not; ec_vocab_adds_bos).
 *
 * The tokenizer borrows the vocabulary: it must outlive the tokenizer.
 */
#ifndef EDGEC_TOKENIZER_H
#define EDGEC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgec/model.h"
#include "edgec/status.h"

struct ec_tokenizer;

/* Whether text gets a BOS in front: the vocabulary's add_bos when given,
 * else llama.cpp's default for its type and pre-tokenizer. llama-perplexity
 * and llama-imatrix put BOS at a chunk's start only when this holds. */
bool ec_vocab_adds_bos(const struct ec_vocab *v);
/* The id that replaces a chunk's (or window's) first token, as
 * llama-perplexity does: the BOS id when the vocabulary adds a BOS, else -1
 * (keep the text's token). */
int32_t ec_vocab_chunk_bos(const struct ec_vocab *v);

enum ec_status ec_tokenizer_new(struct ec_tokenizer **out, const struct ec_vocab *v, struct ec_diag *d);
void ec_tokenizer_free(struct ec_tokenizer *t);

/* Encode text[0..len) (UTF-8; invalid bytes become byte tokens). *ids is a
 * heap array of *n_ids ids (free() it); empty text with add_special gives
 * just BOS. */
enum ec_status ec_tokenizer_encode(const struct ec_tokenizer *t, const char *text, size_t len, bool add_special,
                                   bool parse_special, int32_t **ids, size_t *n_ids, struct ec_diag *d);

/* Decode ids to a NUL-terminated heap string (*len bytes, without the NUL).
 * CONTROL tokens are dropped; SPM output loses the one leading space the
 * space prefix put there. Ids out of range are EC_ERR_ARG. */
enum ec_status ec_tokenizer_decode(const struct ec_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                                   size_t *len, struct ec_diag *d);

/* Id of a piece's exact text, or -1. */
int32_t ec_tokenizer_find(const struct ec_tokenizer *t, const char *piece, size_t len);

/* Tokenize a UTF-8 text file as llama.cpp's tools do: the file minus one
 * trailing newline, encoded whole with add_special (BOS when the vocabulary
 * adds it), special-token text not parsed. *out is heap-allocated. */
enum ec_status ec_tokens_from_text_file(const struct ec_vocab *v, const char *path,
                                        int32_t **out, int64_t *n, struct ec_diag *d);
/* Read raw int32 little-endian token ids. */
enum ec_status ec_tokens_from_i32_file(const char *path, int32_t **out, int64_t *n,
                                       struct ec_diag *d);

#endif
