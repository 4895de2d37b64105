/* text_codec: utf-8, utf-8-sig, ascii and latin-1 decoding and encoding as Python's codecs do them,
 * for TextReaderNode and TextWriterNode (see text_codec.h).
 *
 * These four are the encodings whose every byte sequence maps simply and exactly (a table-free
 * check or a one-byte mapping); others (utf-16, cp1252, ...) would need tables or state and are
 * refused rather than half done. Names are matched as Python's encodings.normalize_encoding does:
 * case folded, every run of characters other than letters, digits and '.' made one '_'.
 * Decoding also does what Python's text mode does on read (universal newlines); in all four
 * encodings a CR or LF byte is that character, so it is done byte by byte while copying. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "kailash/template.h"
#include "kailash/util.h"

#include "text_codec.h"

static const struct {
    const char *name; /* normalized */
    text_codec codec;
} text_codec_names[] = {
    {"utf_8", TEXT_UTF8},         {"utf8", TEXT_UTF8},
    {"u8", TEXT_UTF8},            {"utf", TEXT_UTF8},
    {"utf8_ucs2", TEXT_UTF8},     {"utf8_ucs4", TEXT_UTF8},
    {"cp65001", TEXT_UTF8},       {"utf_8_sig", TEXT_UTF8_SIG},
    {"ascii", TEXT_ASCII},        {"646", TEXT_ASCII},
    {"ansi_x3.4_1968", TEXT_ASCII}, {"ansi_x3.4_1986", TEXT_ASCII},
    {"ansi_x3_4_1968", TEXT_ASCII}, {"cp367", TEXT_ASCII},
    {"csascii", TEXT_ASCII},      {"ibm367", TEXT_ASCII},
    {"iso646_us", TEXT_ASCII},    {"iso_646.irv_1991", TEXT_ASCII},
    {"iso_ir_6", TEXT_ASCII},     {"us", TEXT_ASCII},
    {"us_ascii", TEXT_ASCII},     {"latin_1", TEXT_LATIN1},
    {"8859", TEXT_LATIN1},        {"cp819", TEXT_LATIN1},
    {"csisolatin1", TEXT_LATIN1}, {"ibm819", TEXT_LATIN1},
    {"iso8859", TEXT_LATIN1},     {"iso8859_1", TEXT_LATIN1},
    {"iso_8859_1", TEXT_LATIN1},  {"iso_8859_1_1987", TEXT_LATIN1},
    {"iso_ir_100", TEXT_LATIN1},  {"l1", TEXT_LATIN1},
    {"latin", TEXT_LATIN1},       {"latin1", TEXT_LATIN1},
};

static const char *const text_codec_display[] = {"utf-8", "utf-8-sig", "ascii", "latin-1"};

/* Python's normalize_encoding(name).lower() into out; -1 when it does not fit. */
static int text_codec_normalize(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    int gap = 0;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '.') {
            if (gap && n > 0 && n + 1 < cap)
                out[n++] = '_';
            gap = 0;
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)tolower(c);
        } else {
            gap = 1;
        }
    }
    out[n] = '\0';
    return 0;
}

int text_codec_find(const char *name, text_codec *c)
{
    char norm[40];
    if (text_codec_normalize(name, norm, sizeof norm) != 0)
        return -1;
    for (size_t i = 0; i < sizeof text_codec_names / sizeof text_codec_names[0]; i++)
        if (strcmp(text_codec_names[i].name, norm) == 0) {
            *c = text_codec_names[i].codec;
            return 0;
        }
    return -1;
}

int text_codec_option(json_t *src, int at_load, text_codec *c, char *msg, size_t msglen)
{
    json_t *v = json_object_get(src, "encoding");
    *c = TEXT_UTF8;
    if (!v || json_is_null(v) || (at_load && tmpl_value_has_expr(v)))
        return 0;
    if (!json_is_string(v))
        return util_err(msg, msglen, "encoding: expected a string");
    if (json_string_length(v) != strlen(json_string_value(v)) || text_codec_find(json_string_value(v), c) != 0)
        return util_err(msg, msglen, "encoding: '%.40s' is not supported (kailashd reads and writes " TEXT_CODEC_NAMES ")",
                        json_string_value(v));
    return 0;
}

/* Decodes one strict UTF-8 character at s[*i] (as Python's utf-8 codec accepts: no overlong forms,
 * no surrogates, at most U+10FFFF) into *cp and moves *i past it. 0, or -1 leaving *i at the bad byte. */
static int text_utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
    unsigned char b = s[*i];
    size_t n;
    uint32_t min;
    if (b < 0x80) {
        *cp = b;
        (*i)++;
        return 0;
    }
    if (b >= 0xC2 && b <= 0xDF)
        n = 1, min = 0x80, *cp = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF)
        n = 2, min = 0x800, *cp = b & 0x0F;
    else if (b >= 0xF0 && b <= 0xF4)
        n = 3, min = 0x10000, *cp = b & 0x07;
    else
        return -1;
    if (len - *i <= n)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xC0) != 0x80)
            return -1;
        *cp = (*cp << 6) | (s[*i + k] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return -1;
    *i += n + 1;
    return 0;
}

/* Appends latin-1 byte b to out as the UTF-8 of U+00<b>. */
static int text_put_latin1(buf *out, unsigned char b)
{
    if (b < 0x80)
        return buf_append(out, &b, 1);
    char two[2] = {(char)(0xC0 | (b >> 6)), (char)(0x80 | (b & 0x3F))};
    return buf_append(out, two, 2);
}

/* Checks in[i..] is valid in codec c from offset i; -1 with msg naming the first bad byte. */
static int text_check_bytes(text_codec c, const unsigned char *in, size_t len, char *msg, size_t msglen)
{
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        if (c == TEXT_LATIN1 || (c == TEXT_ASCII && in[i] < 0x80)) {
            i++;
            continue;
        }
        if (c == TEXT_ASCII || text_utf8_next(in, len, &i, &cp) != 0)
            return util_err(msg, msglen, "not valid %s: byte 0x%02x at offset %zu", text_codec_display[c], in[i], i);
    }
    return 0;
}

int text_codec_decode(text_codec c, const char *in, size_t len, buf *out, char *msg, size_t msglen)
{
    const unsigned char *s = (const unsigned char *)in;
    if (c == TEXT_UTF8_SIG && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3, len -= 3;
    if (text_check_bytes(c, s, len, msg, msglen) != 0)
        return -1;
    if (buf_reserve(out, len) != 0)
        return util_err(msg, msglen, "out of memory");
    for (size_t i = 0; i < len; i++) {
        unsigned char b = s[i] == '\r' ? '\n' : s[i];
        if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
            i++;
        if ((c == TEXT_LATIN1 ? text_put_latin1(out, b) : buf_append(out, &b, 1)) != 0)
            return util_err(msg, msglen, "out of memory");
    }
    return buf_terminate(out) == 0 ? 0 : util_err(msg, msglen, "out of memory");
}

int text_codec_encode(text_codec c, const char *in, size_t len, buf *out, char *msg, size_t msglen)
{
    const unsigned char *s = (const unsigned char *)in;
    if (c == TEXT_UTF8 || c == TEXT_UTF8_SIG) {
        if (text_check_bytes(TEXT_UTF8, s, len, msg, msglen) != 0)
            return -1;
        return buf_append(out, in, len) == 0 ? 0 : util_err(msg, msglen, "out of memory");
    }
    uint32_t cp;
    size_t chars = 0;
    for (size_t i = 0; i < len; chars++) {
        if (text_utf8_next(s, len, &i, &cp) != 0)
            return util_err(msg, msglen, "not valid utf-8: byte 0x%02x at offset %zu", s[i], i);
        if (cp > (c == TEXT_ASCII ? 0x7Fu : 0xFFu))
            return util_err(msg, msglen, "character U+%04X at position %zu cannot be encoded in %s", (unsigned)cp,
                            chars, text_codec_display[c]);
        unsigned char b = (unsigned char)cp;
        if (buf_append(out, &b, 1) != 0)
            return util_err(msg, msglen, "out of memory");
    }
    return 0;
}

const char *text_codec_bom(text_codec c, size_t *len)
{
    *len = c == TEXT_UTF8_SIG ? 3 : 0;
    return c == TEXT_UTF8_SIG ? "\xEF\xBB\xBF" : "";
}
