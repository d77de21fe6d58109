-- Idempotency-Key of POST requests: the first answer of each (subject, key), replayed to a
-- retry for 24 hours. The key is stored hashed with the subject; the answer is the API's own
-- JSON (never tenant data: investigations keep no rows here).
CREATE TABLE idempotency_keys (
    key_hash     text        PRIMARY KEY,
    request_hash text        NOT NULL,
    claim        uuid        NOT NULL, -- the claiming call's token: a retried claim knows its own
    status       integer,             -- NULL while the first request runs
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
