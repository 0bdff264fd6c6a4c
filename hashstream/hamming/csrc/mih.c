#include "mih.h"

#include <stdlib.h>

#include "dispatch.h"
#include "topk.h"
#include "threads.h"

#define HS_PROBE_BATCH 32
#define HS_PROBE_WORK 16 /* MIH budget units: one bucket probe vs one code word checked */

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


int hs_mih_set_subs(hs_mih *h, const int32_t *o, const int32_t *l, int m) {
    if (m < 1 || m > HS_MAX_M) return -1;
    int64_t tab = 0;
    h->m = m;
    for (int j = 0; j < m; j++) {
        if (l[j] < 1 || l[j] > 28 || o[j] < 0 || o[j] + l[j] > h->bits) return -1;
        h->off[j] = o[j];
        h->len[j] = l[j];
        h->tab[j] = tab;
        tab += ((int64_t)1 << l[j]) + 1;
    }
    return 0;
}

int64_t hs_mih_offsets_len(const hs_mih *h) {
    return h->tab[h->m - 1] + ((int64_t)1 << h->len[h->m - 1]) + 1;
}

int hs_mih_check_tables(const hs_mih *h) {
    for (int j = 0; j < h->m; j++)
        if (h->offsets[h->tab[j] + ((int64_t)1 << h->len[j])] != (uint32_t)h->n0) return -1;
    return 0;
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


int hs_mih_build(hs_mih *h, const uint8_t *db, uint32_t *offsets, uint32_t *perm, uint8_t *codes,
                 int T) {
    hs_build_ctx c = {h, db, offsets, perm, codes, 0};
    hs_parallel(T, hs_build_task, &c);
    return c.err ? -1 : 0;
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
    if (hs_grow_keys(&t->buf, &t->cap) < 0) t->err = 1;
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
HS_T_AVX512 HS_INLINE __m512i hs_z_thr(const hs_mtopk *t, int32_t radius, int bits, int wide) {
    const int32_t thr = hs_mthr(t, radius, bits);
    return wide ? _mm512_set1_epi64(thr) : _mm512_set1_epi32(thr);
}

/* take the candidates of mask m: items i + lane, distances d (32-bit lanes, 64-bit if wide) */
HS_T_AVX512 HS_INLINE void hs_z_take(const hs_mih *h, int j, int rho, uint32_t i, __m512i d,
                                     unsigned m, int wide, const uint32_t *qkey, hs_mtopk *t,
                                     int32_t radius) {
    uint32_t tmp[16]; /* a 64-bit lane's distance is its low half (x86 is little-endian) */
    _mm512_storeu_si512((void *)tmp, d);
    while (m) {
        int b = __builtin_ctz(m);
        m &= m - 1;
        hs_mih_take(h, j, rho, (int64_t)i + b, (int32_t)tmp[wide ? 2 * b : b], qkey, t, radius);
    }
}

/* one-word codes: 16 x 32-bit (lane 4) or 8 x 64-bit (wide: lane 8, W = 1) per vector */
HS_T_AVX512 HS_INLINE void hs_bucket_z1(const hs_mih *h, int j, int rho, uint32_t lo, uint32_t hi,
                                        const uint64_t *qx, const uint32_t *qkey, hs_mtopk *t,
                                        int32_t radius, const int wide) {
    const uint32_t nv = wide ? 8 : 16;
    const uint8_t *codes = h->codes + (int64_t)j * h->n0 * (wide ? 8 : 4);
    const __m512i qv = wide ? _mm512_set1_epi64((long long)qx[0]) : _mm512_set1_epi32((int)qx[0]);
    __m512i T = hs_z_thr(t, radius, h->bits, wide);
    for (uint32_t i = lo; i < hi; i += nv) {
        const unsigned lm = hi - i >= nv ? (1u << nv) - 1 : (1u << (hi - i)) - 1;
        __m512i d;
        unsigned m;
        if (wide) {
            d = _mm512_popcnt_epi64(_mm512_xor_si512(
                _mm512_maskz_loadu_epi64((__mmask8)lm, codes + (int64_t)i * 8), qv));
            m = _mm512_mask_cmple_epu64_mask((__mmask8)lm, d, T);
        } else {
            d = _mm512_popcnt_epi32(_mm512_xor_si512(
                _mm512_maskz_loadu_epi32((__mmask16)lm, codes + (int64_t)i * 4), qv));
            m = _mm512_mask_cmple_epu32_mask((__mmask16)lm, d, T);
        }
        if (HS_UNLIKELY(m != 0)) {
            hs_z_take(h, j, rho, i, d, m, wide, qkey, t, radius);
            T = hs_z_thr(t, radius, h->bits, wide);
        }
    }
}

/* AVX-512 verification of one bucket (codes of 1 or 2 64-bit words, or one 32-bit word) */
HS_T_AVX512 static void hs_bucket_z(const hs_mih *h, int j, int rho, uint32_t lo, uint32_t hi,
                                    const uint64_t *qx, const uint32_t *qkey, hs_mtopk *t,
                                    int32_t radius) {
    const int W = h->W, lane = h->lane, bits = h->bits;
    if (lane == 4) {
        hs_bucket_z1(h, j, rho, lo, hi, qx, qkey, t, radius, 0);
        return;
    }
    if (W == 1) {
        hs_bucket_z1(h, j, rho, lo, hi, qx, qkey, t, radius, 1);
        return;
    }
    if (W == 2) {
        const uint64_t *codes = (const uint64_t *)(const void *)h->codes + (int64_t)j * h->n0 * 2;
        const __m512i qv = _mm512_set_epi64((long long)qx[1], (long long)qx[0], (long long)qx[1],
                                            (long long)qx[0], (long long)qx[1], (long long)qx[0],
                                            (long long)qx[1], (long long)qx[0]);
        const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
        __m512i T = hs_z_thr(t, radius, bits, 1);
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
                hs_z_take(h, j, rho, i, d, m, 1, qkey, t, radius);
                T = hs_z_thr(t, radius, bits, 1);
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


int hs_mih_search(hs_mih *h, int isa, const uint8_t *Q, int64_t nq, int64_t k, int32_t radius,
                  int64_t budget, int32_t *out_d, int64_t *out_pos, uint8_t *status,
                  uint64_t **lists, int64_t *lens, int T) {
    hs_mih_ctx c;
    memset(&c, 0, sizeof(c));
    c.h = h;
    c.Q = Q;
    c.nq = nq;
    c.k = k;
    c.radius = radius;
    c.budget = budget;
    c.outd = out_d;
    c.outp = out_pos;
    c.status = status;
    c.lists = lists;
    c.lens = lens;
    c.query = hs_mih_query_for(isa);
    hs_parallel(T, hs_mih_task, &c);
    return c.err ? -1 : 0;
}
