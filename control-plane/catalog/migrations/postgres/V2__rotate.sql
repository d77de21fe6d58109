-- Credential rotation is an operation kind of its own.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('onboard', 'offboard', 'rotate'));
-- The scheduler's question: when did each tenant last get new credentials?
CREATE INDEX operations_tenant_finished ON operations (tenant_id, finished_at)
    WHERE state IN ('succeeded', 'failed');
