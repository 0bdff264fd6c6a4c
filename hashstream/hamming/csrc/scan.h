/* The flat-scan template: one body for every lane width and instruction set (no include guard).
 * scan.c includes it once per instruction set after defining
 *
 *   HS_ISA      name token of the instruction set (functions are named x_<ISA>_<LANE>)
 *   HS_TARGET   its target attribute (empty for plain C)
 *   HS_OPS      prefix P of its operations, macros P_<NAME> (so that no ISA's need undefining):
 *     VEC            type holding the distances of NV codes (also the threshold type)
 *     NV             codes per vector: the store holds word w of 64 / HS_LANE codes in 64 bytes,
 *                    so a block has 64 / (NV * HS_LANE) vectors
 *     G              queries per pass over a block (each load serves G chains)
 *     PAIR           1: two blocks per step, one compare of the lane-wise minimum per query
 *                    (needs one vector per block)
 *     DIST(p, q, W)  distances of the NV codes whose word 0 starts at p (word w at p + 64 w) to
 *                    the query words q (HS_WORD[W])
 *     THR(D)         the threshold D broadcast;  LT(d, T): bit mask of the lanes with d < T
 *     MIN(a, b)      lane-wise minimum (PAIR only);  STORE(tmp, d): d to HS_WORD[NV]
 * (they may test HS_LANE, a constant).  The first inclusion (HS_LANE undefined) instantiates
 * the body below for HS_LANE = 4 and 8 by including this file again, then clears HS_ISA,
 * HS_TARGET and HS_OPS.
 *
 * Result: static void hs_scan_<ISA>_<LANE>(db, Q, q0, q1, tk), an hs_scan_fn.  It walks the
 * blocks overlapping [db->begin, db->end) tile by tile; per tile, queries in groups of G; per
 * group, blocks in order and vectors in order, so each query sees positions in increasing
 * order.  A lane under the query's threshold goes to hs_consider, which re-checks the current D
 * (it may have dropped while earlier lanes were pushed), the range and the removal mask.
 */
#ifndef HS_LANE
#define HS_OP_(ops, name) ops##_##name
#define HS_OP2(ops, name) HS_OP_(ops, name)
#define HS_OP(name) HS_OP2(HS_OPS, name)
#define HS_VEC HS_OP(VEC)
#define HS_NV HS_OP(NV)
#define HS_G HS_OP(G)
#define HS_PAIR HS_OP(PAIR)
#define HS_DIST HS_OP(DIST)
#define HS_THR HS_OP(THR)
#define HS_LT HS_OP(LT)
#define HS_MIN HS_OP(MIN)
#define HS_STORE HS_OP(STORE)
#define HS_LANE 4
#include "scan.h"
#define HS_LANE 8
#include "scan.h"
#undef HS_OP_
#undef HS_OP2
#undef HS_OP
#undef HS_VEC
#undef HS_NV
#undef HS_G
#undef HS_PAIR
#undef HS_DIST
#undef HS_THR
#undef HS_LT
#undef HS_MIN
#undef HS_STORE
#undef HS_ISA
#undef HS_TARGET
#undef HS_OPS
#else /* one lane */

#if HS_LANE == 8
#define HS_WORD uint64_t
#else
#define HS_WORD uint32_t
#endif
#define HS_CAT3_(a, b, c) a##_##b##_##c
#define HS_CAT3(a, b, c) HS_CAT3_(a, b, c)
#define HS_FN(x) HS_CAT3(x, HS_ISA, HS_LANE)
#define HS_B (64 / HS_LANE)       /* codes per block */
#define HS_VPB (HS_B / HS_NV)     /* vectors per block */
#define HS_VBYTES (HS_NV * HS_LANE)

/* push the lanes of mask m (distances d, positions base + lane) */
HS_TARGET HS_INLINE void HS_FN(hs_hits)(hs_topk *t, const hs_db *db, HS_VEC d, unsigned m,
                                        int64_t base) {
    HS_WORD tmp[HS_NV];
    HS_STORE(tmp, d);
    while (m) {
        int j = __builtin_ctz(m);
        m &= m - 1;
        hs_consider(t, db, (int32_t)tmp[j], base + j);
    }
}

/* queries qi .. qi + G - 1 against blocks [t0, t1) */
HS_TARGET HS_INLINE void HS_FN(hs_pass)(const hs_db *db, const HS_WORD *Q, int64_t qi,
                                        hs_topk *tk, int64_t t0, int64_t t1, const int W,
                                        const int G) {
    const int64_t bstride = (int64_t)W * 64;
    hs_topk *t[HS_G];
    const HS_WORD *q[HS_G];
    HS_VEC T[HS_G];
    for (int g = 0; g < G; g++) {
        t[g] = &tk[qi + g];
        q[g] = Q + (qi + g) * W;
        T[g] = HS_THR(t[g]->D);
    }
    int64_t b = t0;
#if HS_PAIR
#if HS_VPB != 1
#error "HS_PAIR needs one vector per block"
#endif
    /* (the compare shares port 5 with VPOPCNTQ; the minimum does not) */
    for (; b + 2 <= t1; b += 2) {
        const uint8_t *blk = db->db + b * bstride;
        HS_VEC d[HS_G], e[HS_G];
        unsigned m[HS_G], any = 0;
        for (int g = 0; g < G; g++) d[g] = HS_DIST(blk, q[g], W);
        for (int g = 0; g < G; g++) e[g] = HS_DIST(blk + bstride, q[g], W);
        for (int g = 0; g < G; g++) {
            m[g] = HS_LT(HS_MIN(d[g], e[g]), T[g]);
            any |= m[g];
        }
        if (HS_UNLIKELY(any != 0)) {
            for (int g = 0; g < G; g++) {
                if (!m[g]) continue;
                unsigned m0 = HS_LT(d[g], T[g]);
                if (m0) {
                    HS_FN(hs_hits)(t[g], db, d[g], m0, b * HS_B);
                    T[g] = HS_THR(t[g]->D);
                }
                unsigned m1 = HS_LT(e[g], T[g]);
                if (m1) {
                    HS_FN(hs_hits)(t[g], db, e[g], m1, b * HS_B + HS_B);
                    T[g] = HS_THR(t[g]->D);
                }
            }
        }
    }
#endif
    for (; b < t1; b++) {
        const uint8_t *blk = db->db + b * bstride;
        for (int v = 0; v < HS_VPB; v++) {
            HS_VEC d[HS_G];
            unsigned m[HS_G], any = 0;
            for (int g = 0; g < G; g++) {
                d[g] = HS_DIST(blk + v * HS_VBYTES, q[g], W);
                m[g] = HS_LT(d[g], T[g]);
                any |= m[g];
            }
            if (HS_UNLIKELY(any != 0)) {
                for (int g = 0; g < G; g++) {
                    if (!m[g]) continue;
                    HS_FN(hs_hits)(t[g], db, d[g], m[g], b * HS_B + v * HS_NV);
                    T[g] = HS_THR(t[g]->D);
                }
            }
        }
    }
}

HS_TARGET HS_INLINE void HS_FN(hs_scan_w)(const hs_db *db, const uint8_t *Qb, int64_t q0,
                                          int64_t q1, hs_topk *tk, const int W) {
    const HS_WORD *Q = (const HS_WORD *)(const void *)Qb;
    const int64_t bstride = (int64_t)W * 64;
    const int64_t blk0 = db->begin / HS_B, blk1 = (db->end + HS_B - 1) / HS_B;
    const int64_t tile = hs_tile_bytes / bstride > 0 ? hs_tile_bytes / bstride : 1;
    for (int64_t t0 = blk0; t0 < blk1; t0 += tile) {
        const int64_t t1 = t0 + tile < blk1 ? t0 + tile : blk1;
        int64_t qi = q0;
        for (; qi + HS_G <= q1; qi += HS_G) HS_FN(hs_pass)(db, Q, qi, tk, t0, t1, W, HS_G);
        for (; qi < q1; qi++) HS_FN(hs_pass)(db, Q, qi, tk, t0, t1, W, 1);
    }
}

/* the word count as a constant for the common code lengths (<= 256 bits) */
HS_TARGET static void HS_FN(hs_scan)(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                                     hs_topk *tk) {
#if HS_LANE == 4
    HS_FN(hs_scan_w)(db, Q, q0, q1, tk, 1);
#else
    switch (db->W) {
    case 1: HS_FN(hs_scan_w)(db, Q, q0, q1, tk, 1); break;
    case 2: HS_FN(hs_scan_w)(db, Q, q0, q1, tk, 2); break;
    case 3: HS_FN(hs_scan_w)(db, Q, q0, q1, tk, 3); break;
    case 4: HS_FN(hs_scan_w)(db, Q, q0, q1, tk, 4); break;
    default: HS_FN(hs_scan_w)(db, Q, q0, q1, tk, db->W); break;
    }
#endif
}

#undef HS_WORD
#undef HS_CAT3_
#undef HS_CAT3
#undef HS_FN
#undef HS_B
#undef HS_VPB
#undef HS_VBYTES
#undef HS_LANE
#endif
