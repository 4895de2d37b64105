/* request_id: X-Request-ID. A client's id is kept if it has 1-128 characters from [A-Za-z0-9._:-]
 * (so it is safe to echo in headers and logs); anything else is replaced by a new UUIDv7. */
#include <string.h>

#include "kailash/middleware.h"

static int id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

int mw_request_id_before(kreq *r)
{
    const char *h = http_req_header(r, "X-Request-ID");
    if (h && id_valid(h)) {
        http_req_set_request_id(r, h);
    } else {
        char id[37];
        util_uuid7(id);
        http_req_set_request_id(r, id);
    }
    return 0;
}
