/* jobs_redis_cancel: the subscriber thread. DELETE /runs/{id} on any instance PUBLISHes the run id
 * on kailash:jobs:cancel (and sets kailash:jobs:cancelled:<id> for an hour, which a consumer reads
 * before it dispatches a job, for a job no one has taken yet); this thread hears every such message
 * on a connection of its own (a subscribed connection takes no other command) and hands the id to
 * jobs_cancel_local, which cancels the run if it is here. Messages sent while this thread was
 * reconnecting are missed: the key still stops the job if it has not started. */
#include <string.h>

#include "jobs_redis_internal.h"
#include "kailash/log.h"

#define RQ_LISTEN_SLICE_MS 200

static int subscribe(redisContext *c)
{
    const char *argv[] = {"SUBSCRIBE", RQ_CHANNEL};
    if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK)
        return -1;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    return 0;
}

static void on_message(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
        return; /* the subscription's confirmation */
    if (r->element[2]->len == 36 && strlen(r->element[2]->str) == 36)
        jobs_cancel_local(r->element[2]->str);
}

/* Listens until the connection breaks or a stop. */
static void listen_on(redisContext *c)
{
    while (!atomic_load(&RQ.stop)) {
        redisReply *r;
        if (rq_recv_for(c, RQ_LISTEN_SLICE_MS, &r) != 0)
            return;
        if (r)
            on_message(r);
        freeReplyObject(r);
    }
}

void *rq_cancel_main(void *arg)
{
    (void)arg;
    int backoff = 0;
    while (!atomic_load(&RQ.stop)) {
        redisContext *c = rq_conn_backoff(&backoff);
        if (!c)
            break;
        if (subscribe(c) == 0)
            listen_on(c);
        redisFree(c);
        if (!atomic_load(&RQ.stop))
            rq_sleep(100); /* a connection that breaks at once must not spin */
    }
    return NULL;
}
