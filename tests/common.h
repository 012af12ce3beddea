/* tests/common.h: helpers shared by the Criterion suites. */
#ifndef EDGEC_TESTS_COMMON_H
#define EDGEC_TESTS_COMMON_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Per-test Criterion timeouts, in seconds. A build for valgrind
 * (scripts/valgrind.sh: -DEC_TIMEOUT_SCALE=100) stretches them, since the
 * tests run 20-50x slower there; the timeouts only catch hangs. */
#ifndef EC_TIMEOUT_SCALE
#define EC_TIMEOUT_SCALE 1
#endif
#define EC_TIMEOUT(seconds) ((seconds) * (EC_TIMEOUT_SCALE))

/* Path of a file under EDGEC_SHARED (default ../shared relative to the
 * project root, which meson passes as EDGEC_SOURCE_ROOT). Returns a heap
 * string, or NULL after skipping the test (or failing it when CI=true)
 * because the material is absent. */
static inline char *ec_test_shared(const char *rel)
{
    const char *root = getenv("EDGEC_SHARED");
    char base[4096];
    if (root && *root)
        snprintf(base, sizeof base, "%s", root);
    else
        snprintf(base, sizeof base, "%s/../shared", EDGEC_SOURCE_ROOT);
    size_t n = strlen(base) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", base, rel);
    struct stat st;
    if (stat(p, &st) != 0) {
        const char *ci = getenv("CI");
        if (ci && strcmp(ci, "true") == 0)
            cr_assert_fail("shared test material missing under CI=true: %s (set EDGEC_SHARED)", p);
        cr_skip_test("shared test material absent: %s (set EDGEC_SHARED to run this test)", p);
        free(p);
        return NULL;
    }
    return p;
}

/* A fresh temporary folder for a test (heap string). */
static inline char *ec_test_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/edgec-test-XXXXXX", t && *t ? t : "/tmp");
    char *p = mkdtemp(tmpl);
    cr_assert_not_null(p, "mkdtemp failed");
    return strdup(p);
}

#endif
