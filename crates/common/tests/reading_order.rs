//! The platform reads top-down: each module of `crates/common` uses only the modules listed
//! before it in `lib.rs` (no cycle, no reaching forward). This test reads the sources, so a `use`
//! that breaks the order fails here rather than in a reviewer's head.

use std::path::{Path, PathBuf};

/// The reading order, as `lib.rs` documents it.
const ORDER: &[&str] = &[
    "error",
    "backoff",
    "http",
    "config",
    "context",
    "around",
    "telemetry",
    "store",
    "cache",
    "tls",
    "auth",
    "discovery",
    "client",
    "server",
    "worker",
    "events",
    "platform",
    "paging",
    "reply",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/client/retry.rs` → `client`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn each_module_uses_only_the_modules_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        if module == "lib" {
            continue;
        }
        let rank = ORDER
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("module `{module}` is missing from the reading order"));
        let text = std::fs::read_to_string(&file).expect("read file");
        // Test modules may use anything, and doc links may point anywhere; only code counts.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in code.match_indices("crate::") {
            let used: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let Some(used_rank) = ORDER.iter().position(|m| *m == used) else {
                continue;
            };
            if used_rank > rank {
                broken.push(format!("{}: uses crate::{used}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "modules reaching forward:\n{}",
        broken.join("\n")
    );
}
