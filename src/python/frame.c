/* frame: the Python workers' wire format (python.h). A frame is a 4-byte big-endian length, then that
 * many bytes of compact JSON, always an object. The reader keeps what it was fed in one buffer and
 * hands out whole messages; a partial frame waits for more bytes. A length of 0 or over PY_FRAME_MAX
 * breaks the stream (the worker is killed): a runaway or hostile worker cannot make the daemon
 * allocate without bound. */
#include <stdlib.h>
#include <string.h>

#include "kailash/python.h"
#include "kailash/util.h"

static int grow(char **bp, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    char *b = realloc(*bp, n);
    if (!b)
        return -1;
    *bp = b;
    *cap = n;
    return 0;
}

int py_frame_encode(json_t *msg, char **bp, size_t *len, size_t *cap)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return -1;
    size_t n = strlen(text);
    if (n == 0 || n > PY_FRAME_MAX || grow(bp, cap, *len + 4 + n) != 0) {
        free(text);
        return -1;
    }
    unsigned char *p = (unsigned char *)*bp + *len;
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    memcpy(p + 4, text, n);
    *len += 4 + n;
    free(text);
    return 0;
}

void py_reader_init(py_reader *r)
{
    memset(r, 0, sizeof *r);
}

void py_reader_free(py_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int py_reader_feed(py_reader *r, const void *data, size_t n)
{
    if (grow(&r->buf, &r->cap, r->len + n) != 0)
        return -1;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

int py_reader_next(py_reader *r, json_t **msg, char *err, size_t errlen)
{
    *msg = NULL;
    if (r->len < 4)
        return 0;
    const unsigned char *p = (const unsigned char *)r->buf;
    size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | (size_t)p[3];
    if (n == 0 || n > PY_FRAME_MAX)
        return util_err(err, errlen, "a frame of %zu bytes (1..%zu allowed)", n, PY_FRAME_MAX);
    if (r->len - 4 < n)
        return 0;
    json_error_t je;
    json_t *v = json_loadb(r->buf + 4, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
    r->len -= 4 + n;
    if (!v)
        return util_err(err, errlen, "a frame that is not JSON: %s", je.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return util_err(err, errlen, "a frame that is not a JSON object");
    }
    *msg = v;
    return 1;
}
