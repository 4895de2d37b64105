/* workflows: GET /workflows (summaries sorted by name) and GET /workflows/{name} (the normalised
 * definition). Both are built once at load; answering is a copy and a dump. With authentication on
 * the list shows only the workflows whose gateway.access roles the caller has, as the auth step
 * would let it reach them one by one. */
#include <stdio.h>

#include "kailash/api.h"
#include "kailash/auth.h"
#include "kailash/engine.h"

int api_workflows_list(kreq *r)
{
    registry *reg = registry_acquire();
    json_t *list = json_array();
    int enforce = auth_ctx_enabled(auth_ctx_current());
    const auth_principal *who = http_req_principal(r);
    char msg[8];
    for (size_t i = 0; reg && i < registry_count(reg); i++) {
        const workflow *wf = exec_workflow(registry_at(reg, i));
        if (!enforce || auth_access_roles(wf, who, msg, sizeof msg) == 0)
            json_array_append(list, wf->summary);
    }
    http_reply_json(r, 200, json_pack("{s:o}", "workflows", list));
    registry_release(reg);
    return HTTP_DONE;
}

/* The workflow was found before the chain (api_run_resolve), so the auth step could check its roles. */
int api_workflows_get(kreq *r)
{
    const workflow *wf = http_req_workflow_def(r);
    http_reply_json(r, 200, json_incref(wf->normalized));
    return HTTP_DONE;
}
