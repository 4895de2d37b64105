/* fuzz_job_prefix: store_job_prefix and its value_end (src/store/store.c) on hostile bytes, as a read
 * of a damaged or planted record meets them (every record read goes through it).
 *
 * Checked on every input, copied into a buffer of exactly its size (ASan sees any read past it):
 * when it finds an end k, the input starts with {"job": and has a comma at k. And when the input is
 * JSON, the record {"job":<that value, compact>,"run_id":1} (as record.c writes it) has its
 * payload's end found exactly, and the bytes before it parse back to the same value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/store_internal.h"
#include "kailash/util.h"

static void raw_bytes(const uint8_t *data, size_t size)
{
    char *exact = malloc(size ? size : 1);
    if (!exact)
        return;
    memcpy(exact, data, size);
    size_t k = store_job_prefix(exact, size);
    if (k && (k >= size || exact[k] != ',' || size < 7 || memcmp(exact, "{\"job\":", 7) != 0))
        abort();
    free(exact);
}

static void as_record(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    buf b = {0};
    if (!text || buf_append(&b, "{\"job\":", 7) != 0 || buf_append(&b, text, strlen(text)) != 0 ||
        buf_append(&b, ",\"run_id\":1}", 12) != 0) {
        free(text);
        buf_free(&b);
        return;
    }
    char *exact = malloc(b.len);
    memcpy(exact, b.data, b.len);
    size_t k = store_job_prefix(exact, b.len);
    if (k != 7 + strlen(text))
        abort();
    json_t *back = json_loadb(exact + 7, k - 7, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!back || !json_equal(back, v))
        abort();
    json_decref(back);
    free(exact);
    buf_free(&b);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    raw_bytes(data, size);
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v)
        as_record(v);
    json_decref(v);
    return 0;
}
