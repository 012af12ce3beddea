/* edgec/io.h: mapped input files and atomic output files.
 *
 * Inputs are mmap'd read-only; the mapping owns the bytes and tensors borrow
 * from it. Outputs are written to "<dest>.tmp-XXXXXX" in the destination's
 * folder, fsync'd and renamed over the destination only when complete; on any
 * error, on ec_outfile_abort(), and on SIGINT/SIGTERM the temporary file is
 * removed, so a destination is either absent, its previous content, or a
 * complete new file.
 */
#ifndef EDGEC_IO_H
#define EDGEC_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "edgec/status.h"

struct ec_mapped_file {
    char *path;          /* owned copy of the path (for messages) */
    const uint8_t *data; /* mapping (NULL for an empty file) */
    uint64_t size_bytes; /* file size */
    bool borrowed;       /* data is a caller's buffer, not a mapping: close does not unmap */
};

/* Map a whole file read-only. On failure *m is left zeroed. */
enum ec_status ec_mapped_file_open(struct ec_mapped_file *m, const char *path, struct ec_diag *d);
void ec_mapped_file_close(struct ec_mapped_file *m);

/* Advise the kernel that the mapped (read-only, file-backed) range
 * [data, data + n_bytes) will not be needed again, so streaming drivers keep
 * their resident set to one chunk. Advice only: failure changes nothing. */
void ec_mapped_drop(const void *data, uint64_t n_bytes);

/* Read a whole (small) file into a NUL-terminated heap buffer. Files larger
 * than max_bytes are refused with EC_ERR_NOMEM. */
enum ec_status ec_read_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len,
                            struct ec_diag *d);

struct ec_outfile {
    char *dest_path;  /* final path */
    char *tmp_path;   /* temporary path in the same folder */
    FILE *fp;         /* buffered stream on the temporary file */
    uint64_t written; /* bytes written so far */
};

/* Create the temporary file beside dest. Refuses a dest that names the same
 * file as any of the NULL-terminated `inputs` (may be NULL). */
enum ec_status ec_outfile_open(struct ec_outfile *o, const char *dest, const char *const *inputs,
                               struct ec_diag *d);
/* Write n bytes; a short write (e.g. ENOSPC, EFBIG) is EC_ERR_IO naming the
 * destination and the offset. */
enum ec_status ec_outfile_write(struct ec_outfile *o, const void *buf, size_t n, struct ec_diag *d);
/* Write zero bytes until the offset is a multiple of align. */
enum ec_status ec_outfile_pad(struct ec_outfile *o, uint64_t align, struct ec_diag *d);
/* Flush, fsync, close and rename over dest; on failure the temp is removed. */
enum ec_status ec_outfile_commit(struct ec_outfile *o, struct ec_diag *d);
/* Close and remove the temporary file. Safe after commit and on a zeroed struct. */
void ec_outfile_abort(struct ec_outfile *o);

/* Same refusal as ec_outfile_open for a destination folder (prune output). */
bool ec_path_same_file(const char *a, const char *b);

/* Join a folder and a name into a heap string. */
char *ec_path_join(const char *dir, const char *name);
bool ec_path_is_dir(const char *path);
bool ec_path_exists(const char *path);

#endif
