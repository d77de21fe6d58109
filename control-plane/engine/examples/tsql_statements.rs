//! Writes every T-SQL statement the SQL Server engine generates into a directory, one file per
//! statement, so `infra/tsql-gate.sh` can hand them to Microsoft's parser with the checked-in
//! files. Parameter markers (`@P1`...) are declared first so the file parses on its own.
//!
//! Usage: `cargo run -q -p engine --example tsql_statements -- DIR`

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: tsql_statements DIR (the directory to write the statements into)")?,
    );
    std::fs::create_dir_all(&dir)?;
    let statements = engine::sqlserver::generated_statements()?;
    for (name, text) in &statements {
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
    println!(
        "{} generated statements written to {}",
        statements.len(),
        dir.display()
    );
    Ok(())
}
