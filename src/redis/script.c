/* script: Lua scripts called by EVALSHA (redis.h). The SHA-1 is computed here once, so a call sends
 * 40 bytes instead of the script. A server that does not know the script (it restarted, SCRIPT
 * FLUSH, a new replica) answers NOSCRIPT; the call then sends EVAL with the text and the same
 * arguments, once, on the same connection, which also loads it, and that reply is the caller's.
 * The caller sees one call and one reply either way.
 *
 * Each call copies its arguments into one allocation (the command vector for EVALSHA, reused for
 * the EVAL), since the caller's are only valid during redis_script_call. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"

struct redis_script {
    char sha[41];
    size_t len;
    char *lua;
};

redis_script *redis_script_new(const char *lua)
{
    if (!lua)
        return NULL;
    redis_script *s = calloc(1, sizeof *s);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!s)
        return NULL;
    s->len = strlen(lua);
    s->lua = malloc(s->len + 1);
    if (!s->lua || !EVP_Digest(lua, s->len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        redis_script_free(s);
        return NULL;
    }
    memcpy(s->lua, lua, s->len + 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    return s;
}

void redis_script_free(redis_script *s)
{
    if (!s)
        return;
    free(s->lua);
    free(s);
}

/* One call: argv/lens point into the same block, after the struct. */
typedef struct script_call {
    redis_script *s;
    redis_reply_fn done;
    void *ud;
    int argc;
    int retried;
    const char **argv;
    size_t *lens;
    char nkeys[16];
} script_call;

static script_call *script_call_new(redis_script *s, int nkeys, int nargs, const char **args, const size_t *lens)
{
    size_t bytes = 0;
    for (int i = 0; i < nargs; i++)
        bytes += lens ? lens[i] : strlen(args[i]);
    int argc = 3 + nargs;
    size_t head = sizeof(script_call) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    script_call *k = malloc(head + bytes + (size_t)nargs);
    if (!k)
        return NULL;
    k->s = s;
    k->argc = argc;
    k->retried = 0;
    k->argv = (const char **)(k + 1);
    k->lens = (size_t *)(k->argv + argc);
    char *p = (char *)(k->lens + argc);
    snprintf(k->nkeys, sizeof k->nkeys, "%d", nkeys);
    k->argv[0] = "EVALSHA";
    k->lens[0] = 7;
    k->argv[1] = s->sha;
    k->lens[1] = 40;
    k->argv[2] = k->nkeys;
    k->lens[2] = strlen(k->nkeys);
    for (int i = 0; i < nargs; i++) {
        size_t n = lens ? lens[i] : strlen(args[i]);
        memcpy(p, args[i], n);
        p[n] = '\0';
        k->argv[3 + i] = p;
        k->lens[3 + i] = n;
        p += n + 1;
    }
    return k;
}

static void script_on_reply(redisReply *reply, void *ud)
{
    script_call *k = ud;
    if (reply && reply->type == REDIS_REPLY_ERROR && !k->retried && reply->str &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        k->retried = 1;
        k->argv[0] = "EVAL";
        k->lens[0] = 4;
        k->argv[1] = k->s->lua;
        k->lens[1] = k->s->len;
        if (redis_conn_resend(k->argc, k->argv, k->lens, script_on_reply, k) == 0)
            return;
        reply = NULL; /* the connection is going: the call failed */
    }
    redis_reply_fn done = k->done;
    void *cud = k->ud;
    free(k);
    done(reply, cud);
}

int redis_script_call(redis_script *s, int nkeys, int nargs, const char **args, const size_t *lens, redis_reply_fn done,
                      void *ud)
{
    if (!s || !done || nkeys < 0 || nargs < nkeys || (nargs > 0 && !args))
        return -1;
    script_call *k = script_call_new(s, nkeys, nargs, args, lens);
    if (!k)
        return -1;
    k->done = done;
    k->ud = ud;
    if (redis_command(k->argc, k->argv, k->lens, script_on_reply, k) != 0) {
        free(k);
        return -1;
    }
    return 0;
}
