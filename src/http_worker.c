/* http_worker.c - placeholder; the HTTP front end lands next. */
#include "dripd/worker.h"

int http_worker_main(struct dr_worker_ctx *ctx)
{
    return worker_idle_loop(ctx);
}
