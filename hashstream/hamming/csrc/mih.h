/* Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012).  The first `bits` bits are cut
 * into m substrings of at most 28 bits; table j sorts all items by substring j (radix sort, CSR
 * offsets) and stores the positions and a copy of the codes in that order.  A query probes
 * table 0..m-1 at substring radius 0, then 1, ...; after (rho, j) every item at distance
 * <= m * rho + j has been seen (pigeonhole), so the search stops once the k-th best distance is
 * below that bound -- all items at or below the k-th distance are known and the (distance,
 * position) order is exact.  An item seen again in another table is skipped by recomputing its
 * substring distances (it is new only at its lexicographically first (rho, j)).  A search
 * whose work passes `budget` gives up (status 1) and the caller runs the flat scan instead. */
#ifndef HS_MIH_H
#define HS_MIH_H

#include "common.h"

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

/* Set the m substrings (offsets o, lengths l) of h, whose bits is set; -1 if they are bad. */
HS_HIDDEN int hs_mih_set_subs(hs_mih *h, const int32_t *o, const int32_t *l, int m);
/* uint32 entries of the concatenated offsets of h's tables */
HS_HIDDEN int64_t hs_mih_offsets_len(const hs_mih *h);
/* 0 if every table's offsets end at n0 (a stale or foreign table would read outside), else -1 */
HS_HIDDEN int hs_mih_check_tables(const hs_mih *h);

/* Build the tables of h (geometry and substrings set) from the blocked store db (positions
 * [0, n0)) into offsets, perm, codes, one table per thread at a time.  -1: out of memory. */
HS_HIDDEN int hs_mih_build(hs_mih *h, const uint8_t *db, uint32_t *offsets, uint32_t *perm,
                           uint8_t *codes, int T);

/* Search nq queries (W words of `lane` bytes each) with the instruction set `isa`, queries
 * spread over T threads; status[qi] = 1 where the budget ran out.  Top-k mode (k > 0):
 * out_d/out_pos (nq x k) in (distance, position) order, padded with bits + 1 / -1 (also for a
 * query with status 1).  Range mode (k == 0): lists[qi] (malloc'ed, lens[qi] keys, caller frees)
 * for queries with status 0.  -1: out of memory. */
HS_HIDDEN int hs_mih_search(hs_mih *h, int isa, const uint8_t *Q, int64_t nq, int64_t k,
                            int32_t radius, int64_t budget, int32_t *out_d, int64_t *out_pos,
                            uint8_t *status, uint64_t **lists, int64_t *lens, int T);

#endif
