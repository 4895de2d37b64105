/* fuzz_cursor: store_cursor_decode and store_is_uuid (src/store/store.c) on hostile bytes: the
 * cursor and the id of GET /runs come straight from the query string and the path.
 *
 * Checked on every input: a cursor that decodes gives a UUID text that encodes back to the very same
 * cursor (so a cursor names exactly one position, and nothing but a cursor we made is accepted); an
 * id store_is_uuid accepts is 36 characters of hex and dashes in the 8-4-4-4-12 places. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kailash/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char id[37], back[33];
    if (store_cursor_decode(s, id) == 0) {
        if (!store_is_uuid(id))
            abort();
        store_cursor_encode(id, back);
        if (strcmp(back, s) != 0)
            abort();
    }
    if (store_is_uuid(s)) {
        if (strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
            abort();
        store_cursor_encode(s, back);
        if (store_cursor_decode(back, id) != 0 || strncasecmp(id, s, 36) != 0)
            abort();
    }
    free(s);
    return 0;
}
