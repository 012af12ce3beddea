/* src/core/clones.h: functions compiled twice, for the baseline x86-64 ISA
 * and for AVX2, with the better one picked when the program loads (GCC
 * target_clones, an ifunc). For plain loops the compiler vectorizes better
 * with AVX2; the source is the same, and with -ffp-contract=off both builds
 * perform the same IEEE operations per element. Elsewhere: one build. */
#ifndef EDGEC_CORE_CLONES_H
#define EDGEC_CORE_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define EC_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EC_AVX2_CLONES
#endif

#endif
