/* openapi_components: the reusable parts of the OpenAPI document (components/schemas, responses,
 * parameters, headers): the answers' shapes of API.md, the one Error schema every error response
 * refers to, and the query and path parameters of the routes.
 *
 * They are data, not code: one row per component, its JSON text written with ' for " (so a reader
 * sees the schema, not a wall of escapes; the texts therefore hold no apostrophe), parsed when a
 * document is built. The document is built once per registry and auth config, so parsing them there
 * costs nothing that matters. A row that does not parse is a bug the unit test catches. */
#include <stdlib.h>
#include <string.h>

#include "openapi_internal.h"

typedef struct oa_component {
    const char *section; /* "schemas", "responses", "parameters", "headers" */
    const char *name;
    const char *json; /* with ' for " */
} oa_component;

static const oa_component components[] = {
    {"schemas", "Error",
     "{'type':'object',"
     "'description':'The one error shape of every error answer.',"
     "'required':['error'],"
     "'additionalProperties':false,"
     "'properties':{'error':{"
     "  'type':'object',"
     "  'required':['code','message','request_id','details'],"
     "  'properties':{"
     "    'code':{'type':'string','description':'bad_request, invalid_inputs, unauthorized, forbidden, not_found, "
     "method_not_allowed, conflict, payload_too_large, unsupported_media_type, invalid_config, rate_limited, "
     "upstream_error, overloaded, unavailable, timeout, loop_detected or internal'},"
     "    'message':{'type':'string','description':'human readable'},"
     "    'request_id':{'type':'string','description':'the X-Request-ID of the answer'},"
     "    'details':{'type':'object','description':'invalid_inputs: violations [{path, message}]; "
     "upstream_error and failed runs: node, run_id, status'}"
     "}}}}"},
    {"schemas", "Health",
     "{'type':'object',"
     "'required':['status','version','uptime_s'],"
     "'properties':{"
     "  'status':{'const':'ok'},"
     "  'version':{'type':'string'},"
     "  'uptime_s':{'type':'integer','minimum':0}"
     "}}"},
    {"schemas", "Ready",
     "{'type':'object',"
     "'required':['status','checks','workflow_errors'],"
     "'properties':{"
     "  'status':{'enum':['ready','degraded']},"
     "  'checks':{'type':'object','description':'redis, postgres, and journal or jwks when they apply','additionalProperties':{'enum':['ok','down','disabled']}},"
     "  'reasons':{'type':'object','description':'why a check is down','additionalProperties':{'type':'string'}},"
     "  'workflow_errors':{'type':'array','items':{'$ref':'#/components/schemas/WorkflowFileError'}}"
     "}}"},
    {"schemas", "WorkflowFileError",
     "{'type':'object',"
     "'required':['file','message'],"
     "'properties':{"
     "  'file':{'type':'string'},"
     "  'message':{'type':'string'}"
     "}}"},
    {"schemas", "WorkflowSummary",
     "{'type':'object',"
     "'required':['name','version','description','inputs','cache_ttl_s','nodes'],"
     "'properties':{"
     "  'name':{'type':'string'},"
     "  'version':{'type':'string'},"
     "  'description':{'type':'string'},"
     "  'inputs':{'type':'object','description':'the inputs schema of the workflow (JSON Schema), {} when it has none'},"
     "  'cache_ttl_s':{'type':['integer','null']},"
     "  'nodes':{'type':'integer','minimum':0}"
     "}}"},
    {"schemas", "WorkflowList",
     "{'type':'object',"
     "'required':['workflows'],"
     "'properties':{'workflows':{'type':'array','items':{'$ref':'#/components/schemas/WorkflowSummary'}}}}"},
    {"schemas", "WorkflowDefinition",
     "{'type':'object',"
     "'description':'the loaded definition, normalised',"
     "'required':['name','version','description','nodes','connections','gateway'],"
     "'properties':{"
     "  'name':{'type':'string'},"
     "  'version':{'type':'string'},"
     "  'description':{'type':'string'},"
     "  'nodes':{'type':'object'},"
     "  'connections':{'type':'array'},"
     "  'gateway':{'type':'object'}"
     "}}"},
    {"schemas", "Parameters",
     "{'type':'object',"
     "'description':'per-node overrides keyed by node id',"
     "'additionalProperties':{'type':'object'}}"},
    {"schemas", "RunRequest",
     "{'type':'object',"
     "'additionalProperties':false,"
     "'properties':{"
     "  'inputs':{'type':'object','description':'the inputs of the workflow, checked against its inputs schema','default':{}},"
     "  'parameters':{'$ref':'#/components/schemas/Parameters'},"
     "  'callback_url':{'type':'string','format':'uri','description':'asynchronous runs only (?mode=async or Prefer: respond-async; with a synchronous run a 400): POSTed the final run record, signed, retried with backoff; http or https, a host jobs.callback_allow_hosts allows'}"
     "}}"},
    {"schemas", "ExecuteRequest",
     "{'type':'object',"
     "'additionalProperties':false,"
     "'properties':{"
     "  'inputs':{'type':'object','description':'the inputs of the workflow; a key equal to a node id is scoped to that node','default':{}},"
     "  'parameters':{'$ref':'#/components/schemas/Parameters'},"
     "  'mode':{'enum':['sync','async','stream'],'default':'sync','description':'sync: 200 with ExecuteResult; async: 202 with ExecuteAccepted (execution_id is the run id); stream: 200 with text/event-stream, the run events ending in complete or error'}"
     "}}"},
    {"schemas", "RunResult",
     "{'type':'object',"
     "'required':['run_id','workflow','status','outputs','duration_ms'],"
     "'properties':{"
     "  'run_id':{'type':'string'},"
     "  'workflow':{'type':'string'},"
     "  'status':{'const':'completed'},"
     "  'outputs':{'type':'object'},"
     "  'duration_ms':{'type':'number'},"
     "  'results':{'type':'object','description':'?include=results: every node that ran, node id to output'},"
     "  'skipped':{'type':'array','items':{'type':'string'},'description':'?include=results: nodes a switch routed around'}"
     "}}"},
    {"schemas", "ExecuteResult",
     "{'type':'object',"
     "'required':['outputs','execution_time','workflow_id','version','run_id'],"
     "'properties':{"
     "  'outputs':{'type':'object','description':'node id to {port: value}'},"
     "  'execution_time':{'type':'number','description':'seconds'},"
     "  'workflow_id':{'type':'string'},"
     "  'version':{'type':'string'},"
     "  'run_id':{'type':'string'}"
     "}}"},
    {"schemas", "RunAccepted",
     "{'type':'object',"
     "'description':'an asynchronous run, durable before this answer; Location is its record',"
     "'required':['run_id','status','links'],"
     "'properties':{"
     "  'run_id':{'type':'string'},"
     "  'status':{'const':'queued'},"
     "  'links':{'type':'object','required':['self','events'],'properties':{"
     "    'self':{'type':'string','description':'/runs/{run_id}'},"
     "    'events':{'type':'string','description':'/runs/{run_id}/events'}}}"
     "}}"},
    {"schemas", "ExecuteAccepted",
     "{'type':'object',"
     "'description':'mode async, as the Kailash SDK answers it; execution_id is the run id, usable with /runs/{run_id}',"
     "'required':['execution_id','status'],"
     "'properties':{"
     "  'execution_id':{'type':'string'},"
     "  'status':{'const':'pending'}"
     "}}"},
    {"schemas", "CancelAccepted",
     "{'type':'object',"
     "'required':['run_id','cancel','links'],"
     "'properties':{"
     "  'run_id':{'type':'string'},"
     "  'cancel':{'const':'accepted'},"
     "  'links':{'type':'object','required':['self'],'properties':{'self':{'type':'string','description':'/runs/{run_id}'}}}"
     "}}"},
    {"schemas", "RunEvent",
     "{'type':'object',"
     "'description':'the data: line of one Server-Sent Event (one JSON object)',"
     "'required':['run_id','ts'],"
     "'properties':{"
     "  'run_id':{'type':'string'},"
     "  'ts':{'description':'when it happened'},"
     "  'node':{'type':'string','description':'node events: the node id'},"
     "  'type':{'type':'string','description':'node events: the node type'}"
     "}}"},
    {"schemas", "EventStream",
     "{'type':'string',"
     "'description':'Server-Sent Events. event: is one of run_started, node_started, node_completed, node_skipped, "
     "node_failed, run_completed, run_failed (/execute in stream mode: the SDK names, ending in complete or error); "
     "data: is one JSON object (components/schemas/RunEvent); id: lines allow Last-Event-ID resumption. The stream "
     "ends after the last run event; a client that connects after the run ended gets its events from the start for "
     "10 minutes (after Last-Event-ID when given), then only a final event made from the run record.'}"},
    {"schemas", "RunRecord",
     "{'type':'object',"
     "'required':['run_id','workflow','version','status','inputs','outputs','error','cache','principal','request_id','created_at','started_at','finished_at','duration_ms'],"
     "'properties':{"
     "  'run_id':{'type':'string'},"
     "  'workflow':{'type':'string'},"
     "  'version':{'type':['string','null'],'description':'null for an async run that never started'},"
     "  'status':{'enum':['queued','running','completed','failed','timeout','cancelled'],'description':'queued and running: an async run not finished yet'},"
     "  'inputs':{'type':'object'},"
     "  'outputs':{'type':['object','null']},"
     "  'error':{'oneOf':[{'type':'null'},{'type':'object','required':['code','message'],'properties':{'code':{'type':'string'},'message':{'type':'string'},'node':{'type':['string','null'],'description':'null when the run failed outside any node'}}}]},"
     "  'cache':{'enum':['MISS','BYPASS','HIT-L1','HIT-L2']},"
     "  'principal':{'type':'string'},"
     "  'request_id':{'type':['string','null']},"
     "  'created_at':{'type':'string','format':'date-time'},"
     "  'started_at':{'type':['string','null'],'format':'date-time','description':'null while queued'},"
     "  'finished_at':{'type':['string','null'],'format':'date-time','description':'null while queued or running'},"
     "  'duration_ms':{'type':['number','null'],'description':'null while queued or running'}"
     "}}"},
    {"schemas", "RunList",
     "{'type':'object',"
     "'required':['runs','next_cursor'],"
     "'properties':{"
     "  'runs':{'type':'array','items':{'$ref':'#/components/schemas/RunRecord'}},"
     "  'next_cursor':{'type':['string','null']}"
     "}}"},
    {"schemas", "Purged",
     "{'type':'object',"
     "'required':['purged'],"
     "'properties':{'purged':{'type':'integer','minimum':0}}}"},
    {"schemas", "Reloaded",
     "{'type':'object',"
     "'required':['reloaded','workflows','errors'],"
     "'properties':{"
     "  'reloaded':{'const':true},"
     "  'workflows':{'type':'integer','minimum':0},"
     "  'errors':{'type':'array','items':{'$ref':'#/components/schemas/WorkflowFileError'}}"
     "}}"},
    {"responses", "BadRequest",
     "{'description':'bad_request (not JSON, not an object, an unknown key, a wrong type, a bad query value or X-Kailash-Hops header) or invalid_inputs (details.violations)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "Unauthorized",
     "{'description':'unauthorized: credentials missing or invalid',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}},"
     "'headers':{'WWW-Authenticate':{'$ref':'#/components/headers/WWW-Authenticate'}}}"},
    {"responses", "Forbidden",
     "{'description':'forbidden: the roles or attributes of the caller do not allow this',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "NotFound",
     "{'description':'not_found: unknown route, workflow or run',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "MethodNotAllowed",
     "{'description':'method_not_allowed: a method the path does not take (the Allow header lists those it does)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}},"
     "'headers':{'Allow':{'description':'the methods the path takes','schema':{'type':'string'}}}}"},
    {"responses", "Conflict",
     "{'description':'conflict: cancelling a run that has already finished (details.run_id)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "PayloadTooLarge",
     "{'description':'payload_too_large: Content-Length over max_body_bytes',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "UnsupportedMediaType",
     "{'description':'unsupported_media_type: a body that is not application/json',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "InvalidConfig",
     "{'description':'invalid_config: the new config or workflows do not load; everything keeps serving as before',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "TooManyRequests",
     "{'description':'rate_limited',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}},"
     "'headers':{'Retry-After':{'$ref':'#/components/headers/Retry-After'},'RateLimit':{'$ref':'#/components/headers/RateLimit'},'RateLimit-Policy':{'$ref':'#/components/headers/RateLimit-Policy'}}}"},
    {"responses", "Internal",
     "{'description':'internal: logged with the request id',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "UpstreamError",
     "{'description':'upstream_error: the upstream of a node failed (details.node)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "Unavailable",
     "{'description':'overloaded (the queue of the workflow is full, with Retry-After) or unavailable (a required dependency is down: for an asynchronous run, the run store that keeps it; for /runs, the run store)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}},"
     "'headers':{'Retry-After':{'$ref':'#/components/headers/Retry-After'}}}"},
    {"responses", "Timeout",
     "{'description':'timeout: the run passed its timeout_ms',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"responses", "LoopDetected",
     "{'description':'loop_detected: the request passed through more gateways than upstream.max_hops (X-Kailash-Hops)',"
     "'content':{'application/json':{'schema':{'$ref':'#/components/schemas/Error'}}}}"},
    {"parameters", "WorkflowName",
     "{'name':'name',"
     "'in':'path',"
     "'required':true,"
     "'description':'the name of a loaded workflow',"
     "'schema':{'type':'string','pattern':'^[A-Za-z0-9_.-]{1,128}$'}}"},
    {"parameters", "RunId",
     "{'name':'run_id',"
     "'in':'path',"
     "'required':true,"
     "'description':'a run id (UUIDv7)',"
     "'schema':{'type':'string'}}"},
    {"parameters", "Include",
     "{'name':'include',"
     "'in':'query',"
     "'required':false,"
     "'description':'results: add results (every node that ran) and skipped',"
     "'schema':{'enum':['results']}}"},
    {"parameters", "Mode",
     "{'name':'mode',"
     "'in':'query',"
     "'required':false,"
     "'description':'sync (the default): 200 with the outputs; async: 202 with RunAccepted once the run is durable. It wins over Prefer',"
     "'schema':{'enum':['sync','async'],'default':'sync'}}"},
    {"parameters", "Prefer",
     "{'name':'Prefer',"
     "'in':'header',"
     "'required':false,"
     "'description':'respond-async (RFC 7240) runs asynchronously, as ?mode=async does, unless ?mode is given',"
     "'schema':{'type':'string'},"
     "'example':'respond-async'}"},
    {"parameters", "LastEventId",
     "{'name':'Last-Event-ID',"
     "'in':'header',"
     "'required':false,"
     "'description':'the id: of the last event received: the stream resumes after it',"
     "'schema':{'type':'string'}}"},
    {"parameters", "RunsWorkflow",
     "{'name':'workflow',"
     "'in':'query',"
     "'required':false,"
     "'description':'only runs of this workflow',"
     "'schema':{'type':'string'}}"},
    {"parameters", "RunsStatus",
     "{'name':'status',"
     "'in':'query',"
     "'required':false,"
     "'description':'only runs with this status',"
     "'schema':{'enum':['queued','running','completed','failed','timeout','cancelled']}}"},
    {"parameters", "RunsLimit",
     "{'name':'limit',"
     "'in':'query',"
     "'required':false,"
     "'description':'page size; more than 200 answers 200',"
     "'schema':{'type':'integer','minimum':1,'default':50}}"},
    {"parameters", "RunsCursor",
     "{'name':'cursor',"
     "'in':'query',"
     "'required':false,"
     "'description':'next_cursor of the previous page',"
     "'schema':{'type':'string'}}"},
    {"headers", "X-Request-ID",
     "{'description':'the one the client sent, if it is 1-128 characters of [A-Za-z0-9._:-], else a new one',"
     "'schema':{'type':'string'}}"},
    {"headers", "X-Run-ID",
     "{'description':'the id of the run',"
     "'schema':{'type':'string'}}"},
    {"headers", "X-Cache",
     "{'description':'HIT-L1, HIT-L2, MISS or BYPASS',"
     "'schema':{'enum':['HIT-L1','HIT-L2','MISS','BYPASS']}}"},
    {"headers", "Server-Timing",
     "{'description':'at least total;dur=<ms>',"
     "'schema':{'type':'string'}}"},
    {"headers", "Location",
     "{'description':'/runs/{run_id}: the record of the accepted run',"
     "'schema':{'type':'string'}}"},
    {"headers", "Preference-Applied",
     "{'description':'respond-async when the request asked for it with Prefer (RFC 7240)',"
     "'schema':{'const':'respond-async'}}"},
    {"headers", "Retry-After",
     "{'description':'whole seconds, at least 1',"
     "'schema':{'type':'integer','minimum':1}}"},
    {"headers", "WWW-Authenticate",
     "{'description':'the challenge',"
     "'schema':{'type':'string'}}"},
    {"headers", "RateLimit",
     "{'description':'IETF draft: \\'default\\';r=N;t=S',"
     "'schema':{'type':'string'}}"},
    {"headers", "RateLimit-Policy",
     "{'description':'IETF draft: \\'default\\';q=N;w=60',"
     "'schema':{'type':'string'}}"},
};

/* text with every ' turned into ", parsed; NULL when it does not parse (a bug in the table). */
static json_t *oa_parse_quoted(const char *text)
{
    char *s = strdup(text);
    if (!s)
        return NULL;
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t jerr;
    json_t *v = json_loads(s, 0, &jerr);
    free(s);
    return v;
}

json_t *openapi_components(void)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < sizeof components / sizeof components[0]; i++) {
        const oa_component *c = &components[i];
        json_t *section = json_object_get(out, c->section);
        if (!section && json_object_set_new(out, c->section, section = json_object()) != 0)
            goto err;
        json_t *v = oa_parse_quoted(c->json);
        if (!v || json_object_set_new(section, c->name, v) != 0)
            goto err;
    }
    return out;
err:
    json_decref(out);
    return NULL;
}
