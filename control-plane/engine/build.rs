//! Embeds the SQL assets (`tenant-schema/<engine>/` migrations and `procedures/<engine>/`
//! objects) into the binary, so a control plane never depends on files beside it at run time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    files
}

fn emit(out: &mut String, name: &str, files: &[PathBuf]) {
    writeln!(out, "pub const {name}: &[(&str, &str)] = &[").ok();
    for f in files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        writeln!(
            out,
            "    ({stem:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .ok();
    }
    writeln!(out, "];").ok();
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest
        .join("../..")
        .canonicalize()
        .unwrap_or(manifest.join("../.."));
    let mut out = String::new();
    for (name, dir) in [
        ("POSTGRES_MIGRATIONS", "tenant-schema/postgres"),
        ("POSTGRES_PROCEDURES", "procedures/postgres"),
        ("SQLSERVER_MIGRATIONS", "tenant-schema/sqlserver"),
        ("SQLSERVER_PROCEDURES", "procedures/sqlserver"),
    ] {
        emit(&mut out, name, &sql_files(&root.join(dir)));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("assets.rs");
    std::fs::write(dest, out).unwrap_or_else(|e| panic!("writing assets.rs: {e}"));
}
