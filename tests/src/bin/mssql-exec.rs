//! Runs one T-SQL batch against the SQL Server named by `MSSQL_URL`, waiting up to two minutes
//! for the server to accept logins first (a freshly started container takes a while). CI uses it
//! to enable contained databases before the SQL Server conformance run:
//!
//! ```text
//! MSSQL_URL=sqlserver://sa:...@localhost:1433?trust_server_certificate=true \
//!   cargo run -p tcp-tests --bin mssql-exec -- \
//!   "EXEC sp_configure 'contained database authentication', 1; RECONFIGURE;"
//! ```

use std::time::{Duration, Instant};

fn fail(message: &str) -> ! {
    eprintln!("mssql-exec: {message}");
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("MSSQL_URL")
        .unwrap_or_else(|_| fail("set MSSQL_URL=sqlserver://USER:PASSWORD@HOST:PORT?..."));
    let sql = std::env::args()
        .nth(1)
        .unwrap_or_else(|| fail("usage: mssql-exec \"T-SQL batch\""));
    let target = mssql::Target::parse_url(&url)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .with_database("master");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut conn = loop {
        match mssql::Conn::connect(&target).await {
            Ok(conn) => break conn,
            Err(e) if Instant::now() < deadline => {
                eprintln!("mssql-exec: waiting for the server: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => fail(&e.to_string()),
        }
    };
    match conn.batch(&sql).await {
        Ok(results) => {
            for row in results.iter().flatten() {
                let cells: Vec<String> = row.cells().map(|(_, d)| format!("{d:?}")).collect();
                println!("{}", cells.join("\t"));
            }
        }
        Err(e) => fail(&e.to_string()),
    }
}
