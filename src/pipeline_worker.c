/* pipeline_worker.c - placeholder; the pipeline lands next. */
#include "dripd/worker.h"

int pipeline_worker_main(struct dr_worker_ctx *ctx)
{
    return worker_idle_loop(ctx);
}
