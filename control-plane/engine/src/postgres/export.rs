//! A tenant's business data, read from one snapshot for an export ([`crate::Engine::export_data`]):
//! a read-only `REPEATABLE READ` transaction, each plain table (a partition is exported as
//! itself, never again through its parent: `FROM ONLY`) read through a portal, `part_rows` rows
//! at a time, each row as `row_to_json` text, so memory holds one part at most.

use tokio_postgres::IsolationLevel;

use super::PostgresEngine;
use crate::sql::pg_ident;
use crate::{EngineError, ExportSink, ExportedTable, TenantNames};

/// The schemas that hold business data.
const SCHEMAS: [&str; 2] = ["app", "history"];

impl PostgresEngine {
    /// See [`crate::Engine::export_data`].
    pub(super) async fn export_tables(
        &self,
        names: &TenantNames,
        part_rows: u64,
        sink: &dyn ExportSink,
    ) -> Result<Vec<ExportedTable>, EngineError> {
        let mut client = self.connect_db(&names.database).await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let schemas: Vec<&str> = SCHEMAS.to_vec();
        let tables = tx
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text \
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = ANY($1) AND c.relkind = 'r' \
                  ORDER BY n.nspname, c.relname",
                &[&schemas],
            )
            .await?;
        let fetch = i32::try_from(part_rows.max(1)).unwrap_or(i32::MAX);
        let mut exported = Vec::new();
        for table in &tables {
            let (oid, schema, name): (u32, String, String) =
                (table.get(0), table.get(1), table.get(2));
            let columns = tx
                .query(
                    "SELECT attname::text, format_type(atttypid, atttypmod) \
                       FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 \
                        AND NOT attisdropped ORDER BY attnum",
                    &[&oid],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let qualified = format!("{schema}.{name}");
            let statement = tx
                .prepare(&format!(
                    "SELECT row_to_json(t)::text FROM ONLY {}.{} t",
                    pg_ident(&schema),
                    pg_ident(&name)
                ))
                .await?;
            let portal = tx.bind(&statement, &[]).await?;
            let (mut rows, mut parts) = (0u64, 0u32);
            loop {
                let page = tx.query_portal(&portal, fetch).await?;
                if page.is_empty() {
                    break;
                }
                let mut bytes = Vec::new();
                for row in &page {
                    bytes.extend_from_slice(row.get::<_, &str>(0).as_bytes());
                    bytes.push(b'\n');
                }
                parts += 1;
                rows += page.len() as u64;
                sink.part(&qualified, parts, page.len() as u64, bytes)
                    .await?;
                if (page.len() as u64) < part_rows {
                    break;
                }
            }
            exported.push(ExportedTable {
                name: qualified,
                columns,
                rows,
                parts,
            });
        }
        tx.commit().await?;
        Ok(exported)
    }
}
