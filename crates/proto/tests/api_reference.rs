//! `docs/api/` is what the protos say: regenerate it with
//! `cargo run -p mall-proto --bin api-reference` after changing a `.proto` file.

use std::path::PathBuf;

#[test]
fn the_api_reference_is_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(mall_proto::reference::DIR);
    let pages = mall_proto::reference::pages();
    let mut stale = Vec::new();
    for (name, text) in &pages {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if &on_disk == text => {}
            _ => stale.push(name.clone()),
        }
    }
    for entry in std::fs::read_dir(&dir).expect("docs/api exists") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && !pages.contains_key(&name) {
            stale.push(format!("{name} (no longer generated)"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/api is out of date ({}): run `cargo run -p mall-proto --bin api-reference`",
        stale.join(", ")
    );
}
