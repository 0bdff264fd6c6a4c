/* Hamming-distance kernels for hashstream.hamming.index: the CPython glue (argument parsing and
 * checks, the GIL, results as Python objects).  No NumPy headers: arrays travel through the
 * buffer protocol; the Python side allocates the outputs.
 *
 * Storage ("blocked" layout).  A code of `bits` bits is padded with zero bits to W lane words of
 * `lane` bytes (lane = 4 when bits <= 32, else 8).  Codes are stored in blocks of B = 64 / lane
 * codes; a block holds word 0 of its B codes (64 bytes), then word 1, ...: the word w of the
 * code at position p lives at  db + (p / B) * W * 64 + w * 64 + (p % B) * lane.  One 512-bit
 * load therefore reads one word of 8 (or 16) codes, and the scan is XOR + popcount + compare.
 *
 * The rest, one concern a file:
 *   dispatch.c  CPU feature detection, the instruction set in use, the scan tile size
 *   scan.h      the flat-scan template; scan.c instantiates it per instruction set and lane
 *   topk.c      per-query result sets, the tiled top-k and range drivers, merging lists
 *   mih.c       multi-index hashing: building the tables, probing, verifying candidates
 *   threads.c   the fork-join over pthreads
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "mih.h"
#include "topk.h"

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

/* None, or NULL with MemoryError when err */
static PyObject *hs_done(int err) {
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static void hs_set_db(hs_db *d, const Py_buffer *db, const Py_buffer *rm, int64_t begin,
                      int64_t end, int lane, int W, int bits) {
    d->db = (const uint8_t *)db->buf;
    d->removed = rm->len ? (const uint8_t *)rm->buf : NULL;
    d->begin = begin;
    d->end = end;
    d->lane = lane;
    d->W = W;
    d->bits = bits;
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

static void hs_free_lists(uint64_t **lists, int64_t *lens, int64_t nq) {
    if (lists != NULL)
        for (int64_t qi = 0; qi < nq; qi++) free(lists[qi]);
    free(lists);
    free(lens);
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
        hs_db d;
        hs_set_db(&d, &db, &rm, begin, end, lane, W, bits);
        const hs_scan_fn scan = hs_scan_for(hs_isa, lane);
        int err;
        Py_BEGIN_ALLOW_THREADS
        err = hs_flat_topk(&d, scan, (const uint8_t *)qb.buf, nq, k, T, (int32_t *)od.buf,
                           (int64_t *)op.buf);
        Py_END_ALLOW_THREADS
        ret = hs_done(err);
    }
done: /* every entry point ends by releasing the buffers it parsed (CPython's rule) */
    PyBuffer_Release(&db);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&od);
    PyBuffer_Release(&op);
    return ret;
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
        hs_db d;
        hs_set_db(&d, &db, &rm, begin, end, lane, W, bits);
        const hs_scan_fn scan = hs_scan_for(hs_isa, lane);
        uint64_t **lists = NULL;
        int64_t *lens = NULL;
        int err;
        Py_BEGIN_ALLOW_THREADS
        err = hs_flat_range(&d, scan, (const uint8_t *)qb.buf, nq, radius, T, &lists, &lens);
        Py_END_ALLOW_THREADS
        if (!err) ret = hs_range_result(lists, lens, nq);
        else PyErr_NoMemory();
        hs_free_lists(lists, lens, nq);
    }
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&rm);
    PyBuffer_Release(&qb);
    return ret;
}

static void hs_mih_geometry(hs_mih *h, int lane, int W, int bits, long long n0) {
    memset(h, 0, sizeof(*h));
    h->lane = lane;
    h->W = W;
    h->bits = bits;
    h->n0 = n0;
}

static int hs_parse_subs(hs_mih *h, const Py_buffer *so, const Py_buffer *sl, int m) {
    if (m < 1 || m > HS_MAX_M || (int64_t)so->len < m * 4 || (int64_t)sl->len < m * 4 ||
        hs_mih_set_subs(h, (const int32_t *)so->buf, (const int32_t *)sl->buf, m) < 0) {
        PyErr_SetString(PyExc_ValueError, "bad substring layout");
        return -1;
    }
    return 0;
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
    hs_mih_geometry(&h, lane, W, bits, n0);
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
        if (T < 1) T = 1;
        if (T > m) T = m;
        int err;
        Py_BEGIN_ALLOW_THREADS
        err = hs_mih_build(&h, (const uint8_t *)db.buf, (uint32_t *)oo.buf, (uint32_t *)op.buf,
                           (uint8_t *)oc.buf, T);
        Py_END_ALLOW_THREADS
        ret = hs_done(err);
    }
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&so);
    PyBuffer_Release(&sl);
    PyBuffer_Release(&oo);
    PyBuffer_Release(&op);
    PyBuffer_Release(&oc);
    return ret;
}

/* the buffers mih_topk and mih_range share */
typedef struct {
    Py_buffer oo, op, oc, so, sl, rm, qb; /* offsets, perm, codes, sub_off, sub_len, removed, queries */
    long long n0, nq, budget;
    int lane, W, bits, m, T;
} hs_mih_args;

static void hs_mih_release(hs_mih_args *a) {
    PyBuffer_Release(&a->oo);
    PyBuffer_Release(&a->op);
    PyBuffer_Release(&a->oc);
    PyBuffer_Release(&a->so);
    PyBuffer_Release(&a->sl);
    PyBuffer_Release(&a->rm);
    PyBuffer_Release(&a->qb);
}

/* Check the tables and queries of a; T clamped to [1, nq]. */
static int hs_parse_mih(hs_mih *h, hs_mih_args *a) {
    const long long n0 = a->n0;
    const int lane = a->lane, W = a->W, m = a->m;
    hs_mih_geometry(h, lane, W, a->bits, n0);
    if (lane != 4 && lane != 8) goto bad;
    if (W < 1 || W > HS_MAX_W || (lane == 4 && W != 1) || a->bits < 1 || a->bits > W * lane * 8)
        goto bad;
    if (n0 < 0 || n0 >= ((int64_t)1 << 32) - 1) goto bad;
    if (hs_parse_subs(h, &a->so, &a->sl, m) < 0) return -1;
    if ((int64_t)a->oo.len < hs_mih_offsets_len(h) * 4 || (int64_t)a->op.len < m * n0 * 4 ||
        (int64_t)a->oc.len < m * n0 * W * lane)
        goto bad;
    if (a->rm.len != 0 && (int64_t)a->rm.len < n0) goto bad;
    h->offsets = (const uint32_t *)a->oo.buf;
    h->perm = (const uint32_t *)a->op.buf;
    h->codes = (const uint8_t *)a->oc.buf;
    h->removed = a->rm.len ? (const uint8_t *)a->rm.buf : NULL;
    if (hs_mih_check_tables(h) < 0) goto bad;
    if (a->T < 1) a->T = 1;
    if (a->T > a->nq) a->T = a->nq > 0 ? (int)a->nq : 1;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "bad multi-index tables");
    return -1;
}

/* mih_topk(offsets, perm, codes, n0, lane, W, bits, sub_off, sub_len, m, removed, queries, nq,
 *          k, budget, out_d, out_pos, out_status, threads) */
static PyObject *py_mih_topk(PyObject *self, PyObject *args) {
    (void)self;
    hs_mih_args a;
    Py_buffer od, opos, ost;
    long long k;
    if (!PyArg_ParseTuple(args, "y*y*y*Liiiy*y*iy*y*LLLw*w*w*i", &a.oo, &a.op, &a.oc, &a.n0,
                          &a.lane, &a.W, &a.bits, &a.so, &a.sl, &a.m, &a.rm, &a.qb, &a.nq, &k,
                          &a.budget, &od, &opos, &ost, &a.T))
        return NULL;
    PyObject *ret = NULL;
    const long long nq = a.nq;
    hs_mih h;
    if (hs_parse_mih(&h, &a) < 0) goto done;
    if (nq < 0 || k < 1 || (int64_t)a.qb.len < nq * a.W * a.lane || (int64_t)od.len < nq * k * 4 ||
        (int64_t)opos.len < nq * k * 8 || (int64_t)ost.len < nq) {
        PyErr_SetString(PyExc_ValueError, "bad query/output buffers");
        goto done;
    }
    {
        const int isa = hs_isa;
        int err;
        Py_BEGIN_ALLOW_THREADS
        err = hs_mih_search(&h, isa, (const uint8_t *)a.qb.buf, nq, k, 0, a.budget,
                            (int32_t *)od.buf, (int64_t *)opos.buf, (uint8_t *)ost.buf, NULL, NULL,
                            a.T);
        Py_END_ALLOW_THREADS
        ret = hs_done(err);
    }
done:
    hs_mih_release(&a);
    PyBuffer_Release(&od);
    PyBuffer_Release(&opos);
    PyBuffer_Release(&ost);
    return ret;
}

/* mih_range(offsets, perm, codes, n0, lane, W, bits, sub_off, sub_len, m, removed, queries, nq,
 *           radius, budget, out_status, threads) -> (lims, D, I); queries with status 1 are empty */
static PyObject *py_mih_range(PyObject *self, PyObject *args) {
    (void)self;
    hs_mih_args a;
    Py_buffer ost;
    int radius;
    if (!PyArg_ParseTuple(args, "y*y*y*Liiiy*y*iy*y*LiLw*i", &a.oo, &a.op, &a.oc, &a.n0, &a.lane,
                          &a.W, &a.bits, &a.so, &a.sl, &a.m, &a.rm, &a.qb, &a.nq, &radius,
                          &a.budget, &ost, &a.T))
        return NULL;
    PyObject *ret = NULL;
    const long long nq = a.nq;
    hs_mih h;
    if (hs_parse_mih(&h, &a) < 0) goto done;
    if (nq < 0 || (int64_t)a.qb.len < nq * a.W * a.lane || (int64_t)ost.len < nq) {
        PyErr_SetString(PyExc_ValueError, "bad query/output buffers");
        goto done;
    }
    if (radius > a.bits) radius = a.bits;
    {
        uint64_t **lists = (uint64_t **)calloc((size_t)(nq + 1), sizeof(uint64_t *));
        int64_t *lens = (int64_t *)calloc((size_t)(nq + 1), sizeof(int64_t));
        if (lists == NULL || lens == NULL) {
            free(lists);
            free(lens);
            PyErr_NoMemory();
            goto done;
        }
        const int isa = hs_isa;
        int err = 0;
        if (radius >= 0) {
            Py_BEGIN_ALLOW_THREADS
            err = hs_mih_search(&h, isa, (const uint8_t *)a.qb.buf, nq, 0, radius, a.budget, NULL,
                                NULL, (uint8_t *)ost.buf, lists, lens, a.T);
            Py_END_ALLOW_THREADS
        } else {
            memset(ost.buf, 0, (size_t)nq);
        }
        if (err) PyErr_NoMemory();
        else ret = hs_range_result(lists, lens, nq);
        hs_free_lists(lists, lens, nq);
    }
done:
    hs_mih_release(&a);
    PyBuffer_Release(&ost);
    return ret;
}

/* merge_topk(d1, p1, d2, p2, nq, k, pad, out_d, out_p): merge two per-query lists sorted by
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
    hs_merge_topk((const int32_t *)d1.buf, (const int64_t *)p1.buf, (const int32_t *)d2.buf,
                  (const int64_t *)p2.buf, nq, k, pad, (int32_t *)od.buf, (int64_t *)op.buf);
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
    const int i = hs_isa_index(name);
    if (i < 0) {
        PyErr_Format(PyExc_ValueError, "unknown instruction set %s", name);
        return NULL;
    }
    if (i > hs_isa_max) {
        PyErr_Format(PyExc_ValueError, "this CPU does not support %s", name);
        return NULL;
    }
    hs_isa = i;
    Py_RETURN_NONE;
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
    PyModuleDef_HEAD_INIT, "_hamming", "Hamming-distance kernels (see csrc/module.c).", -1,
    hs_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hamming(void) {
    hs_dispatch_init();
    return PyModule_Create(&hs_module);
}
