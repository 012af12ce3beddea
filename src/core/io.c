/* Mapped inputs and atomic outputs (see edgec/io.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edgec/io.h"

enum ec_status ec_mapped_file_open(struct ec_mapped_file *m, const char *path, struct ec_diag *d)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ec_fail(d, EC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ec_fail(d, EC_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ec_fail(d, EC_ERR_IO, "%s: not a regular file", path);
    }
    m->path = strdup(path);
    if (!m->path) {
        close(fd);
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    }
    m->size_bytes = (uint64_t)st.st_size;
    if (m->size_bytes > 0) {
        void *p = mmap(NULL, (size_t)m->size_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m->path);
            memset(m, 0, sizeof *m);
            return ec_fail(d, EC_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    return EC_OK;
}

void ec_mapped_file_close(struct ec_mapped_file *m)
{
    if (!m)
        return;
    if (m->data && !m->borrowed)
        munmap((void *)m->data, (size_t)m->size_bytes);
    free(m->path);
    memset(m, 0, sizeof *m);
}

void ec_mapped_drop(const void *data, uint64_t n_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n_bytes == 0 || !data)
        return;
    uintptr_t b = ((uintptr_t)data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t e = ((uintptr_t)data + (uintptr_t)n_bytes) & ~((uintptr_t)page - 1);
    if (e > b)
        madvise((void *)b, (size_t)(e - b), MADV_DONTNEED);
}

enum ec_status ec_read_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len,
                            struct ec_diag *d)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ec_fail(d, EC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(f);
                return ec_fail(d, EC_ERR_NOMEM, "%s: file larger than the limit of %llu bytes",
                               path, (unsigned long long)max_bytes);
            }
            size_t ncap = cap * 2;
            if (ncap > max_bytes)
                ncap = (size_t)max_bytes;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                free(buf);
                fclose(f);
                return ec_fail(d, EC_ERR_IO, "%s: read error at byte %zu", path, len);
            }
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    if (out_len)
        *out_len = len;
    return EC_OK;
}

/* ---- temporary-file registry for signal cleanup ----
 * A fixed table of paths, written before the file exists and cleared after
 * rename/unlink; the handler only calls unlink() (async-signal-safe). */
#define EC_MAX_LIVE_TMP 8
#define EC_TMP_PATH_MAX 4096
static char live_tmp[EC_MAX_LIVE_TMP][EC_TMP_PATH_MAX];
static volatile sig_atomic_t live_used[EC_MAX_LIVE_TMP];
static int handlers_installed;

static void on_fatal_signal(int sig)
{
    for (int i = 0; i < EC_MAX_LIVE_TMP; i++)
        if (live_used[i])
            unlink(live_tmp[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    if (handlers_installed)
        return;
    handlers_installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue; /* respect an inherited "ignore" (nohup) */
        sigaction(sigs[i], &sa, NULL);
    }
}

static int register_tmp(const char *path)
{
    if (strlen(path) >= EC_TMP_PATH_MAX)
        return -1;
    for (int i = 0; i < EC_MAX_LIVE_TMP; i++) {
        if (!live_used[i]) {
            strcpy(live_tmp[i], path);
            live_used[i] = 1;
            return i;
        }
    }
    return -1;
}

static void unregister_tmp(const char *path)
{
    for (int i = 0; i < EC_MAX_LIVE_TMP; i++) {
        if (live_used[i] && strcmp(live_tmp[i], path) == 0) {
            live_used[i] = 0;
            return;
        }
    }
}

bool ec_path_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

enum ec_status ec_outfile_open(struct ec_outfile *o, const char *dest, const char *const *inputs,
                               struct ec_diag *d)
{
    memset(o, 0, sizeof *o);
    if (inputs) {
        for (size_t i = 0; inputs[i]; i++) {
            if (ec_path_same_file(dest, inputs[i]))
                return ec_fail(d, EC_ERR_ARG, "%s: output would overwrite the input '%s'", dest,
                               inputs[i]);
        }
    }
    size_t n = strlen(dest);
    o->dest_path = strdup(dest);
    o->tmp_path = malloc(n + 16);
    if (!o->dest_path || !o->tmp_path) {
        free(o->dest_path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dest);
    }
    snprintf(o->tmp_path, n + 16, "%s.tmp-XXXXXX", dest);
    install_handlers();
    /* Block the signals while the file exists but is not yet registered. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    int fd = mkstemp(o->tmp_path);
    int err = errno;
    if (fd >= 0)
        register_tmp(o->tmp_path);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (fd < 0) {
        enum ec_status s = ec_fail(d, EC_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                                   dest, strerror(err));
        free(o->dest_path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
        return s;
    }
    fchmod(fd, 0644);
    o->fp = fdopen(fd, "wb");
    if (!o->fp) {
        close(fd);
        ec_outfile_abort(o);
        return ec_fail(d, EC_ERR_IO, "%s: fdopen failed", dest);
    }
    setvbuf(o->fp, NULL, _IOFBF, 1 << 20);
    return EC_OK;
}

enum ec_status ec_outfile_write(struct ec_outfile *o, const void *buf, size_t n, struct ec_diag *d)
{
    if (n == 0)
        return EC_OK;
    errno = 0;
    size_t w = fwrite(buf, 1, n, o->fp);
    if (w != n) {
        int e = errno ? errno : EIO;
        return ec_fail(d, EC_ERR_IO, "%s: write failed at byte %llu: %s", o->dest_path,
                       (unsigned long long)(o->written + w), strerror(e));
    }
    o->written += n;
    return EC_OK;
}

enum ec_status ec_outfile_pad(struct ec_outfile *o, uint64_t align, struct ec_diag *d)
{
    static const uint8_t zeros[256];
    if (align <= 1)
        return EC_OK;
    uint64_t pad = (align - o->written % align) % align;
    while (pad > 0) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        enum ec_status s = ec_outfile_write(o, zeros, k, d);
        if (s)
            return s;
        pad -= k;
    }
    return EC_OK;
}

enum ec_status ec_outfile_commit(struct ec_outfile *o, struct ec_diag *d)
{
    if (!o->fp)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: output not open", o->dest_path ? o->dest_path : "?");
    errno = 0;
    if (fflush(o->fp) != 0 || fsync(fileno(o->fp)) != 0) {
        int e = errno ? errno : EIO;
        enum ec_status s = ec_fail(d, EC_ERR_IO, "%s: cannot flush %llu bytes: %s", o->dest_path,
                                   (unsigned long long)o->written, strerror(e));
        ec_outfile_abort(o);
        return s;
    }
    int rc = fclose(o->fp);
    o->fp = NULL;
    if (rc != 0) {
        int e = errno;
        enum ec_status s = ec_fail(d, EC_ERR_IO, "%s: close failed: %s", o->dest_path, strerror(e));
        ec_outfile_abort(o);
        return s;
    }
    if (rename(o->tmp_path, o->dest_path) != 0) {
        int e = errno;
        enum ec_status s = ec_fail(d, EC_ERR_IO, "%s: cannot rename the temporary file into place: %s",
                                   o->dest_path, strerror(e));
        ec_outfile_abort(o);
        return s;
    }
    unregister_tmp(o->tmp_path);
    /* make the rename durable */
    char *dcopy = strdup(o->dest_path);
    if (dcopy) {
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dcopy);
    }
    free(o->tmp_path);
    free(o->dest_path);
    memset(o, 0, sizeof *o);
    return EC_OK;
}

void ec_outfile_abort(struct ec_outfile *o)
{
    if (!o)
        return;
    if (o->fp) {
        fclose(o->fp);
        o->fp = NULL;
    }
    if (o->tmp_path) {
        unlink(o->tmp_path);
        unregister_tmp(o->tmp_path);
    }
    free(o->tmp_path);
    free(o->dest_path);
    memset(o, 0, sizeof *o);
}

char *ec_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

bool ec_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool ec_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}
