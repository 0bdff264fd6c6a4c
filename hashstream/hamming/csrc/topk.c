#include "topk.h"

#include <stdlib.h>

#include "threads.h"

void hs_topk_compact(hs_topk *t) {
    /* Leaves exactly min(total, k) entries. */
    int64_t need = t->k - t->below, j = 0;
    const uint64_t D = (uint64_t)t->D;
    for (int64_t i = 0; i < t->len; i++) {
        uint64_t key = t->buf[i], d = key >> HS_POS_BITS;
        if (d < D || (d == D && need-- > 0)) t->buf[j++] = key;
    }
    t->len = j;
}

int hs_grow_keys(uint64_t **buf, int64_t *cap) {
    int64_t ncap = *cap * 2 + 64;
    uint64_t *nb = (uint64_t *)realloc(*buf, (size_t)ncap * sizeof(uint64_t));
    if (nb == NULL) return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

void hs_topk_full(hs_topk *t) {
    if (t->k > 0) {
        hs_topk_compact(t);
        return;
    }
    if (hs_grow_keys(&t->buf, &t->cap) < 0) t->err = 1;
}

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

/* The context of a flat search and its T * nq result sets (threshold D); -1: out of memory. */
static int hs_flat_init(hs_flat_ctx *c, const hs_db *db, hs_scan_fn scan, const uint8_t *Q,
                        int64_t nq, int64_t k, int32_t D, int T, int32_t **cnt) {
    c->db = *db;
    c->Q = Q;
    c->nq = nq;
    c->scan = scan;
    c->T = T;
    c->states = hs_alloc_states((int64_t)T * nq, k, D, db->bits, db->end - db->begin, cnt);
    return c->states == NULL ? -1 : 0;
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

int hs_flat_topk(const hs_db *db, hs_scan_fn scan, const uint8_t *Q, int64_t nq, int64_t k, int T,
                 int32_t *outd, int64_t *outp) {
    const int bits = db->bits;
    hs_flat_ctx c;
    int32_t *cnt = NULL;
    int err = 0;
    if (hs_flat_init(&c, db, scan, Q, nq, k, bits + 1, T, &cnt) < 0) return -1;
    hs_parallel(T, hs_flat_task, &c);
    int64_t *hist = (int64_t *)malloc(sizeof(int64_t) * (size_t)(bits + 2));
    uint64_t *keys = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)k);
    if (hist == NULL || keys == NULL) {
        err = 1;
    } else {
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
    return err ? -1 : 0;
}

int hs_flat_range(const hs_db *db, hs_scan_fn scan, const uint8_t *Q, int64_t nq, int32_t radius,
                  int T, uint64_t ***lists_out, int64_t **lens_out) {
    const int bits = db->bits;
    hs_flat_ctx c;
    int32_t *cnt = NULL;
    int err = 0;
    hs_flat_init(&c, db, scan, Q, nq, 0, radius + 1, T, &cnt); /* c.states NULL: no memory */
    uint64_t **lists = (uint64_t **)calloc((size_t)(nq + 1), sizeof(uint64_t *));
    int64_t *lens = (int64_t *)calloc((size_t)(nq + 1), sizeof(int64_t));
    int64_t *hist = (int64_t *)malloc(sizeof(int64_t) * (size_t)(bits + 2));
    *lists_out = lists;
    *lens_out = lens;
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
    return err ? -1 : 0;
}

void hs_merge_topk(const int32_t *A, const int64_t *Ap, const int32_t *C, const int64_t *Cp,
                   int64_t nq, int64_t k, int32_t pad, int32_t *OD, int64_t *OP) {
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
