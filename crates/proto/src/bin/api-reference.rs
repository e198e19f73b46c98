//! Writes the API reference (`docs/api/`, see `mall_proto::reference`) from the protos:
//! `cargo run -p mall-proto --bin api-reference [DIR]`. Pages no longer generated are removed.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(mall_proto::reference::DIR)
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let pages = mall_proto::reference::pages();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".md") && !pages.contains_key(name) {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)?;
    }
    println!("wrote {} pages to {}", pages.len(), dir.display());
    Ok(())
}
