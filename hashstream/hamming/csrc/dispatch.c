/* CPU dispatch: AVX-512 (F, BW, VL, DQ, VPOPCNTDQ), AVX2, scalar with POPCNT, plain scalar;
 * chosen at import from what the CPU and OS support, lowered with set_isa() for tests. */
#include "dispatch.h"

#include <string.h>

const char *const hs_isa_names[ISA_AVX512 + 1] = {"scalar", "popcnt", "avx2", "avx512"};
int hs_isa_max = ISA_SCALAR;
int hs_isa = ISA_SCALAR;
int64_t hs_tile_bytes = 32768;

void hs_dispatch_init(void) {
#if HS_X86
    __builtin_cpu_init();
    int best = ISA_SCALAR;
    if (__builtin_cpu_supports("popcnt")) best = ISA_POPCNT;
    if (best == ISA_POPCNT && __builtin_cpu_supports("avx2")) best = ISA_AVX2;
    if (best == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vpopcntdq"))
        best = ISA_AVX512;
    hs_isa_max = best;
#else
    hs_isa_max = ISA_SCALAR;
#endif
    hs_isa = hs_isa_max;
}

int hs_isa_index(const char *name) {
    for (int i = 0; i <= ISA_AVX512; i++)
        if (strcmp(name, hs_isa_names[i]) == 0) return i;
    return -1;
}
