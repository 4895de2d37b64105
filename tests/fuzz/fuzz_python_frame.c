/* fuzz_python_frame: the Python workers' frame reader (src/python/frame.c) on hostile byte streams, as
 * a worker whose code broke out of the runner could send them.
 *
 * The input is fed in chunks whose sizes its first byte chooses, as reads would deliver it. Checked:
 * every message handed out is an object, and it encodes back to a frame that decodes to the same
 * message; once the reader says the stream is broken nothing more is read (the daemon kills the
 * worker). Leaks and bad reads are ASan's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/python.h"

static void fz_check_roundtrip(json_t *msg)
{
    char *out = NULL, err[160];
    size_t len = 0, cap = 0;
    if (!json_is_object(msg))
        abort();
    if (py_frame_encode(msg, &out, &len, &cap) != 0) { /* only a message over PY_FRAME_MAX may fail */
        free(out);
        return;
    }
    py_reader r;
    py_reader_init(&r);
    json_t *back = NULL;
    if (py_reader_feed(&r, out, len) != 0 || py_reader_next(&r, &back, err, sizeof err) != 1 ||
        !json_equal(back, msg) || r.len != 0)
        abort();
    json_decref(back);
    py_reader_free(&r);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    py_reader r;
    py_reader_init(&r);
    char err[160];
    int broken = 0;
    for (size_t i = 0; i < size && !broken; i += step) {
        size_t n = i + step <= size ? step : size - i;
        if (py_reader_feed(&r, data + i, n) != 0)
            break;
        json_t *msg;
        int rc;
        while ((rc = py_reader_next(&r, &msg, err, sizeof err)) == 1) {
            fz_check_roundtrip(msg);
            json_decref(msg);
        }
        broken = rc < 0;
    }
    py_reader_free(&r);
    return 0;
}
