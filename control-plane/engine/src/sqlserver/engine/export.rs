//! A tenant's business data, read from one snapshot for an export ([`crate::Engine::export_data`]):
//! one `SNAPSHOT` transaction on a dedicated connection, each table's rows streamed as
//! `FOR JSON` objects, `part_rows` rows per part, so memory holds one part at most.

use super::{ident, SqlServerEngine};
use crate::{EngineError, ExportSink, ExportedTable, TenantNames};

pub(super) mod sql {
    /// Starts the export's snapshot (the database allows SNAPSHOT, `ensure_settings`).
    pub const BEGIN: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;";
    /// Ends it (it wrote nothing).
    pub const END: &str = "COMMIT TRANSACTION;";
    /// The business tables, schema and name.
    pub const TABLES: &str = "SELECT s.name AS SchemaName, t.name AS TableName \
           FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
          WHERE s.name IN (N'app', N'history') ORDER BY s.name, t.name;";
    /// A table's columns (`@P1`: `schema.name` quoted), name and type, in order.
    pub const COLUMNS: &str = "SELECT c.name, TYPE_NAME(c.user_type_id) \
           FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@P1) ORDER BY c.column_id;";

    /// Every row of `[schema].[table]` as one JSON object (nulls kept, so every row names
    /// every column).
    pub fn rows(qualified: &str) -> String {
        format!(
            "SELECT (SELECT t.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES) \
               FROM {qualified} AS t;"
        )
    }
}

/// Every statement of this module, for the T-SQL gate.
pub(super) fn generated_statements() -> Result<Vec<(&'static str, String)>, EngineError> {
    Ok(vec![
        ("export_begin", sql::BEGIN.to_owned()),
        ("export_end", sql::END.to_owned()),
        ("export_tables", sql::TABLES.to_owned()),
        ("export_columns", sql::COLUMNS.to_owned()),
        (
            "export_rows",
            sql::rows(&format!("{}.{}", ident("app")?, ident("Customers")?)),
        ),
    ])
}

impl SqlServerEngine {
    /// See [`crate::Engine::export_data`].
    pub(super) async fn export_tables(
        &self,
        names: &TenantNames,
        part_rows: u64,
        sink: &dyn ExportSink,
    ) -> Result<Vec<ExportedTable>, EngineError> {
        // Its own connection: the transaction and the streamed results stay off the pool.
        let mut conn = self
            .connect_tagged(&self.admin.with_database(&names.database))
            .await?;
        conn.batch(sql::BEGIN).await?;
        let tables: Vec<(String, String)> = conn
            .query(sql::TABLES, &[])
            .await?
            .iter()
            .map(|r| {
                let text = |i: usize| r.get::<&str, _>(i).unwrap_or_default().to_owned();
                (text(0), text(1))
            })
            .collect();
        let part_rows = part_rows.max(1);
        let mut exported = Vec::new();
        for (schema, name) in tables {
            let quoted = format!("{}.{}", ident(&schema)?, ident(&name)?);
            let columns = conn
                .query(sql::COLUMNS, &[&quoted.as_str()])
                .await?
                .iter()
                .map(|r| {
                    let text = |i: usize| r.get::<&str, _>(i).unwrap_or_default().to_owned();
                    (text(0), text(1))
                })
                .collect();
            let qualified = format!("{schema}.{name}");
            let (mut rows, mut parts) = (0u64, 0u32);
            let mut bytes = Vec::new();
            let mut in_part = 0u64;
            let statement = sql::rows(&quoted);
            let mut stream = conn.query_rows(&statement, &[]).await?;
            while let Some(row) = stream.next().await? {
                bytes.extend_from_slice(row.get::<&str, _>(0).unwrap_or("{}").as_bytes());
                bytes.push(b'\n');
                in_part += 1;
                if in_part == part_rows {
                    parts += 1;
                    rows += in_part;
                    sink.part(&qualified, parts, in_part, std::mem::take(&mut bytes))
                        .await?;
                    in_part = 0;
                }
            }
            drop(stream);
            if in_part > 0 {
                parts += 1;
                rows += in_part;
                sink.part(&qualified, parts, in_part, bytes).await?;
            }
            exported.push(ExportedTable {
                name: qualified,
                columns,
                rows,
                parts,
            });
        }
        conn.batch(sql::END).await?;
        Ok(exported)
    }
}
