/* fuzz_forwarded.c - libFuzzer target for what trusted proxies say
 * (src/http/forwarded.c) and the address grammar under it (netaddr.c).
 *
 * Input: up to five lines: a Forwarded value, X-Forwarded-For,
 * X-Forwarded-Proto, X-Forwarded-Host, and a CIDR for the trusted list
 * (besides 10.0.0.0/8 and 2001:db8::/32). Checks what every caller relies
 * on: the view's strings are NUL-terminated within their arrays, proto is
 * empty, "http" or "https", a host is one fwd_host_valid() accepts, the
 * hop count is bounded, and a parsed CIDR matches its own address.
 *
 *   sh scripts/build-fuzz.sh
 *   build/fuzz/fuzz_forwarded -max_total_time=60 fuzz/corpus/forwarded
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/netaddr.h"
#include "http/forwarded.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *field[5] = {NULL, NULL, NULL, NULL, NULL};
    char *p = buf;
    for (int i = 0; i < 5 && p != NULL; i++) {
        field[i] = p;
        p = strchr(p, '\n');
        if (p != NULL)
            *p++ = '\0';
    }
    char *cidrs[3] = {"10.0.0.0/8", "2001:db8::/32", NULL};
    size_t n = 2;
    struct dr_cidr c;
    if (field[4] != NULL && dr_cidr_parse(field[4], &c, NULL) == 0) {
        if (c.addr.family != DR_AF_UNIX && !dr_cidr_match(&c, &c.addr))
            abort();
        cidrs[n++] = field[4];
    }
    struct fwd_trust *t = NULL;
    if (fwd_trust_new(cidrs, n, &t) != 0)
        abort(); /* every entry parsed above */
    struct fwd_view v;
    fwd_resolve(t, field[0], field[1], field[2], field[3], &v);
    if (memchr(v.client, '\0', sizeof v.client) == NULL ||
        memchr(v.host, '\0', sizeof v.host) == NULL ||
        memchr(v.proto, '\0', sizeof v.proto) == NULL)
        abort();
    if (v.proto[0] != '\0' && strcmp(v.proto, "http") != 0 && strcmp(v.proto, "https") != 0)
        abort();
    if (v.host[0] != '\0' && !fwd_host_valid(v.host, strlen(v.host)))
        abort();
    if (v.hops > FWD_MAX_HOPS)
        abort();
    for (int i = 0; i < 4; i++) {
        struct dr_addr a;
        if (field[i] != NULL && dr_addr_parse(field[i], strlen(field[i]), &a) == 0) {
            char txt[DR_ADDR_STRLEN];
            dr_addr_format(&a, txt, sizeof txt);
        }
        if (field[i] != NULL)
            (void)dr_addr_parse_peer(field[i], &a);
    }
    fwd_trust_free(t);
    free(buf);
    return 0;
}
