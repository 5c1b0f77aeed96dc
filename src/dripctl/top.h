/* top.h - `dripctl top`: the pipeline view (GET /v1/admin/pipeline/stream)
 * in a terminal, like top(1). See top.c. */
#ifndef DRIPCTL_TOP_H
#define DRIPCTL_TOP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "client.h"
#include "commands.h"

int cmd_top(struct client *c, const struct args *a);
/* One snapshot as text lines: for a terminal `width` columns wide (blocks
 * for the history, the bottleneck in bold), or plain ASCII when !tty. */
void top_render(json_t *snap, bool tty, int width, FILE *out);

#endif
