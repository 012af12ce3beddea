/* src/core/cpu.h: the CPU's SIMD features, probed once, for the kernels that
 * pick a code path at run time (matmul, integer dots, attention, the K-quant
 * searches, the pruning linear algebra). One probe instead of one per file;
 * each kernel family still decides which features its levels need. */
#ifndef EDGEC_CORE_CPU_H
#define EDGEC_CORE_CPU_H

enum ec_cpu_feature {
    EC_CPU_AVX2 = 1u << 0,
    EC_CPU_FMA = 1u << 1,
    EC_CPU_AVX512F = 1u << 2,
    EC_CPU_AVX512DQ = 1u << 3,
    EC_CPU_AVX512BW = 1u << 4,
    EC_CPU_AVX512VL = 1u << 5,
    EC_CPU_AVX512VNNI = 1u << 6,
};

/* The features this CPU (and OS) offers, as EC_CPU_* bits; 0 off x86-64.
 * Thread-safe; the probe runs once. */
unsigned ec_cpu_features(void);

/* true when every bit of mask is offered */
static inline int ec_cpu_has(unsigned mask)
{
    return (ec_cpu_features() & mask) == mask;
}

#endif
