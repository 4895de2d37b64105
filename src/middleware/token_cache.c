/* token_cache: each thread's memory of the bearer tokens it has verified, so a client that sends the
 * same token on every request pays for one signature check, not one per request (an RS256 verify
 * costs about as much CPU as the rest of a one-node run).
 *
 * A verdict is keyed by the token's SHA-256 and holds for the auth ctx (by its generation number:
 * a reload is a miss) and the JWKS URL key set it was made with (a key rotation is a miss; the entry
 * holds a reference, so a freed set's address can never be mistaken for a new one's) until the token's exp plus the leeway. Only
 * successes are kept: a refused token is checked again each time. Direct-mapped and per thread: no
 * lock, no shared cache line, a bounded size (CACHE_SLOTS per thread); a collision just evicts. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"

#define CACHE_SLOTS 512 /* a power of two */

typedef struct verdict {
    unsigned char digest[32];
    unsigned long long ctx_gen;
    jwt_keyset *remote; /* a reference, or NULL */
    double until_s;
    auth_principal *who; /* a reference; NULL: the slot is empty */
} verdict;

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local verdict *t_slots;

static void verdict_clear(verdict *v)
{
    auth_principal_release(v->who);
    if (v->remote)
        jwt_keyset_release(v->remote);
    memset(v, 0, sizeof *v);
}

static void slots_free(void *p)
{
    verdict *s = p;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        verdict_clear(&s[i]);
    free(s);
}

static void key_make(void)
{
    pthread_key_create(&g_key, slots_free);
}

static verdict *slot_for(const unsigned char *digest, int create)
{
    if (!t_slots && create) {
        pthread_once(&g_once, key_make);
        if ((t_slots = calloc(CACHE_SLOTS, sizeof *t_slots)))
            pthread_setspecific(g_key, t_slots); /* freed when the thread ends */
    }
    if (!t_slots)
        return NULL;
    uint32_t h;
    memcpy(&h, digest, sizeof h);
    return &t_slots[h & (CACHE_SLOTS - 1)];
}

auth_principal *auth_token_cache_get(unsigned long long ctx_gen, const jwt_keyset *remote, const unsigned char digest[32],
                                     double now_s)
{
    verdict *v = slot_for(digest, 0);
    if (!v || !v->who || memcmp(v->digest, digest, 32) != 0 || v->ctx_gen != ctx_gen || v->remote != remote)
        return NULL;
    if (now_s >= v->until_s) {
        verdict_clear(v);
        return NULL;
    }
    auth_principal_retain(v->who);
    return v->who;
}

void auth_token_cache_put(unsigned long long ctx_gen, jwt_keyset *remote, const unsigned char digest[32], double until_s,
                          auth_principal *who)
{
    verdict *v = slot_for(digest, 1);
    if (!v)
        return;
    verdict_clear(v);
    memcpy(v->digest, digest, 32);
    v->ctx_gen = ctx_gen;
    if (remote)
        jwt_keyset_retain(remote);
    v->remote = remote;
    v->until_s = until_s;
    auth_principal_retain(who);
    v->who = who;
}
