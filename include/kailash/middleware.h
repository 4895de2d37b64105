/* middleware: the ordered chain every request passes (src/middleware/chain.c holds the table).
 * A step has before(r) (return 0 to go on, or answer with http_reply_* and return 1) and optionally
 * after(r), called once when the response is handed to the client. Steps run in table order; after()
 * steps run for every request whose before() ran, including ones answered early. */
#ifndef KAILASH_MIDDLEWARE_H
#define KAILASH_MIDDLEWARE_H

#include "kailash/http.h"

typedef struct mw_step {
    const char *name;
    int (*before)(kreq *r);
    void (*after)(kreq *r);
} mw_step;

/* Runs every before() in order; 1 if one answered. */
int mw_before(kreq *r);
/* Runs every after(). */
void mw_after(kreq *r);

/* The steps (one file each). */
int mw_request_id_before(kreq *r);
int mw_hops_before(kreq *r);
void mw_logging_after(kreq *r);

#endif
