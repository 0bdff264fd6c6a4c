/* A fork-join over pthreads: the calling thread is worker 0. */
#ifndef HS_THREADS_H
#define HS_THREADS_H

#include "common.h"

typedef void (*hs_task_fn)(void *ctx, int tid, int nthreads);

/* Run fn(ctx, t, T) for t = 0..T-1 (T capped at 64), t = 0 on the calling thread (a thread
 * that cannot be created runs on the caller afterwards). */
HS_HIDDEN void hs_parallel(int T, hs_task_fn fn, void *ctx);

#endif
