-- V31: exactly the Azure SQL servers name an elastic pool (V30 added the column).
ALTER TABLE catalog.Servers ADD CONSTRAINT CK_Servers_ElasticPool
    CHECK ((Engine = N'azure_sql' AND ElasticPool IS NOT NULL AND LEN(ElasticPool) > 0)
        OR (Engine <> N'azure_sql' AND ElasticPool IS NULL));
