/* route: answers what routing found before the chain (server.c resolves the route and its
 * workflow first, as nginx finds its location before the access phase), in API.md's order: a
 * framing we refuse (400, connection closed), an unknown path (404), a method the path does not
 * take (405 with Allow), a workflow that does not exist (404). */
#include <stdio.h>

#include "kailash/middleware.h"

int mw_route_before(kreq *r)
{
    char msg[200];
    if (http_req_framing_ambiguous(r)) {
        http_req_set_close(r);
        http_reply_error(r, 400, "bad_request",
                         "the request has more than one Content-Length, or one with Transfer-Encoding", NULL);
        return MW_ANSWERED;
    }
    if (!http_req_route(r) && http_req_route_status(r) == 405) {
        http_reply_error(r, 405, "method_not_allowed", "this path does not take that method", NULL);
        http_reply_header(r, "Allow", http_req_allow(r));
        return MW_ANSWERED;
    }
    if (!http_req_route(r)) {
        http_reply_error(r, 404, "not_found", "no such route", NULL);
        return MW_ANSWERED;
    }
    if (http_req_unresolved(r)) {
        snprintf(msg, sizeof msg, "workflow '%s' not found", http_req_param(r));
        http_reply_error(r, 404, "not_found", msg, NULL);
        return MW_ANSWERED;
    }
    return MW_NEXT;
}
