/* http_resolve: host names for the plain path (see http_common.h), resolved off the I/O loops.
 *
 * A small table of names, each with up to two addresses (the first two getaddrinfo gives, in its
 * order of preference) and an expiry. A lookup that finds a fresh entry costs a lock and a few
 * string compares; one that does not marks the name pending, wakes the resolver thread (started at
 * the first such lookup) and answers 0, so that attempt goes through libcurl, which resolves names
 * itself. A name that does not resolve is remembered as such for the same time (libcurl then reports
 * the failure). When the table is full, the entry used least recently gives way. */
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "http_common.h"

#define RESOLVE_SLOTS 64
#define RESOLVE_TTL_MS 60000.0 /* libcurl's DNS cache time */

enum { R_EMPTY, R_PENDING, R_DONE };

typedef struct r_slot {
    char host[256];
    int state;
    int n; /* addresses (0: did not resolve) */
    struct sockaddr_storage addr[2];
    socklen_t len[2];
    double expires_ms, used_ms;
} r_slot;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static r_slot g_slots[RESOLVE_SLOTS];
static int g_started;

/* ---- the resolver thread ---- */

static r_slot *r_next_pending_locked(void)
{
    for (size_t i = 0; i < RESOLVE_SLOTS; i++)
        if (g_slots[i].state == R_PENDING)
            return &g_slots[i];
    return NULL;
}

/* Resolves host into s's address fields (called without the lock, on copies). */
static int r_resolve(const char *host, struct sockaddr_storage addr[2], socklen_t len[2])
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return 0;
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < 2; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof addr[0])
            continue;
        memcpy(&addr[n], ai->ai_addr, ai->ai_addrlen);
        len[n++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return n;
}

static void *r_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        r_slot *s = r_next_pending_locked();
        if (!s) {
            pthread_cond_wait(&g_cv, &g_mu);
            continue;
        }
        char host[sizeof s->host];
        memcpy(host, s->host, sizeof host);
        pthread_mutex_unlock(&g_mu);
        struct sockaddr_storage addr[2];
        socklen_t len[2];
        int n = r_resolve(host, addr, len);
        pthread_mutex_lock(&g_mu);
        if (s->state == R_PENDING && strcmp(s->host, host) == 0) { /* still the same name */
            memcpy(s->addr, addr, sizeof addr);
            memcpy(s->len, len, sizeof len);
            s->n = n;
            s->state = R_DONE;
            s->expires_ms = util_now_ms() + RESOLVE_TTL_MS;
        }
    }
    return NULL;
}

/* Starts the thread once; it takes no signals (the daemon's main thread handles them). */
static int r_start_locked(void)
{
    if (g_started)
        return 0;
    pthread_t t;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, NULL, r_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    pthread_detach(t);
    g_started = 1;
    return 0;
}

/* ---- lookups ---- */

static r_slot *r_find_locked(const char *host)
{
    for (size_t i = 0; i < RESOLVE_SLOTS; i++)
        if (g_slots[i].state != R_EMPTY && strcmp(g_slots[i].host, host) == 0)
            return &g_slots[i];
    return NULL;
}

/* An empty slot, else the one used least recently (never a pending one). NULL when all pend. */
static r_slot *r_victim_locked(void)
{
    r_slot *best = NULL;
    for (size_t i = 0; i < RESOLVE_SLOTS; i++) {
        r_slot *s = &g_slots[i];
        if (s->state == R_EMPTY)
            return s;
        if (s->state == R_DONE && (!best || s->used_ms < best->used_ms))
            best = s;
    }
    return best;
}

static void r_request_locked(r_slot *s, const char *host)
{
    if (!s && !(s = r_victim_locked()))
        return;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->state = R_PENDING;
    s->n = 0;
    s->used_ms = util_now_ms();
    if (r_start_locked() == 0)
        pthread_cond_signal(&g_cv);
    else
        s->state = R_EMPTY;
}

static void r_set_port(struct sockaddr_storage *a, long port)
{
    if (a->ss_family == AF_INET)
        ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
}

int http_resolve(const char *host, long port, struct sockaddr_storage *a, socklen_t *alen, struct sockaddr_storage *b,
                 socklen_t *blen)
{
    if (strlen(host) >= sizeof g_slots[0].host)
        return 0;
    double now = util_now_ms();
    int n = 0;
    pthread_mutex_lock(&g_mu);
    r_slot *s = r_find_locked(host);
    if (s && s->state == R_DONE && now < s->expires_ms) {
        s->used_ms = now;
        n = s->n;
        *a = s->addr[0];
        *alen = s->len[0];
        *b = s->addr[1];
        *blen = n > 1 ? s->len[1] : 0;
    } else if (!s || s->state == R_DONE) /* unknown, or expired: resolve (again) */
        r_request_locked(s, host);
    pthread_mutex_unlock(&g_mu);
    if (n > 0)
        r_set_port(a, port);
    if (n > 1)
        r_set_port(b, port);
    return n;
}
