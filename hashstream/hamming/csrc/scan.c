/* Flat-scan kernels: each instruction set's vector operations, instantiated through the one
 * template of scan.h for both lane widths, and the choice of kernel for an instruction set.
 *
 * Storage ("blocked" layout, see module.c): word w of the code at position p lives at
 * db + (p / B) * W * 64 + w * 64 + (p % B) * lane with B = 64 / lane, so one 512-bit load reads
 * one word of 8 (or 16) codes and the scan is XOR + popcount + compare. */
#include "dispatch.h"
#include "topk.h"

/* ------------------------------------------------------------------------------------------ */
/* Scalar (compiled twice: plain and with the POPCNT instruction): a "vector" is one code.      */

HS_INLINE int32_t hs_scalar_dist(const uint8_t *p, const void *q, int W, int lane) {
    int32_t d = 0;
    for (int w = 0; w < W; w++)
        d += __builtin_popcountll(hs_load_word(p + (int64_t)w * 64, lane) ^
                                  hs_load_word((const uint8_t *)q + (int64_t)w * lane, lane));
    return d;
}

#define HS_SCALAR_VEC int32_t
#define HS_SCALAR_NV 1
#define HS_SCALAR_G 1
#define HS_SCALAR_PAIR 0
#define HS_SCALAR_DIST(p, q, W) hs_scalar_dist(p, q, W, HS_LANE)
#define HS_SCALAR_THR(D) (D)
#define HS_SCALAR_LT(d, T) ((unsigned)((d) < (T)))
#define HS_SCALAR_STORE(tmp, d) ((tmp)[0] = (d))

#define HS_ISA scalar
#define HS_TARGET
#define HS_OPS HS_SCALAR
#include "scan.h"

#define HS_ISA popcnt
#define HS_TARGET HS_T_POPCNT
#define HS_OPS HS_SCALAR
#include "scan.h"

#if HS_X86
/* ------------------------------------------------------------------------------------------ */
/* AVX2: 4 x 64-bit (or 8 x 32-bit) codes per vector, popcount by nibble lookup (Mula).        */

HS_T_AVX2 HS_INLINE __m256i hs_avx2_bytecount(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* distances of the 4 (lane 8) or 8 (lane 4) codes of half a block */
HS_T_AVX2 HS_INLINE __m256i hs_avx2_dist(const uint8_t *p, const void *q, int W, int lane) {
    __m256i acc = _mm256_setzero_si256();
    for (int w = 0; w < W; w++) {
        const __m256i qv = lane == 8 ? _mm256_set1_epi64x((long long)((const uint64_t *)q)[w])
                                     : _mm256_set1_epi32((int)((const uint32_t *)q)[w]);
        __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + (int64_t)w * 64)), qv);
        acc = _mm256_add_epi8(acc, hs_avx2_bytecount(x)); /* <= 8 * 16 = 128 per byte */
    }
    if (lane == 8) return _mm256_sad_epu8(acc, _mm256_setzero_si256());
    return _mm256_madd_epi16(_mm256_maddubs_epi16(acc, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
}

#define HS_AVX2_VEC __m256i
#define HS_AVX2_NV (32 / HS_LANE)
#define HS_AVX2_G 1
#define HS_AVX2_PAIR 0
#define HS_AVX2_DIST(p, q, W) hs_avx2_dist(p, q, W, HS_LANE)
#define HS_AVX2_THR(D) (HS_LANE == 8 ? _mm256_set1_epi64x(D) : _mm256_set1_epi32(D))
#define HS_AVX2_LT(d, T)                                                                       \
    (HS_LANE == 8 ? (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(T, d))) \
                  : (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(T, d))))
#define HS_AVX2_STORE(tmp, d) _mm256_storeu_si256((__m256i *)(void *)(tmp), d)

#define HS_ISA avx2
#define HS_TARGET HS_T_AVX2
#define HS_OPS HS_AVX2
#include "scan.h"

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 with VPOPCNTQ/VPOPCNTD: 8 x 64-bit (16 x 32-bit) codes per instruction, 4 queries    */
/* per pass over a block so each load serves four XOR/popcount/compare chains.                  */

HS_T_AVX512 HS_INLINE __m512i hs_z_dist(const uint8_t *p, const void *q, int W, int lane) {
    if (lane == 4)
        return _mm512_popcnt_epi32(_mm512_xor_si512(_mm512_loadu_si512((const void *)p),
                                                    _mm512_set1_epi32((int)*(const uint32_t *)q)));
    const uint64_t *q64 = (const uint64_t *)q;
    __m512i acc = _mm512_popcnt_epi64(
        _mm512_xor_si512(_mm512_loadu_si512((const void *)p), _mm512_set1_epi64((long long)q64[0])));
    for (int w = 1; w < W; w++)
        acc = _mm512_add_epi64(
            acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(p + (int64_t)w * 64)),
                                                      _mm512_set1_epi64((long long)q64[w]))));
    return acc;
}

#define HS_Z_VEC __m512i
#define HS_Z_NV (64 / HS_LANE)
#define HS_Z_G 4
#define HS_Z_PAIR 1
#define HS_Z_DIST(p, q, W) hs_z_dist(p, q, W, HS_LANE)
#define HS_Z_THR(D) (HS_LANE == 8 ? _mm512_set1_epi64(D) : _mm512_set1_epi32(D))
#define HS_Z_LT(d, T) \
    (HS_LANE == 8 ? (unsigned)_mm512_cmplt_epu64_mask(d, T) : (unsigned)_mm512_cmplt_epu32_mask(d, T))
#define HS_Z_MIN(a, b) (HS_LANE == 8 ? _mm512_min_epu64(a, b) : _mm512_min_epu32(a, b))
#define HS_Z_STORE(tmp, d) _mm512_storeu_si512((void *)(tmp), d)

#define HS_ISA avx512
#define HS_TARGET HS_T_AVX512
#define HS_OPS HS_Z
#include "scan.h"
#endif /* HS_X86 */

hs_scan_fn hs_scan_for(int isa, int lane) {
    const int wide = lane == 8;
#if HS_X86
    if (isa >= ISA_AVX512) return wide ? hs_scan_avx512_8 : hs_scan_avx512_4;
    if (isa >= ISA_AVX2) return wide ? hs_scan_avx2_8 : hs_scan_avx2_4;
#endif
    if (isa >= ISA_POPCNT) return wide ? hs_scan_popcnt_8 : hs_scan_popcnt_4;
    return wide ? hs_scan_scalar_8 : hs_scan_scalar_4;
}
