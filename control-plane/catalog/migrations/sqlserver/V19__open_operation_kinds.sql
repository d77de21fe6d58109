-- V19: operation kinds are the names of registered workflows
-- (workflows::registry), an open set: adding a workflow must not need a
-- catalog migration, so the kind is checked for its shape only (a lowercase
-- letter, then lowercase letters or '_'; a binary collation, so the ranges
-- mean ASCII lowercase). An operation may have a parent (a fleet-level
-- operation fanning out to one child per tenant); its index is in V20,
-- a batch of its own.
ALTER TABLE catalog.Operations DROP CONSTRAINT CK_Operations_Kind;

ALTER TABLE catalog.Operations ADD
    ParentId uniqueidentifier NULL
        CONSTRAINT FK_Operations_Parent REFERENCES catalog.Operations (Id),
    CONSTRAINT CK_Operations_KindShape CHECK (
        LEN(Kind) BETWEEN 1 AND 20
        AND Kind COLLATE Latin1_General_BIN LIKE N'[a-z]%'
        AND Kind COLLATE Latin1_General_BIN NOT LIKE N'%[^a-z_]%');
