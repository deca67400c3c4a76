//! Rewrites the dependency table of `docs/data-handling.md` from `Cargo.lock`
//! (`scripts/update-dependency-table.sh` runs it). `tests/licenses.rs` only checks the table.

#[path = "../tests/common/dependency_table.rs"]
mod dependency_table;

use std::process::ExitCode;

fn update() -> Result<usize, String> {
    let path = dependency_table::doc_path();
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (head, _, tail) = dependency_table::split(&doc)?;
    let crates = dependency_table::shipped_crates()?;
    let updated =
        format!("{head}{}{}{}{tail}", dependency_table::BEGIN, dependency_table::table(&crates), dependency_table::END);
    std::fs::write(&path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(crates.len())
}

fn main() -> ExitCode {
    match update() {
        Ok(crates) => {
            println!("{}: {crates} crates", dependency_table::DOC);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("update_dependency_table: {e}");
            ExitCode::FAILURE
        }
    }
}
