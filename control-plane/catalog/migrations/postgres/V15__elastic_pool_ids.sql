-- V15: an Azure SQL server may record its elastic pool's Azure resource id, from which its
-- capacity is read (at registration, and again on request: PUT /v1/servers/{name}/capacity).
ALTER TABLE servers ADD COLUMN elastic_pool_id text
    CHECK (elastic_pool_id IS NULL
           OR (elastic_pool IS NOT NULL AND length(elastic_pool_id) BETWEEN 1 AND 400));
