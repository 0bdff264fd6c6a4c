/* Flat search: each query's running result set, the tiled top-k and range drivers over the
 * thread pool, and the merge of per-thread (or per-source) lists in (distance, position) order.
 *
 * Positions are scanned in increasing order, database tile by tile (a tile is cache sized)
 * against every query.  Each query keeps D, the distance a new item must beat: while fewer than
 * k items were kept D = bits + 1, afterwards the k-th smallest kept distance.  An item is kept
 * iff d < D -- an item at distance D comes after every kept one and loses the tie (ties go to
 * the smaller position, i.e. the earlier insertion).  D only decreases; a histogram of kept
 * distances keeps it up to date in O(1) amortized.  When a query's buffer fills it is compacted
 * to exactly its k best.  Threads split the database into contiguous ranges; their lists are
 * merged with a stable counting sort by distance, which orders results by (distance, position).
 */
#ifndef HS_TOPK_H
#define HS_TOPK_H

#include "common.h"

/* One query's running result.  Entries are keys (d << 40 | pos).  Top-k mode (k > 0): keep an
 * item iff d < D.  Range mode (k == 0): D = radius + 1 is fixed and the buffer grows. */
typedef struct {
    uint64_t *buf;
    int32_t *cnt; /* histogram of kept distances (top-k mode), bits + 2 entries */
    int64_t len, cap, k, below; /* below = number kept with d < D */
    int32_t D;
    int err; /* out of memory in range mode */
} hs_topk;

/* Grow a key buffer (realloc, to 2 cap + 64); -1 when out of memory (the buffer is kept). */
HS_HIDDEN int hs_grow_keys(uint64_t **buf, int64_t *cap);
/* Keep every d < D and the first (k - below) entries at d == D (buffer in position order). */
HS_HIDDEN void hs_topk_compact(hs_topk *t);
/* The buffer is full: compact it (top-k mode) or grow it (range mode; t->err when out of memory). */
HS_HIDDEN void hs_topk_full(hs_topk *t);

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

/* A scan kernel: feed positions [db->begin, db->end) to the result sets tk[q0..q1) of queries
 * Q (W words of `lane` bytes each), in increasing position order per query. */
typedef void (*hs_scan_fn)(const hs_db *db, const uint8_t *Q, int64_t q0, int64_t q1,
                           hs_topk *tk);
/* The scan kernel of an instruction set for codes of `lane`-byte words (scan.c). */
HS_HIDDEN hs_scan_fn hs_scan_for(int isa, int lane);

/* Exact top-k of nq queries over db with T threads: out_d/out_pos (nq x k) in (distance,
 * position) order, padded with distance bits + 1 and position -1.  Returns -1 when out of memory. */
HS_HIDDEN int hs_flat_topk(const hs_db *db, hs_scan_fn scan, const uint8_t *Q, int64_t nq,
                           int64_t k, int T, int32_t *out_d, int64_t *out_pos);
/* Every item within `radius` (< 0: none) of each query: (*lists)[qi] (lens[qi] keys) in
 * (distance, position) order.  *lists and *lens (nq + 1 entries each) and the lists are
 * malloc'ed -- the caller frees them (NULL where not allocated), also when -1 (out of memory)
 * is returned. */
HS_HIDDEN int hs_flat_range(const hs_db *db, hs_scan_fn scan, const uint8_t *Q, int64_t nq,
                            int32_t radius, int T, uint64_t ***lists, int64_t **lens);

/* Merge two per-query lists sorted by (distance, position) (padding: position -1, last) into the
 * k smallest, padded with distance `pad`. */
HS_HIDDEN void hs_merge_topk(const int32_t *A, const int64_t *Ap, const int32_t *C,
                             const int64_t *Cp, int64_t nq, int64_t k, int32_t pad, int32_t *OD,
                             int64_t *OP);

#endif
