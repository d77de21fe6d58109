-- Operation kinds are the names of registered workflows (workflows::registry), an open set:
-- adding a workflow must not need a catalog migration, so the kind is checked for its shape
-- only. An operation may have a parent (a fleet-level operation fanning out to one child per
-- tenant).
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_shape
    CHECK (kind ~ '^[a-z][a-z_]{0,19}$');
ALTER TABLE operations ADD COLUMN parent_id uuid REFERENCES operations (id);
CREATE INDEX operations_parent ON operations (parent_id) WHERE parent_id IS NOT NULL;
