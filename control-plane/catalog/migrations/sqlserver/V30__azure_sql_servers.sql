-- V30: Azure SQL Database logical servers join the fleet (Engine 'azure_sql'),
-- each with the elastic pool its tenant databases are created in
-- (counterpart of migrations/postgres/V14__azure_sql_servers.sql).
-- (The constraint tying the two together is V31's: a batch cannot use a column it adds.)
ALTER TABLE catalog.Servers DROP CONSTRAINT CK_Servers_Engine;
ALTER TABLE catalog.Servers ADD CONSTRAINT CK_Servers_Engine
    CHECK (Engine IN (N'postgres', N'sqlserver', N'azure_sql'));
ALTER TABLE catalog.Servers ADD ElasticPool nvarchar(128) NULL;
