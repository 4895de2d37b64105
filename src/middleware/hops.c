/* hops: loop detection. Every upstream call carries X-Kailash-Hops (the request's count plus one), so
 * a workflow whose HTTP node calls a gateway that calls it back, however deep the chain, is cut off
 * after upstream.max_hops gateways with 508 loop_detected, instead of filling every executor slot
 * with runs waiting on their own children. A value that is not a whole number is a 400: a peer that
 * mangles the header is not one we can count. */
#include <stdio.h>

#include "kailash/middleware.h"

/* Plain decimal digits (no sign, no space inside) as a count, saturating at HOPS_MANY; else -1. */
#define HOPS_MANY 10000
static int hops_parse(const char *s)
{
    int n = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        n = n >= HOPS_MANY ? HOPS_MANY : n * 10 + (*s - '0');
    }
    return n;
}

int mw_hops_before(kreq *r)
{
    const char *h = http_req_header(r, "X-Kailash-Hops");
    int max = http_server_config()->upstream_max_hops;
    char msg[160];
    http_req_set_hops(r, 0);
    if (!h)
        return 0;
    int n = hops_parse(h);
    if (n < 0) {
        http_reply_error(r, 400, "bad_request", "X-Kailash-Hops: expected a whole number of gateways", NULL);
        return 1;
    }
    if (n > max) {
        snprintf(msg, sizeof msg, "the request has passed through %d gateways; upstream.max_hops is %d", n, max);
        http_reply_error(r, 508, "loop_detected", msg, NULL);
        return 1;
    }
    http_req_set_hops(r, n);
    return 0;
}
