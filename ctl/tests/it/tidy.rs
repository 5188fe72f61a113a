//! House rules checked over the whole workspace: every Rust file opens with
//! a `//!` header, and no test is marked ignored.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        // Symbolic links are not followed: `.tools/debian-rootfs` (a Debian
        // root file system for the systemd test) links to absolute paths,
        // which would walk this machine's whole file system.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if !matches!(
                name.as_ref(),
                "target" | ".git" | ".venv" | ".tools" | "work" | "fixtures"
            ) {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_has_a_module_header_and_nothing_is_ignored() {
    let root = crate::support::repo_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 10,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    let ignore_attr = ["#[", "ignore]"].concat();
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if !text.trim_start().starts_with("//!") {
            bad.push(format!("{}: no //! header", f.display()));
        }
        if text.contains(&ignore_attr) {
            bad.push(format!("{}: ignored test", f.display()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
