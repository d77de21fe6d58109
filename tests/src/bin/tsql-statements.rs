//! Writes every T-SQL statement the SQL Server engine and catalog build in Rust into a directory,
//! one file per statement (`DIR/engine/…`, `DIR/catalog/…`), so `infra/tsql-gate.sh` can hand
//! them to Microsoft's parser with the checked-in files. Parameter markers (`@P1`...) are
//! declared first so each file parses on its own.
//!
//! Usage: `cargo run -q -p tcp-tests --bin tsql-statements -- DIR`

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: tsql-statements DIR (the directory to write the statements into)")?,
    );
    let engine = engine::sqlserver::generated_statements()?;
    let catalog = catalog::sqlserver_generated_statements();
    let written = write(&dir.join("engine"), &engine)? + write(&dir.join("catalog"), &catalog)?;
    println!(
        "{written} generated statements written to {}",
        dir.display()
    );
    Ok(())
}

fn write(dir: &Path, statements: &[(&str, String)]) -> Result<usize, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in statements {
        let params: Vec<String> = (1..=14)
            .filter(|n| text.contains(&format!("@P{n}")))
            .map(|n| format!("@P{n} nvarchar(max)"))
            .collect();
        let mut file = String::new();
        if !params.is_empty() {
            file.push_str(&format!("DECLARE {};\n", params.join(", ")));
        }
        file.push_str(text);
        file.push('\n');
        std::fs::write(dir.join(format!("{name}.sql")), file)?;
    }
    Ok(statements.len())
}
