/* edgec/safetensors.h: safetensors reader (single file or sharded) and writer.
 *
 * Layout of a file: u64 LE header length N, N bytes of UTF-8 JSON
 *   { "__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
 *     "data_offsets": [begin, end]}, ... }
 * then the data area; offsets are relative to its start (8 + N).
 *
 * The reader validates everything before returning: N <= 100 MB and inside
 * the file, valid JSON, known dtype names, offsets inside the data area,
 * tensors contiguous and non-overlapping, byte size == dtype size x shape
 * (overflow-checked), no duplicate names, __metadata__ values are strings,
 * names are valid UTF-8. Errors name the file, the tensor and the offset.
 *
 * Sharded checkpoints: open the folder or "model.safetensors.index.json"; the
 * index's weight_map must name every tensor exactly in the shard it lives in.
 *
 * Tied-weight aliases: a __metadata__ entry whose key is not a stored tensor
 * and whose value is a stored tensor's name (e.g. "model.embed_tokens.weight":
 * "lm_head.weight") makes the key an alias: ec_safetensors_find() finds it,
 * sharing the stored bytes. Aliases are listed separately from stored tensors.
 */
#ifndef EDGEC_SAFETENSORS_H
#define EDGEC_SAFETENSORS_H

#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/io.h"
#include "edgec/status.h"

#define EC_MAX_DIMS 4
#define EC_ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

struct ec_st_tensor {
    char *name;                /* owned */
    enum ec_dtype dtype;       /* EC_F32, EC_F16, EC_BF16, ... (may be an unsupported one) */
    int ndim;                  /* 0..EC_MAX_DIMS */
    uint64_t ne[EC_MAX_DIMS];  /* elements per dim, innermost first (GGUF order): ne[0] = row */
    const uint8_t *data;       /* borrowed from the mapping */
    uint64_t n_bytes;          /* data length */
    const char *file;          /* path of the shard holding it (borrowed) */
    uint64_t file_offset;      /* absolute byte offset of the data in that file */
    const char *alias_of;      /* non-NULL for an alias entry: the stored tensor's name */
};

struct ec_safetensors {
    size_t n_files;
    struct ec_mapped_file *files; /* [n_files] */
    size_t n_tensors;             /* stored tensors + aliases */
    struct ec_st_tensor *tensors; /* [n_tensors], file order, aliases last */
    size_t n_meta;
    char **meta_keys;   /* [n_meta] __metadata__ keys (owned) */
    char **meta_values; /* [n_meta] */
};

/* path: a .safetensors file, a model.safetensors.index.json, or a folder
 * holding either. */
enum ec_status ec_safetensors_open(struct ec_safetensors *st, const char *path, struct ec_diag *d);
/* Parse a single safetensors file held in memory (fuzzing, tests); `name` is
 * used in messages. The buffer must outlive st. */
enum ec_status ec_safetensors_parse(struct ec_safetensors *st, const uint8_t *buf, uint64_t n,
                                    const char *name, struct ec_diag *d);
void ec_safetensors_close(struct ec_safetensors *st);
const struct ec_st_tensor *ec_safetensors_find(const struct ec_safetensors *st, const char *name);
const char *ec_safetensors_meta(const struct ec_safetensors *st, const char *key);

/* Map a safetensors dtype name ("F32", "BF16", "I64", "BOOL", "F8_E4M3", ...). */
bool ec_st_dtype_from_name(const char *s, enum ec_dtype *out);
const char *ec_st_dtype_name(enum ec_dtype t);

/* Writer: declare all tensors (name, dtype, shape innermost-first) and
 * metadata, then write each tensor's bytes in declaration order, then commit.
 * Output is atomic (see io.h). */
struct ec_st_writer;
enum ec_status ec_st_writer_open(struct ec_st_writer **w, const char *dest,
                                 const char *const *inputs, struct ec_diag *d);
enum ec_status ec_st_writer_add_meta(struct ec_st_writer *w, const char *key, const char *value,
                                     struct ec_diag *d);
enum ec_status ec_st_writer_add_tensor(struct ec_st_writer *w, const char *name,
                                       enum ec_dtype dtype, int ndim, const uint64_t *ne,
                                       struct ec_diag *d);
/* Writes the header; call once, after all declarations. */
enum ec_status ec_st_writer_begin_data(struct ec_st_writer *w, struct ec_diag *d);
/* Append bytes of the current tensor (may be called several times per tensor). */
enum ec_status ec_st_writer_write(struct ec_st_writer *w, const void *data, size_t n,
                                  struct ec_diag *d);
enum ec_status ec_st_writer_commit(struct ec_st_writer *w, struct ec_diag *d);
/* Frees w, removing the temp file if not committed. NULL is a no-op. */
void ec_st_writer_free(struct ec_st_writer *w);

#endif
