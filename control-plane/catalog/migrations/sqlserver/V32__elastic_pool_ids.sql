-- V32: an Azure SQL server may record its elastic pool's Azure resource id, from which its
-- capacity is read (counterpart of migrations/postgres/V15__elastic_pool_ids.sql).
-- (The constraint is V33's: a batch cannot use a column it adds.)
ALTER TABLE catalog.Servers ADD ElasticPoolId nvarchar(400) NULL;
