/* edgec/gguf.h: GGUF v3 reader and streaming writer.
 *
 * File layout (little-endian):
 *   u32 magic "GGUF", u32 version (3; 2 is read too), u64 n_tensors, u64 n_kv
 *   n_kv x { str key, u32 type, value }        str = u64 len + bytes (no NUL)
 *   n_tensors x { str name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to `general.alignment` (u32 key, default 32)
 *   tensor data; each tensor's offset is relative to the data start and a
 *   multiple of the alignment.
 * Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 str,
 *   9 array (u32 elem type, u64 n, elems), 10 u64, 11 i64, 12 f64.
 *
 * The reader maps the file and checks every count, length, dimension and
 * offset against the file size with overflow-safe arithmetic before it
 * allocates; errors name the file, the key or tensor, and the byte offset.
 *
 * The writer streams: declare KVs and tensor infos, then write tensor data one
 * tensor at a time in declaration order (the header goes out first, so memory
 * does not grow with the model). Output is atomic (see io.h).
 */
#ifndef EDGEC_GGUF_H
#define EDGEC_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/io.h"
#include "edgec/status.h"

#define EC_GGUF_DEFAULT_ALIGNMENT 32
#define EC_GGUF_MAX_DIMS 4

enum ec_gguf_type {
    EC_GGUF_U8 = 0,
    EC_GGUF_I8 = 1,
    EC_GGUF_U16 = 2,
    EC_GGUF_I16 = 3,
    EC_GGUF_U32 = 4,
    EC_GGUF_I32 = 5,
    EC_GGUF_F32 = 6,
    EC_GGUF_BOOL = 7,
    EC_GGUF_STRING = 8,
    EC_GGUF_ARRAY = 9,
    EC_GGUF_U64 = 10,
    EC_GGUF_I64 = 11,
    EC_GGUF_F64 = 12,
    EC_GGUF_TYPE_COUNT
};

const char *ec_gguf_type_name(enum ec_gguf_type t); /* "UINT32", "STRING", ... as gguf-py */

struct ec_gguf_str {
    uint64_t len;
    const char *data; /* not NUL-terminated; borrowed from the mapping or owned by a writer */
};

struct ec_gguf_kv {
    char *key;              /* owned, NUL-terminated */
    enum ec_gguf_type type; /* value type; EC_GGUF_ARRAY for arrays */
    enum ec_gguf_type arr_type; /* element type when type == EC_GGUF_ARRAY */
    uint64_t arr_n;             /* element count when an array */
    union {
        uint64_t u64; /* U8..U64, BOOL (0/1), widened */
        int64_t i64;  /* I8..I64, widened */
        double f64;   /* F32 (exactly widened) or F64 */
        struct ec_gguf_str str;
    } v;
    const uint8_t *arr_data;   /* raw array payload in the file (after type + count) */
    uint64_t arr_bytes;        /* its length in bytes */
    struct ec_gguf_str *arr_strs; /* [arr_n] parsed strings when arr_type == STRING (owned array) */
    uint64_t file_offset;      /* offset of the key in the file (messages) */
};

struct ec_gguf_tensor_info {
    char *name; /* owned */
    enum ec_dtype type;
    uint32_t n_dims;
    uint64_t ne[EC_GGUF_MAX_DIMS]; /* innermost first; unused dims = 1 */
    uint64_t offset;               /* relative to the data start */
    uint64_t n_bytes;
    const uint8_t *data;           /* borrowed from the mapping */
};

struct ec_gguf {
    struct ec_mapped_file file;
    uint32_t version;
    uint64_t n_kv;
    struct ec_gguf_kv *kv; /* [n_kv] file order */
    uint64_t n_tensors;
    struct ec_gguf_tensor_info *tensors; /* [n_tensors] file order */
    uint32_t alignment;
    uint64_t data_offset; /* file offset of the tensor data section */
};

enum ec_status ec_gguf_open(struct ec_gguf *g, const char *path, struct ec_diag *d);
/* Parse from memory (fuzzing, tests); `name` is used in messages. The buffer
 * must outlive g. */
enum ec_status ec_gguf_parse(struct ec_gguf *g, const uint8_t *buf, uint64_t n, const char *name,
                             struct ec_diag *d);
void ec_gguf_close(struct ec_gguf *g);
const struct ec_gguf_kv *ec_gguf_find_kv(const struct ec_gguf *g, const char *key);
const struct ec_gguf_tensor_info *ec_gguf_find_tensor(const struct ec_gguf *g, const char *name);
/* Typed getters: false when absent or of another type (integers of any width
 * are accepted by get_u64/get_i64 when the value fits). */
bool ec_gguf_get_u64(const struct ec_gguf *g, const char *key, uint64_t *out);
bool ec_gguf_get_f64(const struct ec_gguf *g, const char *key, double *out);
bool ec_gguf_get_bool(const struct ec_gguf *g, const char *key, bool *out);
/* Returns a heap copy (NUL-terminated) or NULL. */
char *ec_gguf_get_str(const struct ec_gguf *g, const char *key);

/* ---- writer ---- */
struct ec_gguf_writer;

enum ec_status ec_gguf_writer_open(struct ec_gguf_writer **w, const char *dest,
                                   const char *const *inputs, struct ec_diag *d);
/* KVs keep insertion order. Strings and arrays are copied. */
enum ec_status ec_gguf_writer_add_u32(struct ec_gguf_writer *w, const char *key, uint32_t v, struct ec_diag *d);
enum ec_status ec_gguf_writer_add_i32(struct ec_gguf_writer *w, const char *key, int32_t v, struct ec_diag *d);
enum ec_status ec_gguf_writer_add_u64(struct ec_gguf_writer *w, const char *key, uint64_t v, struct ec_diag *d);
enum ec_status ec_gguf_writer_add_f32(struct ec_gguf_writer *w, const char *key, float v, struct ec_diag *d);
enum ec_status ec_gguf_writer_add_bool(struct ec_gguf_writer *w, const char *key, bool v, struct ec_diag *d);
enum ec_status ec_gguf_writer_add_str(struct ec_gguf_writer *w, const char *key, const char *v, struct ec_diag *d);
/* Any scalar/array kv given as a generic value (copying a kv from a reader). */
enum ec_status ec_gguf_writer_add_kv(struct ec_gguf_writer *w, const struct ec_gguf_kv *kv, struct ec_diag *d);
/* Arrays of fixed-size elements: `data` holds n elements of elem_type (LE). */
enum ec_status ec_gguf_writer_add_array(struct ec_gguf_writer *w, const char *key,
                                        enum ec_gguf_type elem_type, const void *data, uint64_t n,
                                        struct ec_diag *d);
enum ec_status ec_gguf_writer_add_str_array(struct ec_gguf_writer *w, const char *key,
                                            const char *const *strs, const uint64_t *lens,
                                            uint64_t n, struct ec_diag *d);
/* Remove a previously added key (no-op if absent), e.g. to override it. */
void ec_gguf_writer_remove_kv(struct ec_gguf_writer *w, const char *key);
/* Rename every key that starts with `from` to start with `to` instead, in
 * place (e.g. "qwen2." -> "llama." when the architecture changes). Fails,
 * changing nothing, when a new name is already taken. */
enum ec_status ec_gguf_writer_rename_prefix(struct ec_gguf_writer *w, const char *from, const char *to,
                                            struct ec_diag *d);
/* Declare a tensor; offsets are assigned in declaration order, each aligned. */
enum ec_status ec_gguf_writer_add_tensor(struct ec_gguf_writer *w, const char *name,
                                         enum ec_dtype type, uint32_t n_dims, const uint64_t *ne,
                                         struct ec_diag *d);
/* Writes magic, KVs, tensor infos and padding. Call once, after all declarations. */
enum ec_status ec_gguf_writer_begin_data(struct ec_gguf_writer *w, struct ec_diag *d);
/* Append bytes of the current tensor (several calls per tensor allowed); the
 * writer pads and moves to the next tensor when one is complete. Writing more
 * bytes than declared is EC_ERR_INTERNAL. */
enum ec_status ec_gguf_writer_write(struct ec_gguf_writer *w, const void *data, size_t n,
                                    struct ec_diag *d);
/* Checks every declared byte was written, fsyncs and renames. */
enum ec_status ec_gguf_writer_commit(struct ec_gguf_writer *w, struct ec_diag *d);
void ec_gguf_writer_free(struct ec_gguf_writer *w);

#endif
