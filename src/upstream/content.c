/* content: an answer's body as a node's `content`, the way the SDK's HTTPRequestNode reads it
 * through requests (response.json() / response.text), within what JSON can carry.
 *
 * Text is decoded by the Content-Type's charset as requests does for the charsets servers send:
 * ISO-8859-1 (and its aliases), US-ASCII and windows-1252 byte by byte, anything else as UTF-8; a
 * byte that does not decode becomes U+FFFD (requests decodes with errors="replace"), so the string
 * is always valid UTF-8, as jansson needs. Where requests falls back to ISO-8859-1 for a text/ type
 * without a charset, this reads UTF-8 (what servers send without saying; the SDK's own
 * AsyncHTTPRequestNode does the same).
 *
 * JSON is parsed from that text: a body with invalid UTF-8 is parsed after the U+FFFD replacement
 * (requests parses response.text), so only a body that is not JSON at all is refused. An empty body
 * is "" under every format: response.json() fails on it and the SDK keeps the text. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream_internal.h"

typedef enum http_charset { CS_UTF8, CS_LATIN1, CS_ASCII, CS_CP1252 } http_charset;

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Same rules as jansson's check. */
static size_t http_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate, or past U+10FFFF */
    return len;
}

/* The n bytes as UTF-8 into b, invalid sequences as U+FFFD. 0 or -1. */
static int http_utf8_clean(buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = http_utf8_seq((const unsigned char *)p + i, n - i);
        if (buf_append(b, k ? p + i : "\xEF\xBF\xBD", k ? k : 3) != 0)
            return -1;
        i += k ? k : 1;
    }
    return 0;
}

json_t *http_text_json(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    if (s)
        return s;
    buf b = {0};
    s = http_utf8_clean(&b, p, n) == 0 ? json_stringn(b.data ? b.data : "", b.len) : NULL;
    buf_free(&b);
    return s;
}

/* windows-1252's 0x80..0x9F (0: undefined, Python's cp1252 gives U+FFFD with errors="replace"). */
static const unsigned short http_cp1252_high[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

/* One byte of a single-byte charset as UTF-8 into b. */
static int http_byte_utf8(buf *b, unsigned char c, http_charset cs)
{
    unsigned cp = c;
    if (c >= 0x80 && cs == CS_ASCII)
        cp = 0xFFFD;
    else if (c >= 0x80 && c <= 0x9F && cs == CS_CP1252)
        cp = http_cp1252_high[c - 0x80] ? http_cp1252_high[c - 0x80] : 0xFFFD;
    char u[3];
    if (cp < 0x80)
        return buf_append(b, (const char *)&c, 1);
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        return buf_append(b, u, 2);
    }
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    return buf_append(b, u, 3);
}

/* Python's codec name lookup, for the single-byte charsets kept here: lower case, '-' and ' ' as
 * '_', then the aliases of encodings/aliases.py. */
static http_charset http_charset_named(const char *s, size_t n)
{
    static const struct {
        const char *name;
        http_charset cs;
    } names[] = {
        {"latin_1", CS_LATIN1},
        {"latin1", CS_LATIN1},
        {"l1", CS_LATIN1},
        {"iso_8859_1", CS_LATIN1},
        {"iso8859_1", CS_LATIN1},
        {"8859", CS_LATIN1},
        {"cp819", CS_LATIN1},
        {"ibm819", CS_LATIN1},
        {"csisolatin1", CS_LATIN1},
        {"iso_ir_100", CS_LATIN1},
        {"iso_8859_1:1987", CS_LATIN1},
        {"ascii", CS_ASCII},
        {"us_ascii", CS_ASCII},
        {"us", CS_ASCII},
        {"646", CS_ASCII},
        {"iso646_us", CS_ASCII},
        {"ansi_x3.4_1968", CS_ASCII},
        {"cp367", CS_ASCII},
        {"csascii", CS_ASCII},
        {"ibm367", CS_ASCII},
        {"iso_ir_6", CS_ASCII},
        {"cp1252", CS_CP1252},
        {"windows_1252", CS_CP1252},
    };
    char norm[32];
    if (n == 0 || n >= sizeof norm)
        return CS_UTF8;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        norm[i] = c == '-' || c == ' ' ? '_' : (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    norm[n] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(norm, names[i].name) == 0)
            return names[i].cs;
    return CS_UTF8;
}

/* The charset parameter of a Content-Type value (requests' _parse_content_type_header: parameters
 * split at ';', the name lower-cased, the value stripped of blanks and quotes). */
static http_charset http_charset_of(const char *ctype)
{
    const char *p = ctype ? strchr(ctype, ';') : NULL;
    while (p) {
        const char *s = p + 1, *end = strchr(s, ';');
        const char *e = end ? end : s + strlen(s), *eq = memchr(s, '=', (size_t)(e - s));
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        if (eq && eq - s >= 7 && strncasecmp(s, "charset", 7) == 0 && strspn(s + 7, " \t") == (size_t)(eq - s - 7)) {
            const char *v = eq + 1;
            while (v < e && strchr(" \t\"'", *v))
                v++;
            while (e > v && strchr(" \t\"'", e[-1]))
                e--;
            return http_charset_named(v, (size_t)(e - v));
        }
        p = end;
    }
    return CS_UTF8;
}

/* The body decoded as cs, as valid UTF-8, into b. 0 or -1. */
static int http_decode(buf *b, const char *p, size_t n, http_charset cs)
{
    if (cs == CS_UTF8)
        return http_utf8_clean(b, p, n);
    for (size_t i = 0; i < n; i++)
        if (http_byte_utf8(b, (unsigned char)p[i], cs) != 0)
            return -1;
    return 0;
}

int http_is_json_type(const char *ctype)
{
    if (!ctype)
        return 0;
    size_t n = strcspn(ctype, ";");
    while (n && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(ctype, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ctype + n - 5, "+json", 5) == 0);
}

static json_t *http_base64_json(const char *p, size_t n)
{
    char *b64 = NULL;
    if (http_base64((const unsigned char *)p, n, &b64) != 0)
        return NULL;
    json_t *s = json_string(b64);
    free(b64);
    return s;
}

/* The body parsed as JSON (from its text when it is not plain UTF-8), or NULL with jerr. */
static json_t *http_parse_json(const char *p, size_t n, http_charset cs, json_error_t *jerr)
{
    json_t *v = cs == CS_UTF8 ? json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, jerr) : NULL;
    if (v)
        return v;
    buf b = {0};
    if (http_decode(&b, p, n, cs) == 0 && (cs != CS_UTF8 || b.len != n || memcmp(b.data, p, n) != 0))
        v = json_loadb(b.data ? b.data : "", b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, jerr);
    buf_free(&b);
    return v;
}

/* The body as text: a new JSON string, or NULL when out of memory. */
static json_t *http_text_content(const char *p, size_t n, http_charset cs)
{
    if (cs == CS_UTF8)
        return http_text_json(p, n);
    buf b = {0};
    json_t *s = http_decode(&b, p, n, cs) == 0 ? json_stringn(b.data ? b.data : "", b.len) : NULL;
    buf_free(&b);
    return s;
}

int http_content_make(http_format fmt, const char *ctype, const char *p, size_t n, json_t **content, json_error_t *jerr)
{
    *content = NULL;
    if (fmt == HTTP_FMT_BINARY) {
        *content = http_base64_json(p, n);
        return *content ? 0 : -1;
    }
    if (fmt == HTTP_FMT_AUTO)
        fmt = http_is_json_type(ctype) ? HTTP_FMT_JSON : HTTP_FMT_TEXT;
    http_charset cs = http_charset_of(ctype);
    if ((fmt == HTTP_FMT_JSON || fmt == HTTP_FMT_JSON_OR_TEXT) && n > 0) {
        *content = http_parse_json(p, n, cs, jerr);
        if (*content)
            return 0;
        if (fmt == HTTP_FMT_JSON)
            return 1;
    }
    *content = http_text_content(p, n, cs);
    return *content ? 0 : -1;
}
