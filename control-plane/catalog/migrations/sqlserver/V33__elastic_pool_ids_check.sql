-- V33: only a server with an elastic pool names the pool's resource id (V32 added the column).
ALTER TABLE catalog.Servers ADD CONSTRAINT CK_Servers_ElasticPoolId
    CHECK (ElasticPoolId IS NULL OR (ElasticPool IS NOT NULL AND LEN(ElasticPoolId) > 0));
