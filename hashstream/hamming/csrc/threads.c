#include "threads.h"

#include <pthread.h>

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

void hs_parallel(int T, hs_task_fn fn, void *ctx) {
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
