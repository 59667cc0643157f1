//! The benchmark report: a markdown table per benchmark, printed and written to
//! `target/bench/report.md` (each benchmark replaces its own section).

use std::path::PathBuf;

#[derive(Debug)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub baseline: String,
    pub ratio: String,
}

pub fn write(bench: &str, intro: &str, rows: &[Row]) -> anyhow::Result<()> {
    let mut section = format!(
        "## {bench}\n\n{intro}\n\n| figure | measured | baseline | ratio |\n| --- | --- | --- | --- |\n"
    );
    for r in rows {
        section.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.figure, r.measured, r.baseline, r.ratio
        ));
    }
    println!("{section}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/report.md");
    std::fs::create_dir_all(path.parent().expect("parent"))?;
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark report\n\n".into());
    // Replace this benchmark's section, keep the others.
    let header = format!("## {bench}\n");
    let mut out = String::new();
    let mut skipping = false;
    for line in old.lines() {
        if line.starts_with("## ") {
            skipping = line == header.trim_end();
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&section);
    std::fs::write(&path, out)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// Peak resident set size of this process so far, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
