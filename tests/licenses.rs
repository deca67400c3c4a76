//! The dependency table of `docs/data-handling.md` is generated from `Cargo.lock`, and every crate
//! shipped in the `handler` binary must carry a licence from the allowed list.
//!
//! Regenerate the table with `scripts/update-dependency-table.sh` after changing dependencies.

#[path = "common/dependency_table.rs"]
mod dependency_table;

use dependency_table::{DOC, shipped_crates, split, table};

/// Permissive licences a Marketplace offer can ship without obligations beyond notices.
const ALLOWED: &[&str] = &[
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "BSL-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "OpenSSL",
];

fn licence_allowed(expression: &str) -> Result<bool, String> {
    let parsed =
        spdx::Expression::parse_mode(expression, spdx::ParseMode::LAX).map_err(|e| format!("{expression:?}: {e}"))?;
    Ok(parsed.evaluate(|req| match &req.license {
        spdx::LicenseItem::Spdx { id, .. } => ALLOWED.contains(&id.name),
        spdx::LicenseItem::Other { .. } => false,
    }))
}

#[test]
fn every_shipped_crate_has_an_allowed_licence() {
    let refused: Vec<String> = shipped_crates()
        .unwrap()
        .iter()
        .filter_map(|c| match licence_allowed(&c.license) {
            Ok(true) => None,
            Ok(false) => Some(format!("{} {}: {:?} is not on the allowed list", c.name, c.version, c.license)),
            Err(e) => Some(format!("{} {}: licence cannot be read: {e}", c.name, c.version)),
        })
        .collect();
    assert!(refused.is_empty(), "licences not allowed (see ALLOWED in tests/licenses.rs):\n{}", refused.join("\n"));
}

#[test]
fn the_allowed_list_refuses_copyleft() {
    assert!(licence_allowed("MIT OR Apache-2.0").unwrap());
    assert!(licence_allowed("MIT/Apache-2.0").unwrap());
    assert!(licence_allowed("ISC AND (Apache-2.0 OR ISC) AND OpenSSL").unwrap());
    assert!(!licence_allowed("GPL-3.0-only").unwrap());
    assert!(!licence_allowed("MIT AND LGPL-2.1-or-later").unwrap());
    assert!(licence_allowed("LGPL-2.1-or-later OR MIT").unwrap());
    assert!(licence_allowed("").is_err());
}

#[test]
fn dependency_table_in_the_data_handling_document_is_current() {
    let path = dependency_table::doc_path();
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let (_, current, _) = split(&doc).unwrap();
    let expected = table(&shipped_crates().unwrap());
    assert!(
        current == expected,
        "the dependency table in {DOC} is out of date: run scripts/update-dependency-table.sh and commit the result"
    );
}
