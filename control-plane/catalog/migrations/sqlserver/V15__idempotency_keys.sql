-- V15: Idempotency-Key of POST requests: the first answer of each (subject,
-- key), replayed to a retry for 24 hours. The key is stored hashed with the
-- subject; the answer is the API's own JSON (never tenant data).
-- Counterpart of migrations/postgres/V4__idempotency_keys.sql.
CREATE TABLE catalog.IdempotencyKeys (
    KeyHash     nvarchar(64)   NOT NULL -- nvarchar: compared with nvarchar parameters
                CONSTRAINT PK_IdempotencyKeys PRIMARY KEY,
    RequestHash nvarchar(64)   NOT NULL,
    ClaimToken  uniqueidentifier NOT NULL, -- a retried claim knows its own
    Status      int            NULL, -- NULL while the first request runs
    Response    varbinary(max) NULL,
    CreatedAt   datetime2(6)   NOT NULL
                CONSTRAINT DF_IdempotencyKeys_CreatedAt DEFAULT SYSUTCDATETIME()
);
CREATE INDEX IX_IdempotencyKeys_CreatedAt ON catalog.IdempotencyKeys (CreatedAt);
