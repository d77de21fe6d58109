-- V20: children of an operation, found by their parent (see V19).
CREATE INDEX IX_Operations_Parent ON catalog.Operations (ParentId) WHERE ParentId IS NOT NULL;
