/* util: small shared helpers (time, ids, growable buffers, JSON paths).
 * Every function here is thread-safe and allocation-owner rules are stated per function. The
 * sections below name their files: util_* in util.c, except util_net_* (net.c) and
 * util_json_escape (json_write.c); buf_* in buf.c, except buf_append_json* (json_write.c). */
#ifndef KAILASH_UTIL_H
#define KAILASH_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* Monotonic clock in milliseconds (fractional). */
double util_now_ms(void);
/* Wall clock: Unix time in seconds (fractional). */
double util_now_unix_s(void);

/* Wall clock as RFC 3339 UTC with milliseconds ("2026-11-27T10:00:00.123Z"); out holds >= 32 bytes. */
void util_rfc3339_now(char *out, size_t outlen);

/* ms as printf's "%.3f" writes it (a duration: the hot paths' logs and headers), without printf.
 * out holds at least 32 bytes; returns the length written (NUL not counted). */
size_t util_fmt_ms(char *out, double ms);
/* Copies src into dst (cap bytes), cut short if need be, always NUL-terminated (cap > 0): what
 * snprintf(dst, cap, "%s", src) does, without printf. Returns dst. */
char *util_copy(char *dst, size_t cap, const char *src);
/* v in decimal, NUL-terminated, into out (at least 11 bytes); returns the length. */
size_t util_fmt_uint(char *out, unsigned v);

/* A new UUIDv7 (time-ordered, CSPRNG tail) as 36 characters plus NUL into out[37]. */
void util_uuid7(char out[37]);

/* Grows arr, an array of *n elements of elem bytes, so that index idx exists: the size doubles from
 * at least min, and new elements are zeroed. Returns the (maybe moved) array with *n updated, or
 * NULL when out of memory (arr and *n unchanged, arr still the caller's). */
void *util_grow_zeroed(void *arr, size_t *n, size_t elem, size_t idx, size_t min);

/* ---- buf.c -------------------------------------------------------------------------------------- */

/* Growable byte buffer. Zero-initialise ({0}) before use; buf_free releases it. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

/* Makes room for extra more bytes (and a NUL) at once; returns 0 or -1 (the buffer is unchanged). */
int buf_reserve(buf *b, size_t extra);
/* Appends n bytes; returns 0, or -1 when memory runs out (the buffer is unchanged). */
int buf_append(buf *b, const void *data, size_t n);
/* printf-style append; returns 0 or -1. */
int buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes data NUL-terminated (not counted in len); returns 0 or -1. */
int buf_terminate(buf *b);
void buf_free(buf *b);
/* ---- json_write.c: the project's JSON writer ------------------------------------------------------ */

/* The JSON escape of byte c as jansson writes it (\" \\ \b \f \n \r \t, other bytes under 0x20 as
 * \u00XX) into out; returns its length, or 0 when c goes out as it is. The one escaper of the
 * project's JSON writers (src/util/json_write.c). */
size_t util_json_escape(unsigned char c, char out[6]);
/* Appends s as a quoted JSON string (escaped by util_json_escape; other bytes are copied, so s must
 * be UTF-8). Returns 0 or -1. */
int buf_append_json_str(buf *b, const char *s);
/* The same for n bytes (a string that may hold NUL, as jansson's do). */
int buf_append_json_strn(buf *b, const char *s, size_t n);
/* Appends v as compact JSON: the bytes json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15))
 * writes, keys in insertion order (src/util/json_write.c). Returns 0, or -1 (out of memory, or
 * nesting past 4096 levels) with b as it was. */
int buf_append_json(buf *b, json_t *v);
/* Flags of buf_append_json_as. */
enum {
    BUF_JSON_SORT_KEYS = 1,     /* keys in jansson's JSON_SORT_KEYS order (bytes, then length) */
    BUF_JSON_REAL17 = 2,        /* reals at jansson's default precision, "%.17g" */
    BUF_JSON_REAL_SHORTEST = 4, /* reals as the shortest "%.15g".."%.17g" that reads back ("0.1") */
    BUF_JSON_REAL_INTEGRAL = 8, /* a real holding an integer within 2^53 as that integer (1.0 -> 1, -0.0 -> 0) */
};
/* Canonical JSON, for cache keys: the bytes json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENCODE_ANY) writes, so equal values give equal text whatever their key order. */
#define BUF_JSON_CANONICAL (BUF_JSON_SORT_KEYS | BUF_JSON_REAL17)
/* buf_append_json with flags (BUF_JSON_*; 0 is buf_append_json). Returns 0, or -1 (out of memory,
 * nesting past 4096 levels, v NULL) with b as it was. */
int buf_append_json_as(buf *b, json_t *v, unsigned flags);
/* Appends v as buf_append_json writes a real (jansson's "%.15g" form). Returns 0 or -1. */
int buf_append_json_real(buf *b, double v);

/* ---- util.c ------------------------------------------------------------------------------------- */

/* Looks up a dotted path ("a.b.0.c", numeric segments index arrays; "a[0].b" also accepted)
 * inside root. Returns a borrowed reference or NULL when any segment is missing. */
json_t *util_json_path(json_t *root, const char *path);

/* Same, but the path is given as n bytes (not NUL-terminated). */
json_t *util_json_pathn(json_t *root, const char *path, size_t n);

/* Appends to b a string that is equal for two values exactly when Python's == (and hash) holds for
 * them as the SDK sees them: 1, 1.0 and true alike, 0, 0.0 and false alike, strings by content,
 * anything else by its canonical JSON. For grouping and joining by a key value. 0, or -1 when memory
 * runs out. */
int util_json_py_key(json_t *v, buf *b);

/* NULL-terminated string vectors: s split at sep into a new vector (caller frees with
 * util_strv_free), or NULL when a piece is empty or memory runs out; util_strv_free(NULL) is a no-op. */
char **util_strv_split(const char *s, char sep);
void util_strv_free(char **v);

/* snprintf into err (if err and errlen are non-zero); always returns -1 for `return util_err(...)`. */
int util_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads a whole file (at most max bytes) into a new NUL-terminated string; caller frees.
 * Returns NULL and fills err on failure or when the file is larger than max. Only a regular file is
 * read (symlinks are followed): a FIFO, directory, socket or device fails at once, without blocking,
 * with "PATH: not a regular file (a FIFO)". Every file the operator names is read through here. */
char *util_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* ---- net.c: addresses ----------------------------------------------------------------------------- */

/* True when the textual IPv4/IPv6 address ip lies in cidr ("10.0.0.0/8", "::1", "fd00::/8"). An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as IPv4. */
int util_net_cidr_match(const char *cidr, const char *ip);
/* True when cidr is "addr" or "addr/bits" with bits within the family's width. */
int util_net_cidr_valid(const char *cidr);

/* True when ip is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.x.x). */
int util_net_ip_loopback(const char *ip);
/* Writes the dotted form of the IPv4 address a (network order) into out, NUL-terminated, as
 * inet_ntop does; returns its length. */
size_t util_net_fmt_ipv4(char out[16], const unsigned char a[4]);

#endif
