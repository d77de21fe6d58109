-- V14: Azure SQL Database logical servers join the fleet (engine 'azure_sql'),
-- each with the elastic pool its tenant databases are created in. Exactly the
-- Azure SQL servers name a pool.
ALTER TABLE servers DROP CONSTRAINT servers_engine_check;
ALTER TABLE servers ADD CONSTRAINT servers_engine_check
    CHECK (engine IN ('postgres', 'sqlserver', 'azure_sql'));
ALTER TABLE servers ADD COLUMN elastic_pool text
    CHECK (elastic_pool IS NULL OR length(elastic_pool) BETWEEN 1 AND 128);
ALTER TABLE servers ADD CONSTRAINT servers_azure_sql_pool_check
    CHECK ((engine = 'azure_sql') = (elastic_pool IS NOT NULL));
