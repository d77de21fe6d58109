-- V25: a schema's objects are kept once per fingerprint, not once per tenant
-- (counterpart of migrations/postgres/V10__schema_fingerprints.sql). Every
-- tenant on one release has the same schema, object for object (about 20 KB
-- of lines); tenants refer to their baseline's fingerprint, whose objects
-- never change (the fingerprint is their hash).
CREATE TABLE catalog.SchemaFingerprints (
    Fingerprint nvarchar(64)  NOT NULL CONSTRAINT PK_SchemaFingerprints PRIMARY KEY,
    Objects     nvarchar(max) NOT NULL CONSTRAINT CK_SchemaFingerprints_Objects CHECK (ISJSON(Objects) = 1),
    RecordedAt  datetime2(6)  NOT NULL CONSTRAINT DF_SchemaFingerprints_RecordedAt DEFAULT (SYSUTCDATETIME())
);

INSERT INTO catalog.SchemaFingerprints (Fingerprint, Objects)
SELECT s.Fingerprint, s.Objects
  FROM (SELECT Fingerprint, Objects,
               ROW_NUMBER() OVER (PARTITION BY Fingerprint ORDER BY RecordedAt DESC) AS Newest
          FROM catalog.TenantSchemas) AS s
 WHERE s.Newest = 1;

ALTER TABLE catalog.TenantSchemas DROP CONSTRAINT CK_TenantSchemas_Objects;
ALTER TABLE catalog.TenantSchemas DROP COLUMN Objects;
ALTER TABLE catalog.TenantSchemas
    ADD CONSTRAINT FK_TenantSchemas_SchemaFingerprints
    FOREIGN KEY (Fingerprint) REFERENCES catalog.SchemaFingerprints (Fingerprint);
