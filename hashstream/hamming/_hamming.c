/* Hamming-distance kernels for hashstream.hamming.index (CPython extension, no NumPy
 * headers: arrays travel through the buffer protocol; the Python side allocates the outputs).
 *
 * Storage ("blocked" layout).  A code of `bits` bits is padded with zero bits to W lane words of
 * `lane` bytes (lane = 4 when bits <= 32, else 8).  Codes are stored in blocks of B = 64 / lane
 * codes; a block holds word 0 of its B codes (64 bytes), then word 1, ...: the word w of the
 * code at position p lives at  db + (p / B) * W * 64 + w * 64 + (p % B) * lane.  One 512-bit
 * load therefore reads one word of 8 (or 16) codes, and the scan is XOR + popcount + compare.
 *
 * Flat top-k.  Positions are scanned in increasing order, database tile by tile (a tile is
 * cache sized) against every query.  Each query keeps D, the distance a new item must beat:
 * while fewer than k items were kept D = bits + 1, afterwards the k-th smallest kept distance.
 * An item is kept iff d < D -- an item at distance D comes after every kept one and loses the
 * tie (ties go to the smaller position, i.e. the earlier insertion).  D only decreases; a
 * histogram of kept distances keeps it up to date in O(1) amortized.  When a query's buffer
 * fills it is compacted to exactly its k best.  Threads split the database into contiguous
 * ranges; their lists are merged with a stable counting sort by distance, which orders results
 * by (distance, position).
 *
 * Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012).  The first `bits` bits are cut
 * into m substrings of at most 32 bits; table j sorts all items by substring j (counting sort,
 * CSR offsets) and stores the positions and a copy of the codes in that order.  A query probes
 * table 0..m-1 at substring radius 0, then 1, ...; after (rho, j) every item at distance
 * <= m * rho + j has been seen (pigeonhole), so the search stops once the k-th best distance is
 * below that bound -- all items at or below the k-th distance are known and the (distance,
 * position) order is exact.  An item seen again in another table is skipped by recomputing its
 * substring distances (it is new only at its lexicographically first (rho, j)).  A search
 * whose work passes `budget` gives up (status 1) and the caller runs the flat scan instead.
 *
 * CPU dispatch: AVX-512 (F, BW, VL, VPOPCNTDQ), AVX2, scalar with POPCNT, plain scalar; chosen
 * at import from what the CPU and OS support (`isa()`), lowered with `set_isa()` for tests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
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

#if HS_X86
#define HS_T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt,bmi,bmi2")))
#define HS_T_AVX2 __attribute__((target("avx2,popcnt,bmi,bmi2")))
#define HS_T_POPCNT __attribute__((target("popcnt")))
#else
#define HS_T_POPCNT
#endif

enum { ISA_SCALAR = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };
static const char *const hs_isa_names[] = {"scalar", "popcnt", "avx2", "avx512"};
static int hs_isa_max = ISA_SCALAR; /* best the machine supports */
static int hs_isa = ISA_SCALAR;     /* in use */
static int64_t hs_tile_bytes = 32768;

#define HS_MAX_W 16  /* 1024 bits of 64-bit words */
#define HS_MAX_M 64  /* substrings */
#define HS_POS_BITS 40
#define HS_PROBE_BATCH 32
#define HS_PROBE_WORK 16 /* MIH budget units: one bucket probe vs one code word checked */
#define HS_POS_MASK ((((uint64_t)1) << HS_POS_BITS) - 1)

/* ------------------------------------------------------------------------------------------ */
/* Shared scalar helpers                                                                        */

typedef struct {
    const uint8_t *db;      /* blocked codes */
    const uint8_t *removed; /* NULL or one byte per position, nonzero = removed */
    int64_t begin, end;     /* positions scanned: [begin, end) */
    int lane;               /* bytes per word: 4 or 8 */
    int W;                  /* words per code */
    int bits;               /* code length (largest distance) */
} hs_db;

/* One query's running result.  Entries are keys (d << 40 | pos).  Top-k mode (k > 0): keep an
 * item iff d < D.  Range mode (k == 0): D = radius + 1 is fixed and the buffer grows. */
typedef struct {
    uint64_t *buf;
    int32_t *cnt; /* histogram of kept distances (top-k mode), bits + 2 entries */
    int64_t len, cap, k, below; /* below = number kept with d < D */
    int32_t D;
    int err; /* out of memory in range mode */
} hs_topk;

static void hs_topk_compact(hs_topk *t) {
    /* Keep every d < D and the first (k - below) entries at d == D (buffer is in position order
     * for the flat scan).  Leaves exactly min(total, k) entries. */
    int64_t need = t->k - t->below, j = 0;
    const uint64_t D = (uint64_t)t->D;
    for (int64_t i = 0; i < t->len; i++) {
        uint64_t key = t->buf[i], d = key >> HS_POS_BITS;
        if (d < D || (d == D && need-- > 0)) t->buf[j++] = key;
    }
    t->len = j;
}

static void hs_topk_full(hs_topk *t) {
    if (t->k > 0) {
        hs_topk_compact(t);
        return;
    }
    int64_t ncap = t->cap * 2 + 64;
    uint64_t *nb = (uint64_t *)realloc(t->buf, (size_t)ncap * sizeof(uint64_t));
    if (nb == NULL) {
        t->err = 1;
        return;
    }
    t->buf = nb;
    t->cap = ncap;
}

HS_INLINE void hs_push(hs_topk *t, int32_t d, int64_t pos) {
    if (HS_UNLIKELY(t->len == t->cap)) {
        hs_topk_full(t);
        if (t->len == t->cap) return; /* out of memory (flagged) */
    }
    t->buf[t->len++] = ((uint64_t)d << HS_POS_BITS) | (uint64_t)pos;
    if (t->k > 0) {
        t->cnt[d]++;
        if (++t->below >= t->k) {
            do {
                t->D--;
                t->below -= t->cnt[t->D];
            } while (t->below >= t->k);
        }
    }
}

/* Consider one item found by a SIMD compare: re-check against the current D (it may have
 * dropped while earlier lanes of the same vector were pushed), the range and the removal mask. */
HS_INLINE void hs_consider(hs_topk *t, const hs_db *db, int32_t d, int64_t pos) {
    if (d >= t->D || pos < db->begin || pos >= db->end) return;
    if (db->removed != NULL && db->removed[pos]) return;
    hs_push(t, d, pos);
}

/* word w of the code at position pos (blocks of 8 or 16 codes: shifts, not divisions) */
HS_INLINE const uint8_t *hs_code_ptr(const uint8_t *db, int lane, int W, int64_t pos, int w) {
    const int sh = lane == 8 ? 3 : 4;
    return db + (pos >> sh) * (int64_t)W * 64 + (int64_t)w * 64 + (pos & ((1 << sh) - 1)) * lane;
}

HS_INLINE const uint8_t *hs_word_ptr(const hs_db *db, int64_t pos, int w) {
    return hs_code_ptr(db->db, db->lane, db->W, pos, w);
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

/* ------------------------------------------------------------------------------------------ */
/* Scalar scans (compiled twice: plain and with the POPCNT instruction)                         */

HS_INLINE void scan_scalar_body(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                                hs_topk *tk) {
    const int W = db->W, lane = db->lane;
    const int64_t tile = hs_tile_bytes / ((int64_t)W * lane) > 0 ? hs_tile_bytes / ((int64_t)W * lane) : 1;
    uint64_t qw[HS_MAX_W];
    for (int64_t t0 = db->begin; t0 < db->end; t0 += tile) {
        const int64_t t1 = t0 + tile < db->end ? t0 + tile : db->end;
        for (int64_t qi = q0; qi < q1; qi++) {
            hs_topk *t = &tk[qi];
            for (int w = 0; w < W; w++) qw[w] = hs_load_word(Q + (qi * W + w) * lane, lane);
            for (int64_t p = t0; p < t1; p++) {
                int32_t d = 0;
                for (int w = 0; w < W; w++)
                    d += __builtin_popcountll(hs_load_word(hs_word_ptr(db, p, w), lane) ^ qw[w]);
                if (d < t->D && (db->removed == NULL || !db->removed[p])) hs_push(t, d, p);
            }
        }
    }
}

static void scan_scalar(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1, hs_topk *tk) {
    scan_scalar_body(db, Q, q0, q1, tk);
}

HS_T_POPCNT static void scan_popcnt(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                                    hs_topk *tk) {
    scan_scalar_body(db, Q, q0, q1, tk);
}

#if HS_X86
/* ------------------------------------------------------------------------------------------ */
/* AVX2: 4 x 64-bit (or 8 x 32-bit) codes per vector, popcount by nibble lookup (Mula).        */

HS_T_AVX2 HS_INLINE __m256i avx2_bytecount(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* distances of 4 (lane 8) or 8 (lane 4) codes: half `h` of a block */
HS_T_AVX2 HS_INLINE __m256i avx2_dist(const uint8_t *blk, const __m256i *qv, int W, int lane) {
    __m256i acc = _mm256_setzero_si256();
    for (int w = 0; w < W; w++) {
        __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + (int64_t)w * 64)), qv[w]);
        acc = _mm256_add_epi8(acc, avx2_bytecount(x)); /* <= 8 * 16 = 128 per byte */
    }
    if (lane == 8) return _mm256_sad_epu8(acc, _mm256_setzero_si256());
    return _mm256_madd_epi16(_mm256_maddubs_epi16(acc, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
}

HS_T_AVX2 static void scan_avx2(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                                hs_topk *tk) {
    const int W = db->W, lane = db->lane, B = 64 / lane, per = 32 / lane;
    const int64_t bstride = (int64_t)W * 64;
    const int64_t blk0 = db->begin / B, blk1 = (db->end + B - 1) / B;
    const int64_t tile = hs_tile_bytes / bstride > 0 ? hs_tile_bytes / bstride : 1;
    __m256i qv[HS_MAX_W];
    for (int64_t t0 = blk0; t0 < blk1; t0 += tile) {
        const int64_t t1 = t0 + tile < blk1 ? t0 + tile : blk1;
        for (int64_t qi = q0; qi < q1; qi++) {
            hs_topk *t = &tk[qi];
            for (int w = 0; w < W; w++) {
                uint64_t x = hs_load_word(Q + (qi * W + w) * lane, lane);
                qv[w] = lane == 8 ? _mm256_set1_epi64x((long long)x) : _mm256_set1_epi32((int)x);
            }
            for (int64_t b = t0; b < t1; b++) {
                const uint8_t *blk = db->db + b * bstride;
                for (int h = 0; h < 2; h++) {
                    __m256i d = avx2_dist(blk + h * 32, qv, W, lane);
                    unsigned m;
                    if (lane == 8) {
                        __m256i th = _mm256_set1_epi64x(t->D);
                        m = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(th, d)));
                    } else {
                        __m256i th = _mm256_set1_epi32(t->D);
                        m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(th, d)));
                    }
                    if (HS_UNLIKELY(m != 0)) {
                        uint64_t d64[4];
                        uint32_t d32[8];
                        if (lane == 8) _mm256_storeu_si256((__m256i *)d64, d);
                        else _mm256_storeu_si256((__m256i *)d32, d);
                        while (m) {
                            int j = __builtin_ctz(m);
                            m &= m - 1;
                            int32_t dj = lane == 8 ? (int32_t)d64[j] : (int32_t)d32[j];
                            hs_consider(t, db, dj, b * B + h * per + j);
                        }
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 with VPOPCNTQ/VPOPCNTD: 8 x 64-bit (16 x 32-bit) codes per instruction, 4 queries    */
/* per pass over a block so each load serves four XOR/popcount/compare chains.                  */

HS_T_AVX512 HS_INLINE __m512i z_dist64(const uint8_t *blk, const uint64_t *q, int W) {
    __m512i acc = _mm512_popcnt_epi64(
        _mm512_xor_si512(_mm512_loadu_si512((const void *)blk), _mm512_set1_epi64((long long)q[0])));
    for (int w = 1; w < W; w++)
        acc = _mm512_add_epi64(
            acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(blk + (int64_t)w * 64)),
                                                      _mm512_set1_epi64((long long)q[w]))));
    return acc;
}

HS_T_AVX512 HS_INLINE void z_handle64(hs_topk *t, const hs_db *db, __m512i d, unsigned m,
                                      int64_t base) {
    uint64_t tmp[8];
    _mm512_storeu_si512((void *)tmp, d);
    while (m) {
        int j = __builtin_ctz(m);
        m &= m - 1;
        hs_consider(t, db, (int32_t)tmp[j], base + j);
    }
}

HS_T_AVX512 HS_INLINE void z_scan64(const hs_db *db, const uint64_t *Q, int64_t q0, int64_t q1,
                                    hs_topk *tk, const int W) {
    const int64_t bstride = (int64_t)W * 64;
    const int64_t blk0 = db->begin / 8, blk1 = (db->end + 7) / 8;
    const int64_t tile = hs_tile_bytes / bstride > 0 ? hs_tile_bytes / bstride : 1;
    for (int64_t t0 = blk0; t0 < blk1; t0 += tile) {
        const int64_t t1 = t0 + tile < blk1 ? t0 + tile : blk1;
        int64_t qi = q0;
        for (; qi + 4 <= q1; qi += 4) {
            hs_topk *ta = &tk[qi], *tb = ta + 1, *tc = ta + 2, *td = ta + 3;
            const uint64_t *qa = Q + qi * W, *qb = qa + W, *qc = qb + W, *qd = qc + W;
            __m512i Ta = _mm512_set1_epi64(ta->D), Tb = _mm512_set1_epi64(tb->D);
            __m512i Tc = _mm512_set1_epi64(tc->D), Td = _mm512_set1_epi64(td->D);
            int64_t b = t0;
            /* two blocks per step: one compare of the lane-wise minimum per query (the
             * compare shares port 5 with VPOPCNTQ; the minimum does not) */
            for (; b + 2 <= t1; b += 2) {
                const uint8_t *blk = db->db + b * bstride;
                __m512i da = z_dist64(blk, qa, W), dbv = z_dist64(blk, qb, W);
                __m512i dc = z_dist64(blk, qc, W), dd = z_dist64(blk, qd, W);
                __m512i ea = z_dist64(blk + bstride, qa, W), eb = z_dist64(blk + bstride, qb, W);
                __m512i ec = z_dist64(blk + bstride, qc, W), ed = z_dist64(blk + bstride, qd, W);
                __mmask8 ma = _mm512_cmplt_epu64_mask(_mm512_min_epu64(da, ea), Ta);
                __mmask8 mb = _mm512_cmplt_epu64_mask(_mm512_min_epu64(dbv, eb), Tb);
                __mmask8 mc = _mm512_cmplt_epu64_mask(_mm512_min_epu64(dc, ec), Tc);
                __mmask8 md = _mm512_cmplt_epu64_mask(_mm512_min_epu64(dd, ed), Td);
                if (HS_UNLIKELY((ma | mb | mc | md) != 0)) {
#define HS_Z64_PAIR(T_, t_, d_, e_, m_)                                                  \
    if (m_) {                                                                            \
        unsigned m0_ = _mm512_cmplt_epu64_mask(d_, T_);                                  \
        if (m0_) { z_handle64(t_, db, d_, m0_, b * 8); T_ = _mm512_set1_epi64(t_->D); }  \
        unsigned m1_ = _mm512_cmplt_epu64_mask(e_, T_);                                  \
        if (m1_) { z_handle64(t_, db, e_, m1_, b * 8 + 8); T_ = _mm512_set1_epi64(t_->D); } \
    }
                    HS_Z64_PAIR(Ta, ta, da, ea, ma)
                    HS_Z64_PAIR(Tb, tb, dbv, eb, mb)
                    HS_Z64_PAIR(Tc, tc, dc, ec, mc)
                    HS_Z64_PAIR(Td, td, dd, ed, md)
#undef HS_Z64_PAIR
                }
            }
            for (; b < t1; b++) {
                const uint8_t *blk = db->db + b * bstride;
                __m512i da = z_dist64(blk, qa, W), dbv = z_dist64(blk, qb, W);
                __m512i dc = z_dist64(blk, qc, W), dd = z_dist64(blk, qd, W);
                __mmask8 ma = _mm512_cmplt_epu64_mask(da, Ta), mb = _mm512_cmplt_epu64_mask(dbv, Tb);
                __mmask8 mc = _mm512_cmplt_epu64_mask(dc, Tc), md = _mm512_cmplt_epu64_mask(dd, Td);
                if (HS_UNLIKELY((ma | mb | mc | md) != 0)) {
                    if (ma) { z_handle64(ta, db, da, ma, b * 8); Ta = _mm512_set1_epi64(ta->D); }
                    if (mb) { z_handle64(tb, db, dbv, mb, b * 8); Tb = _mm512_set1_epi64(tb->D); }
                    if (mc) { z_handle64(tc, db, dc, mc, b * 8); Tc = _mm512_set1_epi64(tc->D); }
                    if (md) { z_handle64(td, db, dd, md, b * 8); Td = _mm512_set1_epi64(td->D); }
                }
            }
        }
        for (; qi < q1; qi++) {
            hs_topk *ta = &tk[qi];
            const uint64_t *qa = Q + qi * W;
            __m512i Ta = _mm512_set1_epi64(ta->D);
            for (int64_t b = t0; b < t1; b++) {
                __m512i da = z_dist64(db->db + b * bstride, qa, W);
                __mmask8 ma = _mm512_cmplt_epu64_mask(da, Ta);
                if (HS_UNLIKELY(ma != 0)) { z_handle64(ta, db, da, ma, b * 8); Ta = _mm512_set1_epi64(ta->D); }
            }
        }
    }
}

HS_T_AVX512 HS_INLINE void z_handle32(hs_topk *t, const hs_db *db, __m512i d, unsigned m,
                                      int64_t base) {
    uint32_t tmp[16];
    _mm512_storeu_si512((void *)tmp, d);
    while (m) {
        int j = __builtin_ctz(m);
        m &= m - 1;
        hs_consider(t, db, (int32_t)tmp[j], base + j);
    }
}

/* codes of at most 32 bits: one 32-bit word, 16 codes per block */
HS_T_AVX512 static void z_scan32(const hs_db *db, const uint32_t *Q, int64_t q0, int64_t q1,
                                 hs_topk *tk) {
    const int64_t blk0 = db->begin / 16, blk1 = (db->end + 15) / 16;
    const int64_t tile = hs_tile_bytes / 64 > 0 ? hs_tile_bytes / 64 : 1;
    for (int64_t t0 = blk0; t0 < blk1; t0 += tile) {
        const int64_t t1 = t0 + tile < blk1 ? t0 + tile : blk1;
        int64_t qi = q0;
        for (; qi + 4 <= q1; qi += 4) {
            hs_topk *ta = &tk[qi], *tb = ta + 1, *tc = ta + 2, *td = ta + 3;
            __m512i Qa = _mm512_set1_epi32((int)Q[qi]), Qb = _mm512_set1_epi32((int)Q[qi + 1]);
            __m512i Qc = _mm512_set1_epi32((int)Q[qi + 2]), Qd = _mm512_set1_epi32((int)Q[qi + 3]);
            __m512i Ta = _mm512_set1_epi32(ta->D), Tb = _mm512_set1_epi32(tb->D);
            __m512i Tc = _mm512_set1_epi32(tc->D), Td = _mm512_set1_epi32(td->D);
            int64_t b = t0;
            for (; b + 2 <= t1; b += 2) {
                __m512i v = _mm512_loadu_si512((const void *)(db->db + b * 64));
                __m512i u = _mm512_loadu_si512((const void *)(db->db + b * 64 + 64));
                __m512i da = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qa));
                __m512i dbv = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qb));
                __m512i dc = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qc));
                __m512i dd = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qd));
                __m512i ea = _mm512_popcnt_epi32(_mm512_xor_si512(u, Qa));
                __m512i eb = _mm512_popcnt_epi32(_mm512_xor_si512(u, Qb));
                __m512i ec = _mm512_popcnt_epi32(_mm512_xor_si512(u, Qc));
                __m512i ed = _mm512_popcnt_epi32(_mm512_xor_si512(u, Qd));
                __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_min_epu32(da, ea), Ta);
                __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_min_epu32(dbv, eb), Tb);
                __mmask16 mc = _mm512_cmplt_epu32_mask(_mm512_min_epu32(dc, ec), Tc);
                __mmask16 md = _mm512_cmplt_epu32_mask(_mm512_min_epu32(dd, ed), Td);
                if (HS_UNLIKELY((ma | mb | mc | md) != 0)) {
#define HS_Z32_PAIR(T_, t_, d_, e_, m_)                                                    \
    if (m_) {                                                                              \
        unsigned m0_ = _mm512_cmplt_epu32_mask(d_, T_);                                    \
        if (m0_) { z_handle32(t_, db, d_, m0_, b * 16); T_ = _mm512_set1_epi32(t_->D); }   \
        unsigned m1_ = _mm512_cmplt_epu32_mask(e_, T_);                                    \
        if (m1_) { z_handle32(t_, db, e_, m1_, b * 16 + 16); T_ = _mm512_set1_epi32(t_->D); } \
    }
                    HS_Z32_PAIR(Ta, ta, da, ea, ma)
                    HS_Z32_PAIR(Tb, tb, dbv, eb, mb)
                    HS_Z32_PAIR(Tc, tc, dc, ec, mc)
                    HS_Z32_PAIR(Td, td, dd, ed, md)
#undef HS_Z32_PAIR
                }
            }
            for (; b < t1; b++) {
                __m512i v = _mm512_loadu_si512((const void *)(db->db + b * 64));
                __m512i da = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qa));
                __m512i dbv = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qb));
                __m512i dc = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qc));
                __m512i dd = _mm512_popcnt_epi32(_mm512_xor_si512(v, Qd));
                __mmask16 ma = _mm512_cmplt_epu32_mask(da, Ta), mb = _mm512_cmplt_epu32_mask(dbv, Tb);
                __mmask16 mc = _mm512_cmplt_epu32_mask(dc, Tc), md = _mm512_cmplt_epu32_mask(dd, Td);
                if (HS_UNLIKELY((ma | mb | mc | md) != 0)) {
                    if (ma) { z_handle32(ta, db, da, ma, b * 16); Ta = _mm512_set1_epi32(ta->D); }
                    if (mb) { z_handle32(tb, db, dbv, mb, b * 16); Tb = _mm512_set1_epi32(tb->D); }
                    if (mc) { z_handle32(tc, db, dc, mc, b * 16); Tc = _mm512_set1_epi32(tc->D); }
                    if (md) { z_handle32(td, db, dd, md, b * 16); Td = _mm512_set1_epi32(td->D); }
                }
            }
        }
        for (; qi < q1; qi++) {
            hs_topk *ta = &tk[qi];
            __m512i Qa = _mm512_set1_epi32((int)Q[qi]), Ta = _mm512_set1_epi32(ta->D);
            for (int64_t b = t0; b < t1; b++) {
                __m512i da = _mm512_popcnt_epi32(
                    _mm512_xor_si512(_mm512_loadu_si512((const void *)(db->db + b * 64)), Qa));
                __mmask16 ma = _mm512_cmplt_epu32_mask(da, Ta);
                if (HS_UNLIKELY(ma != 0)) { z_handle32(ta, db, da, ma, b * 16); Ta = _mm512_set1_epi32(ta->D); }
            }
        }
    }
}

HS_T_AVX512 static void scan_avx512(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                                    hs_topk *tk) {
    if (db->lane == 4) {
        z_scan32(db, (const uint32_t *)(const void *)Q, q0, q1, tk);
        return;
    }
    const uint64_t *Q64 = (const uint64_t *)(const void *)Q;
    switch (db->W) {
    case 1: z_scan64(db, Q64, q0, q1, tk, 1); break;
    case 2: z_scan64(db, Q64, q0, q1, tk, 2); break;
    case 3: z_scan64(db, Q64, q0, q1, tk, 3); break;
    case 4: z_scan64(db, Q64, q0, q1, tk, 4); break;
    default: z_scan64(db, Q64, q0, q1, tk, db->W); break;
    }
}
#endif /* HS_X86 */

typedef void (*hs_scan_fn)(const hs_db *, const uint8_t *, int64_t, int64_t, hs_topk *);

static hs_scan_fn hs_scan_for(int isa) {
#if HS_X86
    if (isa >= ISA_AVX512) return scan_avx512;
    if (isa >= ISA_AVX2) return scan_avx2;
#endif
    if (isa >= ISA_POPCNT) return scan_popcnt;
    return scan_scalar;
}

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                      */

typedef void (*hs_task_fn)(void *ctx, int tid, int nthreads);
typedef struct {
    hs_task_fn fn;
    void *ctx;
    int tid, nthreads;
} hs_thread_arg;

static void *hs_thread_main(void *p) {
    hs_thread_arg *a = (hs_thread_arg *)p;
    a->fn(a->ctx, a->tid, a->nthreads);
    return NULL;
}

/* Run fn(ctx, t, T) for t = 0..T-1, t = 0 on the calling thread (a thread that cannot be
 * created runs on the caller afterwards). */
static void hs_parallel(int T, hs_task_fn fn, void *ctx) {
    if (T <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_t th[64];
    hs_thread_arg args[64];
    int started[64];
    if (T > 64) T = 64;
    for (int t = 1; t < T; t++) {
        args[t].fn = fn;
        args[t].ctx = ctx;
        args[t].tid = t;
        args[t].nthreads = T;
        started[t] = pthread_create(&th[t], NULL, hs_thread_main, &args[t]) == 0;
    }
    fn(ctx, 0, T);
    for (int t = 1; t < T; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else fn(ctx, t, T);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Flat search driver                                                                           */

typedef struct {
    hs_db db;
    const uint8_t *Q;
    int64_t nq;
    hs_topk *states; /* T x nq */
    hs_scan_fn scan;
    int T;
} hs_flat_ctx;

static void hs_flat_task(void *vctx, int tid, int T) {
    hs_flat_ctx *c = (hs_flat_ctx *)vctx;
    const int B = 64 / c->db.lane;
    const int64_t blk0 = c->db.begin / B, blk1 = (c->db.end + B - 1) / B, nblk = blk1 - blk0;
    const int64_t a = blk0 + nblk * tid / T, b = blk0 + nblk * (tid + 1) / T;
    hs_db local = c->db;
    local.begin = a * B > c->db.begin ? a * B : c->db.begin;
    local.end = b * B < c->db.end ? b * B : c->db.end;
    if (local.begin >= local.end) return;
    c->scan(&local, c->Q, 0, c->nq, c->states + (int64_t)tid * c->nq);
}

static void hs_free_states(hs_topk *st, int64_t count) {
    if (st == NULL) return;
    for (int64_t i = 0; i < count; i++) free(st[i].buf);
    free(st);
}

/* Allocate T * nq states; top-k mode when k > 0 (cap = min(2k + 64, range) + 1), range mode
 * otherwise.  cnt arrays share one allocation (*cnt_block). */
static hs_topk *hs_alloc_states(int64_t count, int64_t k, int32_t D, int bits, int64_t range_len,
                                int32_t **cnt_block) {
    hs_topk *st = (hs_topk *)calloc((size_t)(count > 0 ? count : 1), sizeof(hs_topk));
    *cnt_block = NULL;
    if (st == NULL) return NULL;
    int64_t cap = k > 0 ? (2 * k + 64 < range_len ? 2 * k + 64 : range_len) + 1 : 64;
    if (k > 0) {
        *cnt_block = (int32_t *)calloc((size_t)(count * (bits + 2) + 1), sizeof(int32_t));
        if (*cnt_block == NULL) {
            free(st);
            return NULL;
        }
    }
    for (int64_t i = 0; i < count; i++) {
        st[i].buf = (uint64_t *)malloc((size_t)cap * sizeof(uint64_t));
        if (st[i].buf == NULL) {
            hs_free_states(st, i);
            free(*cnt_block);
            *cnt_block = NULL;
            return NULL;
        }
        st[i].cap = cap;
        st[i].k = k;
        st[i].D = D;
        st[i].cnt = k > 0 ? *cnt_block + i * (bits + 2) : NULL;
    }
    return st;
}

/* Stable counting sort of the threads' lists of query qi by distance -> (distance, position)
 * order; writes at most `limit` keys to out; returns the number written. */
static int64_t hs_gather(hs_topk *st, int T, int64_t nq, int64_t qi, int bits, int64_t *hist,
                         uint64_t *out, int64_t limit) {
    memset(hist, 0, sizeof(int64_t) * (size_t)(bits + 2));
    for (int t = 0; t < T; t++) {
        hs_topk *s = &st[(int64_t)t * nq + qi];
        for (int64_t i = 0; i < s->len; i++) hist[(s->buf[i] >> HS_POS_BITS) + 1]++;
    }
    for (int d = 0; d <= bits; d++) hist[d + 1] += hist[d];
    for (int t = 0; t < T; t++) {
        hs_topk *s = &st[(int64_t)t * nq + qi];
        for (int64_t i = 0; i < s->len; i++) {
            int64_t at = hist[s->buf[i] >> HS_POS_BITS]++;
            if (at < limit) out[at] = s->buf[i];
        }
    }
    int64_t total = 0;
    for (int t = 0; t < T; t++) total += st[(int64_t)t * nq + qi].len;
    return total < limit ? total : limit;
}

static int hs_check_db(const Py_buffer *db, const Py_buffer *removed, int64_t begin, int64_t end,
                       int lane, int W, int bits) {
    if (lane != 4 && lane != 8) {
        PyErr_SetString(PyExc_ValueError, "lane must be 4 or 8");
        return -1;
    }
    if (W < 1 || W > HS_MAX_W || (lane == 4 && W != 1) || bits < 1 || bits > W * lane * 8) {
        PyErr_SetString(PyExc_ValueError, "bad code geometry");
        return -1;
    }
    if (begin < 0 || end < begin || end >= (int64_t)HS_POS_MASK) {
        PyErr_SetString(PyExc_ValueError, "bad position range");
        return -1;
    }
    const int B = 64 / lane;
    if ((int64_t)db->len < (end + B - 1) / B * W * 64) {
        PyErr_SetString(PyExc_ValueError, "code storage smaller than the range");
        return -1;
    }
    if (removed->len != 0 && (int64_t)removed->len < end) {
        PyErr_SetString(PyExc_ValueError, "removal mask shorter than the range");
        return -1;
    }
    return 0;
}

/* flat_topk(db, removed, begin, end, lane, W, bits, queries, nq, k, out_d, out_pos, threads) */
static PyObject *py_flat_topk(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer db, rm, qb, od, op;
    long long begin, end, nq, k;
    int lane, W, bits, T;
    if (!PyArg_ParseTuple(args, "y*y*LLiiiy*LLw*w*i", &db, &rm, &begin, &end, &lane, &W, &bits, &qb,
                          &nq, &k, &od, &op, &T))
        return NULL;
    PyObject *ret = NULL;
    if (hs_check_db(&db, &rm, begin, end, lane, W, bits) < 0) goto done;
    if (nq < 0 || k < 1 || (int64_t)qb.len < nq * W * lane || (int64_t)od.len < nq * k * 4 ||
        (int64_t)op.len < nq * k * 8) {
        PyErr_SetString(PyExc_ValueError, "bad query/output buffers");
        goto done;
    }
    if (T < 1) T = 1;
    {
        hs_flat_ctx c;
        c.db.db = (const uint8_t *)db.buf;
        c.db.removed = rm.len ? (const uint8_t *)rm.buf : NULL;
        c.db.begin = begin;
        c.db.end = end;
        c.db.lane = lane;
        c.db.W = W;
        c.db.bits = bits;
        c.Q = (const uint8_t *)qb.buf;
        c.nq = nq;
        c.scan = hs_scan_for(hs_isa);
        c.T = T;
        int32_t *cnt = NULL;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        c.states = hs_alloc_states((int64_t)T * nq, k, bits + 1, bits, end - begin, &cnt);
        if (c.states == NULL) {
            err = 1;
        } else {
            hs_parallel(T, hs_flat_task, &c);
            int64_t *hist = (int64_t *)malloc(sizeof(int64_t) * (size_t)(bits + 2));
            uint64_t *keys = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)k);
            if (hist == NULL || keys == NULL) {
                err = 1;
            } else {
                int32_t *outd = (int32_t *)od.buf;
                int64_t *outp = (int64_t *)op.buf;
                for (int64_t qi = 0; qi < nq; qi++) {
                    for (int t = 0; t < T; t++) hs_topk_compact(&c.states[(int64_t)t * nq + qi]);
                    int64_t got = hs_gather(c.states, T, nq, qi, bits, hist, keys, k);
                    for (int64_t i = 0; i < k; i++) {
                        if (i < got) {
                            outd[qi * k + i] = (int32_t)(keys[i] >> HS_POS_BITS);
                            outp[qi * k + i] = (int64_t)(keys[i] & HS_POS_MASK);
                        } else {
                            outd[qi * k + i] = bits + 1;
                            outp[qi * k + i] = -1;
                        }
                    }
                }
            }
            free(hist);
            free(keys);
            hs_free_states(c.states, (int64_t)T * nq);
            free(cnt);
        }
        Py_END_ALLOW_THREADS
        if (err) {
            PyErr_NoMemory();
            goto done;
        }
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&od);
    PyBuffer_Release(&op);
    return ret;
}

/* Build (lims int64[nq+1], D int32[total], I int64[total]) bytearrays from per-query key lists
 * already in (distance, position) order. */
static PyObject *hs_range_result(uint64_t **lists, const int64_t *lens, int64_t nq) {
    int64_t total = 0;
    for (int64_t q = 0; q < nq; q++) total += lens[q];
    PyObject *lims = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((nq + 1) * 8));
    PyObject *dd = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(total * 4));
    PyObject *ii = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(total * 8));
    if (lims == NULL || dd == NULL || ii == NULL) {
        Py_XDECREF(lims);
        Py_XDECREF(dd);
        Py_XDECREF(ii);
        return NULL;
    }
    int64_t *L = (int64_t *)(void *)PyByteArray_AS_STRING(lims);
    int32_t *Dp = (int32_t *)(void *)PyByteArray_AS_STRING(dd);
    int64_t *Ip = (int64_t *)(void *)PyByteArray_AS_STRING(ii);
    int64_t at = 0;
    L[0] = 0;
    for (int64_t q = 0; q < nq; q++) {
        for (int64_t i = 0; i < lens[q]; i++, at++) {
            Dp[at] = (int32_t)(lists[q][i] >> HS_POS_BITS);
            Ip[at] = (int64_t)(lists[q][i] & HS_POS_MASK);
        }
        L[q + 1] = at;
    }
    return Py_BuildValue("(NNN)", lims, dd, ii);
}

/* flat_range(db, removed, begin, end, lane, W, bits, queries, nq, radius, threads)
 *   -> (lims, D, I) bytearrays, results sorted by (distance, position) */
static PyObject *py_flat_range(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer db, rm, qb;
    long long begin, end, nq;
    int lane, W, bits, radius, T;
    if (!PyArg_ParseTuple(args, "y*y*LLiiiy*Lii", &db, &rm, &begin, &end, &lane, &W, &bits, &qb,
                          &nq, &radius, &T))
        return NULL;
    PyObject *ret = NULL;
    if (hs_check_db(&db, &rm, begin, end, lane, W, bits) < 0) goto done;
    if (nq < 0 || (int64_t)qb.len < nq * W * lane) {
        PyErr_SetString(PyExc_ValueError, "bad query buffer");
        goto done;
    }
    if (radius < 0) radius = -1;
    if (radius > bits) radius = bits;
    if (T < 1) T = 1;
    {
        hs_flat_ctx c;
        c.db.db = (const uint8_t *)db.buf;
        c.db.removed = rm.len ? (const uint8_t *)rm.buf : NULL;
        c.db.begin = begin;
        c.db.end = end;
        c.db.lane = lane;
        c.db.W = W;
        c.db.bits = bits;
        c.Q = (const uint8_t *)qb.buf;
        c.nq = nq;
        c.scan = hs_scan_for(hs_isa);
        c.T = T;
        int32_t *cnt = NULL;
        int err = 0;
        uint64_t **lists = NULL;
        int64_t *lens = NULL;
        Py_BEGIN_ALLOW_THREADS
        c.states = hs_alloc_states((int64_t)T * nq, 0, radius + 1, bits, end - begin, &cnt);
        lists = (uint64_t **)calloc((size_t)(nq + 1), sizeof(uint64_t *));
        lens = (int64_t *)calloc((size_t)(nq + 1), sizeof(int64_t));
        int64_t *hist = (int64_t *)malloc(sizeof(int64_t) * (size_t)(bits + 2));
        if (c.states == NULL || lists == NULL || lens == NULL || hist == NULL) {
            err = 1;
        } else {
            if (radius >= 0) hs_parallel(T, hs_flat_task, &c);
            for (int64_t i = 0; i < (int64_t)T * nq; i++) err |= c.states[i].err;
            for (int64_t qi = 0; qi < nq && !err; qi++) {
                int64_t total = 0;
                for (int t = 0; t < T; t++) total += c.states[(int64_t)t * nq + qi].len;
                lists[qi] = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(total + 1));
                if (lists[qi] == NULL) {
                    err = 1;
                    break;
                }
                lens[qi] = hs_gather(c.states, T, nq, qi, bits, hist, lists[qi], total);
            }
        }
        free(hist);
        hs_free_states(c.states, (int64_t)T * nq);
        Py_END_ALLOW_THREADS
        if (!err) ret = hs_range_result(lists, lens, nq);
        else PyErr_NoMemory();
        if (lists != NULL)
            for (int64_t qi = 0; qi < nq; qi++) free(lists[qi]);
        free(lists);
        free(lens);
    }
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Multi-index hashing                                                                          */

typedef struct {
    const uint32_t *offsets; /* per table: 2^len + 1 CSR offsets, concatenated */
    const uint32_t *perm;    /* m x n0 positions in bucket order */
    const uint8_t *codes;    /* m x n0 codes (W words of `lane` bytes, row-major) in bucket order */
    const uint8_t *removed;
    int64_t n0;
    int lane, W, bits, m;
    int off[HS_MAX_M], len[HS_MAX_M];
    int64_t tab[HS_MAX_M]; /* start of table j in offsets */
} hs_mih;

/* substring [o, o + s) of the code's bit string (word w holds bits 64w .. 64w + 63) */
HS_INLINE uint32_t hs_sub(const uint64_t *x, int o, int s) {
    const int w = o >> 6, sh = o & 63;
    uint64_t v = x[w] >> sh;
    if (sh + s > 64) v |= x[w + 1] << (64 - sh);
    return (uint32_t)(v & ((((uint64_t)1) << s) - 1));
}

/* code words as 64-bit values (a 32-bit lane zero-extended) */
HS_INLINE void hs_code64(const uint8_t *p, int lane, int W, uint64_t *x) {
    if (lane == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        x[0] = v;
        x[1] = 0;
    } else {
        memcpy(x, p, (size_t)W * 8);
        x[W] = 0;
    }
}

static int hs_parse_subs(hs_mih *h, const Py_buffer *so, const Py_buffer *sl, int m) {
    if (m < 1 || m > HS_MAX_M || (int64_t)so->len < m * 4 || (int64_t)sl->len < m * 4) {
        PyErr_SetString(PyExc_ValueError, "bad substring layout");
        return -1;
    }
    const int32_t *o = (const int32_t *)so->buf, *l = (const int32_t *)sl->buf;
    int64_t tab = 0;
    h->m = m;
    for (int j = 0; j < m; j++) {
        if (l[j] < 1 || l[j] > 28 || o[j] < 0 || o[j] + l[j] > h->bits) {
            PyErr_SetString(PyExc_ValueError, "bad substring layout");
            return -1;
        }
        h->off[j] = o[j];
        h->len[j] = l[j];
        h->tab[j] = tab;
        tab += ((int64_t)1 << l[j]) + 1;
    }
    return 0;
}

static int64_t hs_mih_offsets_len(const hs_mih *h) {
    return h->tab[h->m - 1] + ((int64_t)1 << h->len[h->m - 1]) + 1;
}

typedef struct {
    hs_mih *h;
    const uint8_t *db;
    uint32_t *offsets, *perm;
    uint8_t *codes;
    int err;
} hs_build_ctx;

/* copy one code's W words of `lane` bytes; source words `stride` bytes apart (64 in the
 * blocked store, `lane` in a row) -- fixed-size copies, no memcpy calls */
HS_INLINE void hs_copy_code(uint8_t *dst, const uint8_t *src, int lane, int W, int stride) {
    if (lane == 4) {
        memcpy(dst, src, 4);
        return;
    }
    for (int w = 0; w < W; w++) memcpy(dst + w * 8, src + (int64_t)w * stride, 8);
}

/* Sort table j's items by key with an LSD radix sort of <= 11-bit digits over (key, position)
 * pairs (stable: positions ascend inside a bucket), then gather the codes in that order.  A
 * direct counting-sort scatter into 2^16+ buckets would miss the cache on nearly every write;
 * passes into <= 2048 streams do not, and the final gather's random reads overlap. */
static int hs_build_table(hs_build_ctx *c, int j, uint32_t *k0, uint32_t *k1, uint32_t *ptmp) {
    hs_mih *h = c->h;
    const int W = h->W, lane = h->lane, cb = W * lane, s = h->len[j];
    const int64_t n0 = h->n0, nb = (int64_t)1 << s;
    const int passes = (s + 10) / 11, dbits = (s + passes - 1) / passes;
    uint32_t *off = c->offsets + h->tab[j];
    uint32_t *perm = c->perm + (int64_t)j * n0;
    uint8_t *codes = c->codes + (int64_t)j * n0 * cb;
    uint32_t *hist = (uint32_t *)malloc(sizeof(uint32_t) * ((size_t)1 << dbits));
    if (hist == NULL) return -1;
    uint64_t x[HS_MAX_W + 1];
    uint8_t row[HS_MAX_W * 8];
    memset(off, 0, sizeof(uint32_t) * (size_t)(nb + 1));
    for (int64_t p = 0; p < n0; p++) {
        hs_copy_code(row, hs_code_ptr(c->db, lane, W, p, 0), lane, W, 64);
        hs_code64(row, lane, W, x);
        k0[p] = hs_sub(x, h->off[j], s);
        off[k0[p] + 1]++;
    }
    for (int64_t b = 0; b < nb; b++) off[b + 1] += off[b];
    const uint32_t *ksrc = k0, *psrc = NULL;
    for (int pass = 0; pass < passes; pass++) {
        const int last = pass == passes - 1, shift = pass * dbits;
        const uint32_t dmask = ((uint32_t)1 << dbits) - 1;
        /* the last pass writes the table's positions; earlier ones alternate so that it does */
        uint32_t *kdst = ksrc == k0 ? k1 : k0;
        uint32_t *pdst = (passes - 1 - pass) % 2 == 0 ? perm : ptmp;
        memset(hist, 0, sizeof(uint32_t) * ((size_t)1 << dbits));
        for (int64_t i = 0; i < n0; i++) hist[(ksrc[i] >> shift) & dmask]++;
        uint32_t sum = 0;
        for (int64_t b = 0; b <= (int64_t)dmask; b++) {
            uint32_t cnt = hist[b];
            hist[b] = sum;
            sum += cnt;
        }
        for (int64_t i = 0; i < n0; i++) {
            const uint32_t at = hist[(ksrc[i] >> shift) & dmask]++;
            if (!last) kdst[at] = ksrc[i];
            pdst[at] = pass == 0 ? (uint32_t)i : psrc[i];
        }
        ksrc = kdst;
        psrc = pdst;
    }
    for (int64_t i = 0; i < n0; i++) {
        if (i + 16 < n0) __builtin_prefetch(hs_code_ptr(c->db, lane, W, perm[i + 16], 0));
        hs_copy_code(codes + i * cb, hs_code_ptr(c->db, lane, W, perm[i], 0), lane, W, 64);
    }
    free(hist);
    return 0;
}

static void hs_build_task(void *vctx, int tid, int T) {
    hs_build_ctx *c = (hs_build_ctx *)vctx;
    hs_mih *h = c->h;
    const int64_t n0 = h->n0;
    uint32_t *k0 = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(n0 + 1));
    uint32_t *k1 = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(n0 + 1));
    uint32_t *ptmp = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(n0 + 1));
    if (k0 == NULL || k1 == NULL || ptmp == NULL) {
        c->err = 1;
    } else {
        for (int j = tid; j < h->m; j += T) {
            if (hs_build_table(c, j, k0, k1, ptmp) < 0) {
                c->err = 1;
                break;
            }
        }
    }
    free(k0);
    free(k1);
    free(ptmp);
}

/* mih_build(db, n0, lane, W, bits, sub_off, sub_len, m, out_offsets, out_perm, out_codes, threads) */
static PyObject *py_mih_build(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer db, so, sl, oo, op, oc;
    long long n0;
    int lane, W, bits, m, T;
    if (!PyArg_ParseTuple(args, "y*Liiiy*y*iw*w*w*i", &db, &n0, &lane, &W, &bits, &so, &sl, &m, &oo,
                          &op, &oc, &T))
        return NULL;
    PyObject *ret = NULL;
    Py_buffer empty;
    memset(&empty, 0, sizeof(empty));
    hs_mih h;
    memset(&h, 0, sizeof(h));
    h.lane = lane;
    h.W = W;
    h.bits = bits;
    h.n0 = n0;
    if (hs_check_db(&db, &empty, 0, n0, lane, W, bits) < 0) goto done;
    if (n0 >= ((int64_t)1 << 32) - 1) {
        PyErr_SetString(PyExc_ValueError, "multi-index hashing holds fewer than 2**32 codes");
        goto done;
    }
    if (hs_parse_subs(&h, &so, &sl, m) < 0) goto done;
    if ((int64_t)oo.len < hs_mih_offsets_len(&h) * 4 || (int64_t)op.len < m * n0 * 4 ||
        (int64_t)oc.len < m * n0 * W * lane) {
        PyErr_SetString(PyExc_ValueError, "bad output buffers");
        goto done;
    }
    {
        hs_build_ctx c = {&h, (const uint8_t *)db.buf, (uint32_t *)oo.buf, (uint32_t *)op.buf,
                          (uint8_t *)oc.buf, 0};
        if (T < 1) T = 1;
        if (T > m) T = m;
        Py_BEGIN_ALLOW_THREADS
        hs_parallel(T, hs_build_task, &c);
        Py_END_ALLOW_THREADS
        if (c.err) {
            PyErr_NoMemory();
            goto done;
        }
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&so);
    PyBuffer_Release(&sl);
    PyBuffer_Release(&oo);
    PyBuffer_Release(&op);
    PyBuffer_Release(&oc);
    return ret;
}

/* MIH result set for one query: candidates arrive in any position order, so an item is kept
 * iff d <= D (D = k-th smallest kept distance, bits while fewer than k), and the buffer is
 * sorted by key and cut to k when full.  Range mode (k == 0): D = radius, grows. */
typedef struct {
    uint64_t *buf;
    int32_t *cnt;
    int64_t len, cap, k, le; /* le = number kept with d <= D */
    int32_t D;
    int err;
} hs_mtopk;

static int hs_key_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void hs_mtopk_full(hs_mtopk *t) {
    if (t->k > 0) {
        qsort(t->buf, (size_t)t->len, sizeof(uint64_t), hs_key_cmp);
        if (t->len > t->k) {
            /* cut to k: counts at D shrink to what is kept */
            int32_t Dk = (int32_t)(t->buf[t->k - 1] >> HS_POS_BITS);
            int64_t keep_at = 0;
            for (int64_t i = 0; i < t->k; i++) keep_at += (t->buf[i] >> HS_POS_BITS) == (uint64_t)Dk;
            t->cnt[Dk] = (int32_t)keep_at;
            t->D = Dk;
            t->le = t->k;
            t->len = t->k;
        }
        return;
    }
    int64_t ncap = t->cap * 2 + 64;
    uint64_t *nb = (uint64_t *)realloc(t->buf, (size_t)ncap * sizeof(uint64_t));
    if (nb == NULL) {
        t->err = 1;
        return;
    }
    t->buf = nb;
    t->cap = ncap;
}

HS_INLINE void hs_mpush(hs_mtopk *t, int32_t d, int64_t pos) {
    if (HS_UNLIKELY(t->len == t->cap)) {
        hs_mtopk_full(t);
        if (t->len == t->cap) return;
        if (t->k > 0 && t->le >= t->k && d > t->D) return;
    }
    t->buf[t->len++] = ((uint64_t)d << HS_POS_BITS) | (uint64_t)pos;
    if (t->k > 0) {
        t->cnt[d]++;
        t->le++;
        while (t->le - t->cnt[t->D] >= t->k) {
            t->le -= t->cnt[t->D];
            t->D--;
        }
    }
}

typedef int (*hs_mih_query_fn)(const hs_mih *, const uint64_t *, hs_mtopk *, int64_t, int32_t);

typedef struct {
    hs_mih *h;
    const uint8_t *Q; /* nq x W words of `lane` bytes */
    int64_t nq, k, budget;
    int32_t radius; /* range mode when k == 0 */
    int32_t *outd;
    int64_t *outp;
    uint8_t *status;
    uint64_t **lists; /* range mode */
    int64_t *lens;
    int err;
    hs_mih_query_fn query;
} hs_mih_ctx;

/* the distance a candidate must not exceed right now */
HS_INLINE int32_t hs_mthr(const hs_mtopk *t, int32_t radius, int bits) {
    if (t->k == 0) return radius;
    return t->le >= t->k ? t->D : bits;
}

/* Candidate i of table j, found at substring radius rho, at distance d: keep it unless it was
 * seen before (its first encounter is at the lexicographically smallest (substring distance,
 * table)), it is removed, or d no longer passes the threshold. */
HS_INLINE void hs_mih_take(const hs_mih *h, int j, int rho, int64_t i, int32_t d,
                           const uint32_t *qkey, hs_mtopk *t, int32_t radius) {
    if (d > hs_mthr(t, radius, h->bits)) return;
    uint64_t cx[HS_MAX_W + 1];
    hs_code64(h->codes + ((int64_t)j * h->n0 + i) * h->W * h->lane, h->lane, h->W, cx);
    for (int jj = 0; jj < h->m; jj++) {
        if (jj == j) continue;
        int sd = __builtin_popcount(hs_sub(cx, h->off[jj], h->len[jj]) ^ qkey[jj]);
        if (jj < j ? sd <= rho : sd < rho) return;
    }
    const int64_t pos = h->perm[(int64_t)j * h->n0 + i];
    if (h->removed != NULL && h->removed[pos]) return;
    hs_mpush(t, d, pos);
}

HS_INLINE void hs_bucket_scalar(const hs_mih *h, int j, int rho, uint32_t lo, uint32_t hi,
                                const uint64_t *qx, const uint32_t *qkey, hs_mtopk *t,
                                int32_t radius) {
    const int W = h->W, lane = h->lane, cb = W * lane;
    const uint8_t *codes = h->codes + (int64_t)j * h->n0 * cb;
    uint64_t cx[HS_MAX_W + 1];
    for (uint32_t i = lo; i < hi; i++) {
        hs_code64(codes + (int64_t)i * cb, lane, W, cx);
        int32_t d = 0;
        for (int w = 0; w < W; w++) d += __builtin_popcountll(cx[w] ^ qx[w]);
        if (d <= hs_mthr(t, radius, h->bits)) hs_mih_take(h, j, rho, i, d, qkey, t, radius);
    }
}

#if HS_X86
/* AVX-512 verification of one bucket (codes of 1 or 2 64-bit words, or one 32-bit word) */
HS_T_AVX512 static void hs_bucket_z(const hs_mih *h, int j, int rho, uint32_t lo, uint32_t hi,
                                    const uint64_t *qx, const uint32_t *qkey, hs_mtopk *t,
                                    int32_t radius) {
    const int W = h->W, lane = h->lane, bits = h->bits;
    if (lane == 4) {
        const uint32_t *codes = (const uint32_t *)(const void *)h->codes + (int64_t)j * h->n0;
        const __m512i qv = _mm512_set1_epi32((int)qx[0]);
        __m512i T = _mm512_set1_epi32(hs_mthr(t, radius, bits));
        for (uint32_t i = lo; i < hi; i += 16) {
            const __mmask16 lm = hi - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hi - i)) - 1);
            __m512i d = _mm512_popcnt_epi32(_mm512_xor_si512(_mm512_maskz_loadu_epi32(lm, codes + i), qv));
            unsigned m = _mm512_mask_cmple_epu32_mask(lm, d, T);
            if (HS_UNLIKELY(m != 0)) {
                uint32_t tmp[16];
                _mm512_storeu_si512((void *)tmp, d);
                while (m) {
                    int b = __builtin_ctz(m);
                    m &= m - 1;
                    hs_mih_take(h, j, rho, (int64_t)i + b, (int32_t)tmp[b], qkey, t, radius);
                }
                T = _mm512_set1_epi32(hs_mthr(t, radius, bits));
            }
        }
        return;
    }
    if (W == 1) {
        const uint64_t *codes = (const uint64_t *)(const void *)h->codes + (int64_t)j * h->n0;
        const __m512i qv = _mm512_set1_epi64((long long)qx[0]);
        __m512i T = _mm512_set1_epi64(hs_mthr(t, radius, bits));
        for (uint32_t i = lo; i < hi; i += 8) {
            const __mmask8 lm = hi - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (hi - i)) - 1);
            __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(lm, codes + i), qv));
            unsigned m = _mm512_mask_cmple_epu64_mask(lm, d, T);
            if (HS_UNLIKELY(m != 0)) {
                uint64_t tmp[8];
                _mm512_storeu_si512((void *)tmp, d);
                while (m) {
                    int b = __builtin_ctz(m);
                    m &= m - 1;
                    hs_mih_take(h, j, rho, (int64_t)i + b, (int32_t)tmp[b], qkey, t, radius);
                }
                T = _mm512_set1_epi64(hs_mthr(t, radius, bits));
            }
        }
        return;
    }
    if (W == 2) {
        const uint64_t *codes = (const uint64_t *)(const void *)h->codes + (int64_t)j * h->n0 * 2;
        const __m512i qv = _mm512_set_epi64((long long)qx[1], (long long)qx[0], (long long)qx[1],
                                            (long long)qx[0], (long long)qx[1], (long long)qx[0],
                                            (long long)qx[1], (long long)qx[0]);
        const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
        __m512i T = _mm512_set1_epi64(hs_mthr(t, radius, bits));
        for (uint32_t i = lo; i < hi; i += 8) {
            const uint32_t r = hi - i >= 8 ? 8 : hi - i, nw = 2 * r;
            const __mmask8 lm = (__mmask8)((1u << r) - 1);
            const __mmask8 w0 = nw >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << nw) - 1);
            const __mmask8 w1 = nw >= 16 ? (__mmask8)0xFF : nw > 8 ? (__mmask8)((1u << (nw - 8)) - 1) : 0;
            __m512i p0 = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(w0, codes + 2 * (int64_t)i), qv));
            __m512i p1 = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(w1, codes + 2 * (int64_t)i + 8), qv));
            p0 = _mm512_add_epi64(p0, _mm512_shuffle_epi32(p0, _MM_PERM_BADC));
            p1 = _mm512_add_epi64(p1, _mm512_shuffle_epi32(p1, _MM_PERM_BADC));
            __m512i d = _mm512_permutex2var_epi64(p0, even, p1);
            unsigned m = _mm512_mask_cmple_epu64_mask(lm, d, T);
            if (HS_UNLIKELY(m != 0)) {
                uint64_t tmp[8];
                _mm512_storeu_si512((void *)tmp, d);
                while (m) {
                    int b = __builtin_ctz(m);
                    m &= m - 1;
                    hs_mih_take(h, j, rho, (int64_t)i + b, (int32_t)tmp[b], qkey, t, radius);
                }
                T = _mm512_set1_epi64(hs_mthr(t, radius, bits));
            }
        }
        return;
    }
    hs_bucket_scalar(h, j, rho, lo, hi, qx, qkey, t, radius);
}
#endif

/* One query: returns 0 (exact result in t), 1 (budget exceeded). */
HS_INLINE int hs_mih_query_body(const hs_mih *h, const uint64_t *qx, hs_mtopk *t, int64_t budget,
                                int32_t radius, const int simd) {
    const int m = h->m, W = h->W;
    const int range_mode = t->k == 0;
    uint32_t qkey[HS_MAX_M];
    int maxlen = 0;
    for (int j = 0; j < m; j++) {
        qkey[j] = hs_sub(qx, h->off[j], h->len[j]);
        if (h->len[j] > maxlen) maxlen = h->len[j];
    }
    int64_t work = 0;
    for (int rho = 0; rho <= maxlen; rho++) {
        for (int j = 0; j < m; j++) {
            const int s = h->len[j];
            const uint32_t *off = h->offsets + h->tab[j];
            const uint64_t limit = ((uint64_t)1) << s;
            const uint8_t *codes = h->codes + (int64_t)j * h->n0 * W * h->lane;
            const int64_t cb = (int64_t)W * h->lane;
            uint64_t mask = rho == 0 ? 0 : (((uint64_t)1) << rho) - 1;
            /* keys come in batches so the offsets (then the first codes) of the buckets a few
             * steps ahead can be prefetched: probes are cache misses, the scans are not */
            uint32_t keys[HS_PROBE_BATCH];
            while (mask < limit) {
                int nk = 0;
                while (nk < HS_PROBE_BATCH && mask < limit) {
                    keys[nk++] = qkey[j] ^ (uint32_t)mask;
                    if (rho == 0) {
                        mask = limit;
                        break;
                    }
                    /* next mask with the same popcount (Gosper) */
                    const uint64_t lowbit = mask & (~mask + 1), ripple = mask + lowbit;
                    mask = (((ripple ^ mask) >> 2) / lowbit) | ripple;
                }
                for (int b = 0; b < nk; b++) __builtin_prefetch(off + keys[b]);
                for (int b = 0; b < nk; b++) {
                    if (b + 4 < nk) __builtin_prefetch(codes + (int64_t)off[keys[b + 4]] * cb);
                    const uint32_t lo = off[keys[b]], hi = off[keys[b] + 1];
                    work += HS_PROBE_WORK + (int64_t)(hi - lo) * W;
                    if (hi > lo) {
#if HS_X86
                        if (simd) hs_bucket_z(h, j, rho, lo, hi, qx, qkey, t, radius);
                        else
#endif
                            hs_bucket_scalar(h, j, rho, lo, hi, qx, qkey, t, radius);
                    }
                    if (work > budget) return 1;
                }
            }
            /* every item at distance <= m * rho + j has been seen; table j fully enumerated
             * at rho == s means every item has been seen */
            if (rho == s) return 0;
            const int64_t seen = (int64_t)m * rho + j;
            if (range_mode ? seen >= radius : (t->le >= t->k && t->D <= seen)) return 0;
        }
    }
    return 0;
}

static int hs_mih_query_plain(const hs_mih *h, const uint64_t *qx, hs_mtopk *t, int64_t budget,
                              int32_t radius) {
    return hs_mih_query_body(h, qx, t, budget, radius, 0);
}

HS_T_POPCNT static int hs_mih_query_popcnt(const hs_mih *h, const uint64_t *qx, hs_mtopk *t,
                                           int64_t budget, int32_t radius) {
    return hs_mih_query_body(h, qx, t, budget, radius, 0);
}

#if HS_X86
HS_T_AVX512 static int hs_mih_query_avx512(const hs_mih *h, const uint64_t *qx, hs_mtopk *t,
                                           int64_t budget, int32_t radius) {
    return hs_mih_query_body(h, qx, t, budget, radius, 1);
}
#endif

static hs_mih_query_fn hs_mih_query_for(int isa) {
#if HS_X86
    if (isa >= ISA_AVX512) return hs_mih_query_avx512;
#endif
    if (isa >= ISA_POPCNT) return hs_mih_query_popcnt;
    return hs_mih_query_plain;
}

static void hs_mih_task(void *vctx, int tid, int T) {
    hs_mih_ctx *c = (hs_mih_ctx *)vctx;
    hs_mih *h = c->h;
    const int bits = h->bits, W = h->W, lane = h->lane;
    const int64_t k = c->k;
    hs_mtopk t;
    memset(&t, 0, sizeof(t));
    t.cap = k > 0 ? 2 * k + 64 : 64;
    t.buf = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)t.cap);
    t.cnt = (int32_t *)malloc(sizeof(int32_t) * (size_t)(bits + 2));
    if (t.buf == NULL || t.cnt == NULL) {
        c->err = 1;
        free(t.buf);
        free(t.cnt);
        return;
    }
    uint64_t qx[HS_MAX_W + 1];
    for (int64_t qi = tid; qi < c->nq; qi += T) {
        hs_code64(c->Q + qi * W * lane, lane, W, qx);
        t.len = 0;
        t.le = 0;
        t.k = k;
        t.D = k > 0 ? bits : c->radius;
        t.err = 0;
        memset(t.cnt, 0, sizeof(int32_t) * (size_t)(bits + 2));
        int st = c->query(h, qx, &t, c->budget, c->radius);
        if (t.err) {
            c->err = 1;
            break;
        }
        c->status[qi] = (uint8_t)st;
        qsort(t.buf, (size_t)t.len, sizeof(uint64_t), hs_key_cmp);
        if (k > 0) {
            for (int64_t i = 0; i < k; i++) {
                if (st == 0 && i < t.len) {
                    c->outd[qi * k + i] = (int32_t)(t.buf[i] >> HS_POS_BITS);
                    c->outp[qi * k + i] = (int64_t)(t.buf[i] & HS_POS_MASK);
                } else {
                    c->outd[qi * k + i] = bits + 1;
                    c->outp[qi * k + i] = -1;
                }
            }
        } else if (st == 0) {
            c->lists[qi] = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(t.len + 1));
            if (c->lists[qi] == NULL) {
                c->err = 1;
                break;
            }
            memcpy(c->lists[qi], t.buf, sizeof(uint64_t) * (size_t)t.len);
            c->lens[qi] = t.len;
        }
    }
    free(t.buf);
    free(t.cnt);
}

static int hs_parse_mih(hs_mih *h, const Py_buffer *oo, const Py_buffer *op, const Py_buffer *oc,
                        const Py_buffer *rm, long long n0, int lane, int W, int bits,
                        const Py_buffer *so, const Py_buffer *sl, int m) {
    memset(h, 0, sizeof(*h));
    h->lane = lane;
    h->W = W;
    h->bits = bits;
    h->n0 = n0;
    if (lane != 4 && lane != 8) goto bad;
    if (W < 1 || W > HS_MAX_W || (lane == 4 && W != 1) || bits < 1 || bits > W * lane * 8) goto bad;
    if (n0 < 0 || n0 >= ((int64_t)1 << 32) - 1) goto bad;
    if (hs_parse_subs(h, so, sl, m) < 0) return -1;
    if ((int64_t)oo->len < hs_mih_offsets_len(h) * 4 || (int64_t)op->len < m * n0 * 4 ||
        (int64_t)oc->len < m * n0 * W * lane)
        goto bad;
    if (rm->len != 0 && (int64_t)rm->len < n0) goto bad;
    h->offsets = (const uint32_t *)oo->buf;
    h->perm = (const uint32_t *)op->buf;
    h->codes = (const uint8_t *)oc->buf;
    h->removed = rm->len ? (const uint8_t *)rm->buf : NULL;
    /* the offsets of every table must end at n0 (a stale or foreign table would read outside) */
    for (int j = 0; j < m; j++)
        if (h->offsets[h->tab[j] + ((int64_t)1 << h->len[j])] != (uint32_t)n0) goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "bad multi-index tables");
    return -1;
}

/* mih_topk(offsets, perm, codes, n0, lane, W, bits, sub_off, sub_len, m, removed, queries, nq,
 *          k, budget, out_d, out_pos, out_status, threads) */
static PyObject *py_mih_topk(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer oo, op, oc, so, sl, rm, qb, od, opos, ost;
    long long n0, nq, k, budget;
    int lane, W, bits, m, T;
    if (!PyArg_ParseTuple(args, "y*y*y*Liiiy*y*iy*y*LLLw*w*w*i", &oo, &op, &oc, &n0, &lane, &W,
                          &bits, &so, &sl, &m, &rm, &qb, &nq, &k, &budget, &od, &opos, &ost, &T))
        return NULL;
    PyObject *ret = NULL;
    hs_mih h;
    if (hs_parse_mih(&h, &oo, &op, &oc, &rm, n0, lane, W, bits, &so, &sl, m) < 0) goto done;
    if (nq < 0 || k < 1 || (int64_t)qb.len < nq * W * lane || (int64_t)od.len < nq * k * 4 ||
        (int64_t)opos.len < nq * k * 8 || (int64_t)ost.len < nq) {
        PyErr_SetString(PyExc_ValueError, "bad query/output buffers");
        goto done;
    }
    {
        hs_mih_ctx c;
        memset(&c, 0, sizeof(c));
        c.h = &h;
        c.Q = (const uint8_t *)qb.buf;
        c.nq = nq;
        c.k = k;
        c.budget = budget;
        c.outd = (int32_t *)od.buf;
        c.outp = (int64_t *)opos.buf;
        c.status = (uint8_t *)ost.buf;
        c.query = hs_mih_query_for(hs_isa);
        if (T < 1) T = 1;
        if (T > nq) T = nq > 0 ? (int)nq : 1;
        Py_BEGIN_ALLOW_THREADS
        hs_parallel(T, hs_mih_task, &c);
        Py_END_ALLOW_THREADS
        if (c.err) {
            PyErr_NoMemory();
            goto done;
        }
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&oo);
    PyBuffer_Release(&op);
    PyBuffer_Release(&oc);
    PyBuffer_Release(&so);
    PyBuffer_Release(&sl);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&od);
    PyBuffer_Release(&opos);
    PyBuffer_Release(&ost);
    return ret;
}

/* mih_range(offsets, perm, codes, n0, lane, W, bits, sub_off, sub_len, m, removed, queries, nq,
 *           radius, budget, out_status, threads) -> (lims, D, I); queries with status 1 are empty */
static PyObject *py_mih_range(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer oo, op, oc, so, sl, rm, qb, ost;
    long long n0, nq, budget;
    int lane, W, bits, m, radius, T;
    if (!PyArg_ParseTuple(args, "y*y*y*Liiiy*y*iy*y*LiLw*i", &oo, &op, &oc, &n0, &lane, &W, &bits,
                          &so, &sl, &m, &rm, &qb, &nq, &radius, &budget, &ost, &T))
        return NULL;
    PyObject *ret = NULL;
    hs_mih h;
    if (hs_parse_mih(&h, &oo, &op, &oc, &rm, n0, lane, W, bits, &so, &sl, m) < 0) goto done;
    if (nq < 0 || (int64_t)qb.len < nq * W * lane || (int64_t)ost.len < nq) {
        PyErr_SetString(PyExc_ValueError, "bad query/output buffers");
        goto done;
    }
    if (radius > bits) radius = bits;
    {
        hs_mih_ctx c;
        memset(&c, 0, sizeof(c));
        c.h = &h;
        c.Q = (const uint8_t *)qb.buf;
        c.nq = nq;
        c.k = 0;
        c.radius = radius;
        c.budget = budget;
        c.status = (uint8_t *)ost.buf;
        c.query = hs_mih_query_for(hs_isa);
        c.lists = (uint64_t **)calloc((size_t)(nq + 1), sizeof(uint64_t *));
        c.lens = (int64_t *)calloc((size_t)(nq + 1), sizeof(int64_t));
        if (c.lists == NULL || c.lens == NULL) {
            free(c.lists);
            free(c.lens);
            PyErr_NoMemory();
            goto done;
        }
        if (T < 1) T = 1;
        if (T > nq) T = nq > 0 ? (int)nq : 1;
        if (radius >= 0) {
            Py_BEGIN_ALLOW_THREADS
            hs_parallel(T, hs_mih_task, &c);
            Py_END_ALLOW_THREADS
        } else {
            memset(c.status, 0, (size_t)nq);
        }
        if (c.err) PyErr_NoMemory();
        else ret = hs_range_result(c.lists, c.lens, nq);
        for (int64_t qi = 0; qi < nq; qi++) free(c.lists[qi]);
        free(c.lists);
        free(c.lens);
    }
done:
    PyBuffer_Release(&oo);
    PyBuffer_Release(&op);
    PyBuffer_Release(&oc);
    PyBuffer_Release(&so);
    PyBuffer_Release(&sl);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&ost);
    return ret;
}

/* merge_topk(d1, p1, d2, p2, nq, k, out_d, out_p): merge two per-query lists sorted by
 * (distance, position) (padding: position -1, last) into the k smallest. */
static PyObject *py_merge_topk(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer d1, p1, d2, p2, od, op;
    long long nq, k;
    int pad;
    if (!PyArg_ParseTuple(args, "y*y*y*y*LLiw*w*", &d1, &p1, &d2, &p2, &nq, &k, &pad, &od, &op))
        return NULL;
    PyObject *ret = NULL;
    if (nq < 0 || k < 1 || (int64_t)d1.len < nq * k * 4 || (int64_t)d2.len < nq * k * 4 ||
        (int64_t)p1.len < nq * k * 8 || (int64_t)p2.len < nq * k * 8 ||
        (int64_t)od.len < nq * k * 4 || (int64_t)op.len < nq * k * 8) {
        PyErr_SetString(PyExc_ValueError, "bad buffers");
        goto done;
    }
    {
        const int32_t *A = (const int32_t *)d1.buf, *C = (const int32_t *)d2.buf;
        const int64_t *Ap = (const int64_t *)p1.buf, *Cp = (const int64_t *)p2.buf;
        int32_t *OD = (int32_t *)od.buf;
        int64_t *OP = (int64_t *)op.buf;
        for (int64_t q = 0; q < nq; q++) {
            int64_t i = 0, j = 0;
            const int64_t base = q * k;
            for (int64_t o = 0; o < k; o++) {
                int ai = i < k && Ap[base + i] >= 0, cj = j < k && Cp[base + j] >= 0;
                int take_a;
                if (ai && cj)
                    take_a = A[base + i] < C[base + j] ||
                             (A[base + i] == C[base + j] && Ap[base + i] < Cp[base + j]);
                else take_a = ai;
                if (ai || cj) {
                    OD[base + o] = take_a ? A[base + i] : C[base + j];
                    OP[base + o] = take_a ? Ap[base + i++] : Cp[base + j++];
                } else {
                    OD[base + o] = pad;
                    OP[base + o] = -1;
                }
            }
        }
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&d1);
    PyBuffer_Release(&p1);
    PyBuffer_Release(&d2);
    PyBuffer_Release(&p2);
    PyBuffer_Release(&od);
    PyBuffer_Release(&op);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch controls                                                                            */

static PyObject *py_isa(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(hs_isa_names[hs_isa]);
}

static PyObject *py_available_isas(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (int i = 0; i <= hs_isa_max; i++) {
        PyObject *s = PyUnicode_FromString(hs_isa_names[i]);
        if (s == NULL || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int i = 0; i <= ISA_AVX512; i++) {
        if (strcmp(name, hs_isa_names[i]) == 0) {
            if (i > hs_isa_max) {
                PyErr_Format(PyExc_ValueError, "this CPU does not support %s", name);
                return NULL;
            }
            hs_isa = i;
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown instruction set %s", name);
    return NULL;
}

static PyObject *py_set_tile_bytes(PyObject *self, PyObject *args) {
    (void)self;
    long long v;
    if (!PyArg_ParseTuple(args, "L", &v)) return NULL;
    long long old = hs_tile_bytes;
    if (v >= 64) hs_tile_bytes = v;
    return PyLong_FromLongLong(old);
}

static PyMethodDef hs_methods[] = {
    {"flat_topk", py_flat_topk, METH_VARARGS, "Exact top-k by a tiled flat scan."},
    {"flat_range", py_flat_range, METH_VARARGS, "All items within a radius by a flat scan."},
    {"mih_build", py_mih_build, METH_VARARGS, "Build multi-index hashing tables."},
    {"mih_topk", py_mih_topk, METH_VARARGS, "Exact top-k through multi-index hashing."},
    {"mih_range", py_mih_range, METH_VARARGS, "Range search through multi-index hashing."},
    {"merge_topk", py_merge_topk, METH_VARARGS, "Merge two sorted top-k lists per query."},
    {"isa", py_isa, METH_NOARGS, "Instruction set in use."},
    {"available_isas", py_available_isas, METH_NOARGS, "Instruction sets this CPU supports."},
    {"set_isa", py_set_isa, METH_VARARGS, "Use a (supported) instruction set."},
    {"set_tile_bytes", py_set_tile_bytes, METH_VARARGS, "Set the scan tile size; returns the old."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hs_module = {
    PyModuleDef_HEAD_INIT, "_hamming", "Hamming-distance kernels (see _hamming.c).", -1, hs_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hamming(void) {
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
    return PyModule_Create(&hs_module);
}
