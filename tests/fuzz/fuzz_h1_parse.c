/* fuzz_h1_parse: the loop client's upstream answer parser (src/engine/h1_parse.c) on hostile bytes.
 *
 * The first input byte picks how the rest is cut into reads (1..16 bytes, or all at once) and whether
 * the request was a HEAD (no body); the rest is what the upstream sent. Answers that complete are
 * followed by the next one on the same parser, as on a kept-alive connection, and the stream's end
 * is fed last. Callbacks touch every byte they are given, so ASan sees any pointer past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1_parse.h"

static size_t fz_touch(char *p, size_t n, void *ud)
{
    unsigned *sum = ud;
    for (size_t i = 0; i < n; i++)
        *sum += (unsigned char)p[i];
    return n;
}

/* Feeds data in reads of step bytes (0: all at once); returns when the parser fails or all is fed. */
static void fz_feed(h1_parser *p, char *data, size_t n, size_t step, int no_body, unsigned *sum)
{
    size_t off = 0;
    while (off < n) {
        size_t k = step && n - off > step ? step : n - off, used = 0;
        int rc = h1_parse(p, data + off, k, &used);
        if (rc < 0)
            return;
        if (used > k)
            abort(); /* the parser claims bytes it was not given */
        off += rc == 1 ? used : k;
        if (rc == 1) {
            (void)h1_parse_reusable(p);
            h1_parser_init(p, no_body, fz_touch, fz_touch, sum);
        }
    }
    (void)h1_parse_eof(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] & 15, n = size - 1;
    int no_body = (data[0] >> 4) & 1;
    char *copy = malloc(n ? n : 1); /* writable, and exactly n bytes so overreads are caught */
    if (!copy)
        return 0;
    memcpy(copy, data + 1, n);
    unsigned sum = 0;
    h1_parser p;
    memset(&p, 0, sizeof p);
    h1_parser_init(&p, no_body, fz_touch, fz_touch, &sum);
    fz_feed(&p, copy, n, step, no_body, &sum);
    h1_parser_free(&p);
    free(copy);
    return 0;
}
