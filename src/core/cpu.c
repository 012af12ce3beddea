/* One probe of the CPU's SIMD features (see cpu.h). __builtin_cpu_supports
 * reports a feature only when the OS saves its registers too. */
#include "src/core/cpu.h"

static unsigned cpu_bits;     /* valid once cpu_probed is set */
static int cpu_probed;

unsigned ec_cpu_features(void)
{
    if (__atomic_load_n(&cpu_probed, __ATOMIC_ACQUIRE))
        return __atomic_load_n(&cpu_bits, __ATOMIC_RELAXED);
    unsigned f = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    f |= __builtin_cpu_supports("avx2") ? EC_CPU_AVX2 : 0u;
    f |= __builtin_cpu_supports("fma") ? EC_CPU_FMA : 0u;
    f |= __builtin_cpu_supports("avx512f") ? EC_CPU_AVX512F : 0u;
    f |= __builtin_cpu_supports("avx512dq") ? EC_CPU_AVX512DQ : 0u;
    f |= __builtin_cpu_supports("avx512bw") ? EC_CPU_AVX512BW : 0u;
    f |= __builtin_cpu_supports("avx512vl") ? EC_CPU_AVX512VL : 0u;
    f |= __builtin_cpu_supports("avx512vnni") ? EC_CPU_AVX512VNNI : 0u;
#endif
    /* every thread computes the same bits, so a race only repeats the probe */
    __atomic_store_n(&cpu_bits, f, __ATOMIC_RELAXED);
    __atomic_store_n(&cpu_probed, 1, __ATOMIC_RELEASE);
    return f;
}
