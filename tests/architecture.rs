//! The house rules of `src/`, read from `docs/architecture.md` and checked against the code:
//! every reference between rooms points the way the rooms table allows (so nothing points up or
//! sideways, and there is no circle), only the listed rooms expose a user's object id, and no
//! file is longer than the limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;
const EXPOSE: &str = "expose_object_id";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/architecture.md")).expect("docs/architecture.md")
}

/// The rows of the markdown table that follows `marker` in the doc, as cells (header and
/// separator rows dropped).
fn table_after(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let start = doc.find(marker).unwrap_or_else(|| panic!("docs/architecture.md has no {marker:?}"));
    doc[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().to_string()).collect())
        .collect()
}

/// The `names` between backticks in `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The rooms table: each room and the rooms it may import.
fn allowed_imports(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    table_after(doc, "<!-- rooms:")
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), 3, "a rooms row is | room | what it is | may import |: {cells:?}");
            let room = quoted(&cells[0]).into_iter().next().unwrap_or_else(|| panic!("no room in {cells:?}"));
            (room, quoted(&cells[2]).into_iter().collect())
        })
        .collect()
}

/// The rooms whose files may call `expose_object_id`.
fn exposing_rooms(doc: &str) -> BTreeSet<String> {
    let lead = format!("Rooms that may call `{EXPOSE}()`:");
    let start = doc.find(&lead).unwrap_or_else(|| panic!("docs/architecture.md has no {lead:?}"));
    let rest = &doc[start + lead.len()..];
    let paragraph = &rest[..rest.find("\n\n").unwrap_or(rest.len())];
    quoted(paragraph).into_iter().collect()
}

/// A file of `src/` with its room and text. `lib.rs` declares the rooms and is in none.
struct Source {
    path: PathBuf,
    room: String,
    binary: bool,
    text: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&src).unwrap().to_path_buf();
            let first = relative.components().next().unwrap().as_os_str().to_str().unwrap().to_string();
            let (room, binary) = match first.as_str() {
                "lib.rs" => return None,
                "main.rs" | "bin" => ("bin".to_string(), true),
                other => (other.trim_end_matches(".rs").to_string(), false),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            Some(Source { path: Path::new("src").join(relative), room, binary, text })
        })
        .collect()
}

/// Every room `text` names through `prefix` (`crate::` or `teams_presence::`), with its line:
/// `prefix room::…` and each room of `prefix {a, b::…}`.
fn references(text: &str, prefix: &str) -> Vec<(String, usize)> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let line = text[..at].matches('\n').count() + 1;
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut expecting = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expecting = true,
                    c if c.is_whitespace() => {}
                    _ if expecting && depth == 0 => {
                        expecting = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            found.push((name, line));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push((name, line));
            }
        }
    }
    found
}

/// A room of the table that can reach itself through the table's arrows.
fn circle(allowed: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        room: &str,
        allowed: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|r| r == room) {
            return Some(path[i..].iter().cloned().chain([room.to_string()]).collect());
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_string());
        for next in allowed.get(room).into_iter().flatten() {
            if let Some(found) = visit(next, allowed, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(room.to_string());
        None
    }
    let mut done = BTreeSet::new();
    allowed.keys().find_map(|room| visit(room, allowed, &mut Vec::new(), &mut done))
}

#[test]
fn the_rooms_table_is_complete_and_has_no_circle() {
    let allowed = allowed_imports(&doc());
    let in_src: BTreeSet<String> = sources().into_iter().map(|s| s.room).collect();
    let in_table: BTreeSet<String> = allowed.keys().cloned().collect();
    assert_eq!(in_src, in_table, "docs/architecture.md's rooms table must list exactly the rooms of src/");
    for (room, imports) in &allowed {
        let unknown: Vec<&String> = imports.iter().filter(|r| !allowed.contains_key(*r)).collect();
        assert!(unknown.is_empty(), "{room} may import {unknown:?}, which are not rooms");
    }
    assert_eq!(circle(&allowed), None, "the rooms table has a circle: arrows must all point down");
}

#[test]
fn every_reference_between_rooms_is_one_the_table_allows() {
    let allowed = allowed_imports(&doc());
    let mut wrong = Vec::new();
    for source in sources() {
        let mut named = references(&source.text, "crate::");
        if source.binary {
            named.extend(references(&source.text, "teams_presence::"));
        }
        let may = allowed.get(&source.room).cloned().unwrap_or_default();
        for (room, line) in named {
            if room != source.room && !may.contains(&room) {
                wrong.push(format!("{}:{line}: room {} names room {room}", source.path.display(), source.room));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "references against docs/architecture.md's rooms table (move the code down, or change the table if the \
         design changed):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_listed_rooms_expose_a_users_object_id() {
    let rooms = exposing_rooms(&doc());
    // Unit tests (a file's `mod tests`) may, to write Graph's answers as Graph would.
    let without_tests = |text: &str| text[..text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len())].to_string();
    let wrong: Vec<String> = sources()
        .iter()
        .filter(|s| !rooms.contains(&s.room))
        .flat_map(|s| {
            without_tests(&s.text)
                .lines()
                .enumerate()
                .filter(|(_, line)| line.contains(EXPOSE))
                .map(|(i, _)| format!("{}:{}", s.path.display(), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(wrong.is_empty(), "{EXPOSE} outside {rooms:?}: log or store the SubjectId instead:\n{}", wrong.join("\n"));
}

#[test]
fn no_file_is_over_the_limit() {
    let lib = root().join("src/lib.rs");
    let lib_lines = std::fs::read_to_string(&lib).unwrap().lines().count();
    let wrong: Vec<String> = sources()
        .iter()
        .map(|source| (source.path.display().to_string(), source.text.lines().count()))
        .chain([("src/lib.rs".to_string(), lib_lines)])
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("{path}: {lines} lines, over {MAX_LINES}: split it by job"))
        .collect();
    assert!(wrong.is_empty(), "files of src/ over the limit:\n{}", wrong.join("\n"));
}

#[test]
fn references_are_read_from_paths_groups_and_doc_links() {
    let text = "use crate::model::UserId;\nuse crate::{run::RunContext, store::{self, RunStore}};\n\
                /// See [`crate::cycle::StoredView`].\nlet x = my_crate::graph::f(); $crate::spans::g();\n";
    let rooms: Vec<(String, usize)> = references(text, "crate::");
    let names: Vec<&str> = rooms.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, ["model", "run", "store", "cycle"]);
    assert_eq!(rooms[3].1, 3, "the line of the doc link");
    let table: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
            .into_iter()
            .map(|(r, i)| (r.to_string(), i.into_iter().map(str::to_string).collect()))
            .collect();
    assert_eq!(circle(&table), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}
