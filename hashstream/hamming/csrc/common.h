/* Shared by every translation unit of the Hamming kernels: compiler helpers, the per-ISA target
 * attributes, limits, and the code store's geometry (the "blocked" layout, see module.c). */
#ifndef HS_COMMON_H
#define HS_COMMON_H

#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HS_X86 1
#include <immintrin.h>
#else
#define HS_X86 0
#endif

#define HS_INLINE static inline __attribute__((always_inline))
#define HS_LIKELY(x) __builtin_expect(!!(x), 1)
#define HS_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* functions shared between the extension's files, not exported from the .so */
#define HS_HIDDEN __attribute__((visibility("hidden")))

#if HS_X86
#define HS_T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt,bmi,bmi2")))
#define HS_T_AVX2 __attribute__((target("avx2,popcnt,bmi,bmi2")))
#define HS_T_POPCNT __attribute__((target("popcnt")))
#else
#define HS_T_POPCNT
#endif

#define HS_MAX_W 16  /* 1024 bits of 64-bit words */
#define HS_MAX_M 64  /* substrings */
#define HS_POS_BITS 40
#define HS_POS_MASK ((((uint64_t)1) << HS_POS_BITS) - 1)

typedef struct {
    const uint8_t *db;      /* blocked codes */
    const uint8_t *removed; /* NULL or one byte per position, nonzero = removed */
    int64_t begin, end;     /* positions scanned: [begin, end) */
    int lane;               /* bytes per word: 4 or 8 */
    int W;                  /* words per code */
    int bits;               /* code length (largest distance) */
} hs_db;

/* word w of the code at position pos (blocks of 8 or 16 codes: shifts, not divisions) */
HS_INLINE const uint8_t *hs_code_ptr(const uint8_t *db, int lane, int W, int64_t pos, int w) {
    const int sh = lane == 8 ? 3 : 4;
    return db + (pos >> sh) * (int64_t)W * 64 + (int64_t)w * 64 + (pos & ((1 << sh) - 1)) * lane;
}

HS_INLINE uint64_t hs_load_word(const uint8_t *p, int lane) {
    if (lane == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#endif
