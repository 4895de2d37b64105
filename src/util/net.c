/* net: address helpers for trusted proxies and loopback checks. Addresses are compared in binary
 * after inet_pton, never as strings, so "127.000.0.1"-style tricks cannot slip through. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "kailash/util.h"

/* Parses ip into 16 bytes (IPv4 as ::ffff:a.b.c.d); returns 4 or 6, or 0 when it is no address. */
static int ip_parse(const char *ip, unsigned char out[16])
{
    unsigned char v4[4];
    if (inet_pton(AF_INET, ip, v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        return 4;
    }
    if (inet_pton(AF_INET6, ip, out) != 1)
        return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(out, mapped, 12) == 0 ? 4 : 6;
}

/* Parses "addr[/bits]" into net (16 bytes) and a prefix length over those 16 bytes; 4/6, or 0. */
static int cidr_parse(const char *cidr, unsigned char net[16], long *bits)
{
    char addr[64];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (n == 0 || n >= sizeof addr)
        return 0;
    memcpy(addr, cidr, n);
    addr[n] = '\0';
    int fam = ip_parse(addr, net);
    char *end = NULL;
    long b = slash ? strtol(slash + 1, &end, 10) : (fam == 4 ? 32 : 128);
    if (!fam || (slash && (!slash[1] || *end)) || b < 0 || b > (fam == 4 ? 32 : 128))
        return 0;
    *bits = fam == 4 ? b + 96 : b;
    return fam;
}

int util_net_cidr_valid(const char *cidr)
{
    unsigned char net[16];
    long bits;
    return cidr_parse(cidr, net, &bits) != 0;
}

int util_net_cidr_match(const char *cidr, const char *ip)
{
    unsigned char net[16], host[16];
    long bits;
    int fam = cidr_parse(cidr, net, &bits);
    if (!fam || fam != ip_parse(ip, host))
        return 0;
    for (long i = 0; i < bits; i++) {
        unsigned char m = (unsigned char)(0x80 >> (i % 8));
        if ((net[i / 8] & m) != (host[i / 8] & m))
            return 0;
    }
    return 1;
}

int util_net_ip_loopback(const char *ip)
{
    return util_net_cidr_match("127.0.0.0/8", ip) || util_net_cidr_match("::1/128", ip);
}

size_t util_net_fmt_ipv4(char out[16], const unsigned char a[4])
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            out[n++] = (char)('0' + v / 100);
        if (v >= 10)
            out[n++] = (char)('0' + v / 10 % 10);
        out[n++] = (char)('0' + v % 10);
        out[n++] = i < 3 ? '.' : '\0';
    }
    return n - 1;
}
