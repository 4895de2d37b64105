/* b64url: the unpadded base64url of JWS segments and JWK members (RFC 7515 section 2, RFC 4648
 * section 5). Strict on purpose: one spelling per value, so a token cannot be altered without
 * changing its signing input, and anything a lax decoder would guess at is refused. */
#include "jwt_internal.h"

/* The 6-bit value of c, or -1. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    unsigned long acc = 0;
    int bits = 0;
    size_t o = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned long)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* 2 or 4 bits are left over after 3 or 2 characters of a last group: they must be zero */
    if (acc & ((1ul << bits) - 1))
        return -1;
    *outlen = o;
    return 0;
}
