/* workflows: GET /workflows (summaries sorted by name) and GET /workflows/{name} (the normalised
 * definition). Both are built once at load; answering is a copy and a dump. */
#include <stdio.h>

#include "kailash/api.h"
#include "kailash/engine.h"

int api_workflows_list(kreq *r)
{
    registry *reg = registry_acquire();
    json_t *list = json_array();
    for (size_t i = 0; reg && i < registry_count(reg); i++)
        json_array_append(list, exec_workflow(registry_at(reg, i))->summary);
    http_reply_json(r, 200, json_pack("{s:o}", "workflows", list));
    registry_release(reg);
    return HTTP_DONE;
}

int api_workflows_get(kreq *r)
{
    registry *reg = registry_acquire();
    executor *ex = reg ? registry_find(reg, http_req_param(r)) : NULL;
    if (ex) {
        http_reply_json(r, 200, json_incref(exec_workflow(ex)->normalized));
    } else {
        char msg[200];
        snprintf(msg, sizeof msg, "workflow '%s' not found", http_req_param(r));
        http_reply_error(r, 404, "not_found", msg, NULL);
    }
    registry_release(reg);
    return HTTP_DONE;
}
