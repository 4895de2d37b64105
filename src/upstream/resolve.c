/* resolve: host names resolved off the I/O loops (see upstream.h, "the resolver"), for any client
 * that connects to a name: the plain HTTP path now, Redis and Postgres hosts later (hiredis 0.14 and
 * libpq would resolve synchronously, on the loop, otherwise).
 *
 * A small table of names, each with up to two addresses (the first two getaddrinfo gives, in its
 * order of preference) and an expiry. A lookup that finds a fresh entry costs a lock and a few
 * string compares; one that does not marks the name pending and wakes the resolver thread (started
 * at the first such lookup). A caller that waits (upstream_resolve) hangs a wait record, embedded in
 * itself, on the name's slot; when the thread has the answer, each wait is posted to its own loop.
 * A wait whose post is refused (its loop is stopping) stays on the slot, marked lost, and the loop's
 * stop hook answers it (up_resolve_sweep). A name that does not resolve is remembered as such for
 * the same time. When the table is full, the entry used least recently gives way; one with waits
 * never does. */
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "upstream_internal.h"

#define RESOLVE_SLOTS 64
#define RESOLVE_TTL_MS 60000.0 /* libcurl's DNS cache time */

enum { R_EMPTY, R_PENDING, R_DONE };
enum { W_IDLE, W_WAITING, W_POSTED, W_LOST }; /* up_resolve_wait.state */

typedef struct r_slot {
    char host[256];
    int state;
    int n; /* addresses (0: did not resolve) */
    struct sockaddr_storage addr[2];
    socklen_t len[2];
    double expires_ms, used_ms;
    up_resolve_wait *waits; /* callers waiting for this name */
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
static void r_answer_waits_locked(r_slot *s);

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
            r_answer_waits_locked(s);
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
        if (s->state == R_DONE && !s->waits && (!best || s->used_ms < best->used_ms))
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

static void r_fill(const r_slot *s, long port, up_addrs *out)
{
    out->n = s->n;
    memcpy(out->addr, s->addr, sizeof out->addr);
    memcpy(out->len, s->len, sizeof out->len);
    for (int i = 0; i < s->n; i++)
        r_set_port(&out->addr[i], port);
}

/* 1 fresh (out filled), -1 fresh and unresolvable, 0 not known: its resolution is started. *slot:
 * the name's slot when there is one. */
static int r_lookup_locked(const char *host, long port, up_addrs *out, r_slot **slot)
{
    double now = util_now_ms();
    r_slot *s = r_find_locked(host);
    if (s && s->state == R_DONE && now < s->expires_ms) {
        s->used_ms = now;
        r_fill(s, port, out);
        *slot = s;
        return s->n > 0 ? 1 : -1;
    }
    if (!s || s->state == R_DONE) { /* unknown, or expired: resolve (again) */
        r_slot *fresh = s ? s : r_victim_locked();
        r_request_locked(fresh, host);
        s = fresh && fresh->state == R_PENDING ? fresh : NULL;
    }
    *slot = s;
    return 0;
}

int upstream_resolve_cached(const char *host, long port, up_addrs *out)
{
    if (strlen(host) >= sizeof g_slots[0].host)
        return -1;
    r_slot *s;
    pthread_mutex_lock(&g_mu);
    int rc = r_lookup_locked(host, port, out, &s);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* The wait's answer, on its loop. */
static void r_deliver(void *ud)
{
    up_resolve_wait *w = ud;
    pthread_mutex_lock(&g_mu);
    w->state = W_IDLE;
    pthread_mutex_unlock(&g_mu);
    w->fn(w, &w->result);
}

/* The thread has s's answer: each wait goes to its loop; one its loop refuses stays, lost. */
static void r_answer_waits_locked(r_slot *s)
{
    up_resolve_wait **p = &s->waits;
    while (*p) {
        up_resolve_wait *w = *p;
        r_fill(s, w->port, &w->result);
        if (w->state == W_WAITING && ioloop_post(w->io, r_deliver, w) == 0) {
            w->state = W_POSTED;
            *p = w->next;
            w->next = NULL;
            continue;
        }
        w->state = W_LOST;
        p = &w->next;
    }
}

int upstream_resolve(ioloop *io, const char *host, long port, up_resolve_wait *w, up_resolve_fn fn, up_addrs *out)
{
    if (strlen(host) >= sizeof w->host)
        return -1;
    r_slot *s;
    pthread_mutex_lock(&g_mu);
    int rc = r_lookup_locked(host, port, out, &s);
    if (rc != 0) {
        pthread_mutex_unlock(&g_mu);
        return 1; /* fresh: resolved, or known not to (out->n == 0) */
    }
    if (!s) { /* every slot pends: no room to wait on */
        pthread_mutex_unlock(&g_mu);
        out->n = 0;
        return 1;
    }
    *w = (up_resolve_wait){.io = io, .port = port, .fn = fn, .ud = w->ud, .state = W_WAITING, .next = s->waits};
    snprintf(w->host, sizeof w->host, "%s", host);
    s->waits = w;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static int r_unlink_locked(up_resolve_wait *w)
{
    r_slot *s = r_find_locked(w->host);
    for (up_resolve_wait **p = s ? &s->waits : NULL; p && *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            w->next = NULL;
            return 1;
        }
    return 0;
}

int upstream_resolve_cancel(up_resolve_wait *w)
{
    pthread_mutex_lock(&g_mu);
    int posted = w->state == W_POSTED;
    if (!posted) {
        r_unlink_locked(w);
        w->state = W_IDLE;
    }
    pthread_mutex_unlock(&g_mu);
    return !posted;
}

/* io is stopping (its stop hook): every wait of its still on a slot is answered now, unresolved. */
void up_resolve_sweep(ioloop *io)
{
    up_resolve_wait *mine = NULL;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < RESOLVE_SLOTS; i++)
        for (up_resolve_wait **p = &g_slots[i].waits; *p;) {
            up_resolve_wait *w = *p;
            if (w->io != io) {
                p = &w->next;
                continue;
            }
            *p = w->next;
            w->next = mine;
            w->state = W_IDLE;
            mine = w;
        }
    pthread_mutex_unlock(&g_mu);
    while (mine) {
        up_resolve_wait *next = mine->next;
        mine->next = NULL;
        mine->fn(mine, &(up_addrs){0});
        mine = next;
    }
}
