//! What the benchmark binaries share: their sections of docs/benchmarks.md.

/// Writes `section` (which starts with `start` and ends with `end`) into the Markdown file
/// `out` in place of the one between the same markers, or appends it; the rest of the file
/// stays as it is.
pub fn write_section(out: &str, start: &str, end: &str, section: &str) {
    let existing = std::fs::read_to_string(out).unwrap_or_else(|_| "# Benchmarks\n".into());
    let updated = match (existing.find(start), existing.find(end)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{}{}",
            &existing[..a],
            section.trim_end_matches('\n'),
            &existing[b + end.len()..]
        ),
        _ => format!("{}\n\n{section}", existing.trim_end()),
    };
    std::fs::write(out, updated).unwrap();
}
