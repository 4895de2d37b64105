-- Run records (API.md "Run records"); one row per run, its columns the record's keys, so a batch of
-- records is one json_populate_recordset(NULL::runs, ...) upsert.
-- Newest first is run_id DESC (run ids are UUIDv7, time-ordered); GET /runs filters by workflow,
-- status or principal and pages with run_id < cursor, so each filter has an index ending in run_id.
CREATE TABLE runs (
    run_id      uuid PRIMARY KEY,
    workflow    text,
    version     text,
    status      text,
    inputs      jsonb,
    outputs     jsonb,
    error       jsonb,
    cache       text,
    principal   text,
    request_id  text,
    created_at  timestamptz,
    started_at  timestamptz,
    finished_at timestamptz,
    duration_ms double precision
);
CREATE INDEX runs_workflow_run_id ON runs (workflow, run_id);
CREATE INDEX runs_status_run_id ON runs (status, run_id);
CREATE INDEX runs_principal_run_id ON runs (principal, run_id);
