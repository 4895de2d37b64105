/* fuzz_sql_text: SQLDatabaseNode's two text parsers (src/nodes/sql_value.c) on hostile bytes. The
 * first byte picks: even, the SDK's :name placeholders rewritten to $n (the rest is the statement,
 * with a fixed parameters dict); odd, one value in Postgres's text form to JSON (the second byte
 * picks its type). Checked: a rewrite either fails with a message or gives a NUL-terminated
 * statement with at most max names, each a key of the dict; a value always converts (to something:
 * text the parser does not understand stays text). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nodes/sql_internal.h"

static const Oid fz_types[] = {16, 17, 20, 21, 23, 25, 114, 700, 701, 1082, 1083, 1114, 1184, 1186, 1700, 3802, 2950};

static void fz_named(const char *sql)
{
    json_t *params = json_pack("{s:i,s:s,s:n,s:b}", "a", 1, "name", "x", "n", "b_2", 1);
    const char *names[8];
    int n = -1;
    char err[200] = "";
    char *out = sql_named_to_positional(sql, params, names, 8, &n, err, sizeof err);
    if (out) {
        if (n < 0 || n > 8)
            abort();
        for (int i = 0; i < n; i++)
            if (!names[i] || !json_object_get(params, names[i]))
                abort();
        free(out);
    } else if (!err[0]) {
        abort();
    }
    json_decref(params);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    char *text = malloc(size);
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    if (!(data[0] & 1)) {
        fz_named(text);
    } else {
        Oid t = fz_types[data[1] % (sizeof fz_types / sizeof fz_types[0])];
        json_t *v = sql_value_json(t, text, (int)(size - 2), data[0] & 2);
        if (!v)
            abort();
        json_decref(v);
    }
    free(text);
    return 0;
}
