//! A guard over the sources: no `tracing` macro in `src/` records a field with Debug (`?field`,
//! `field = ?value`) or formats its message with `{:?}`. Debug output is Rust syntax (`None`,
//! `Some("…")`, `[1, 2]`), and the JS logger shows those fields to operators as they are.

use std::path::{Path, PathBuf};

/// Macros whose arguments end up in log records or span fields.
const MACROS: &[&str] = &[
    "trace!",
    "debug!",
    "info!",
    "warn!",
    "error!",
    "event!",
    "span!",
    "trace_span!",
    "debug_span!",
    "info_span!",
    "warn_span!",
    "error_span!",
];

/// Debug uses in files this branch may not change, each as (file, exact text). An entry that no
/// longer matches fails the test, so it is removed once the owner fixes the call.
const NOT_YET_FIXED: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read src");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of each macro call (from the name to its closing parenthesis).
fn macro_calls(source: &str) -> Vec<(usize, &str)> {
    let bytes = source.as_bytes();
    let mut calls = Vec::new();
    for name in MACROS {
        let mut from = 0;
        while let Some(found) = source[from..].find(name) {
            let start = from + found;
            from = start + name.len();
            // `warn!` inside `tracing::warn!` is found; `my_warn!` is not a tracing macro.
            let before = source[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(open) = source[from..].find('(').map(|i| from + i) else {
                continue;
            };
            if !source[from..open].trim().is_empty() {
                continue;
            }
            let (mut depth, mut i, mut in_string) = (0usize, open, false);
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_string => i += 1,
                    b'"' => in_string = !in_string,
                    b'(' if !in_string => depth += 1,
                    b')' if !in_string => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let line = source[..start].matches('\n').count() + 1;
            calls.push((line, &source[start..=i.min(bytes.len() - 1)]));
        }
    }
    calls
}

/// Debug uses in one call: a `?` sigil outside string literals, or `:?}` / `:#?}` inside them.
fn debug_uses(call: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (mut in_string, mut literal, mut prev) = (false, String::new(), ' ');
    let chars: Vec<char> = call.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            match c {
                '\\' => i += 1,
                '"' => {
                    in_string = false;
                    if literal.contains(":?}") || literal.contains(":#?}") {
                        found.push(format!("\"{literal}\""));
                    }
                    literal.clear();
                }
                _ => literal.push(c),
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '?' && (prev.is_whitespace() || prev == ',' || prev == '(' || prev == '=') {
            // A sigil, not the `?` operator (which follows an expression).
            let rest: String = chars[i..].iter().take_while(|c| **c != ',').collect();
            found.push(rest.trim().to_string());
        }
        if !c.is_whitespace() || in_string {
            prev = c;
        } else {
            prev = ' ';
        }
        i += 1;
    }
    found
}

#[test]
fn no_tracing_call_in_src_logs_a_debug_rendering() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut offenders = Vec::new();
    let mut exempted = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("read source");
        let relative = file
            .strip_prefix(root)
            .expect("under the manifest dir")
            .to_string_lossy()
            .replace('\\', "/");
        for (line, call) in macro_calls(&source) {
            for found in debug_uses(call) {
                let known = NOT_YET_FIXED
                    .iter()
                    .find(|(f, text)| *f == relative && call.contains(text));
                match known {
                    Some(entry) => exempted.push(*entry),
                    None => offenders.push(format!("{relative}:{line}: {found}")),
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "log fields rendered with Debug (use Display, or omit the field when absent):\n{}",
        offenders.join("\n")
    );
    for entry in NOT_YET_FIXED {
        assert!(
            exempted.contains(entry),
            "{entry:?} no longer occurs: remove it from NOT_YET_FIXED"
        );
    }
}

#[test]
fn the_guard_sees_debug_sigils_and_formats_but_not_the_question_mark_operator() {
    let source = r#"
        warn!(delivery = d.id, error = ?error, "dead");
        tracing::debug!(?lease, "claimed {:?} and {x:?}", a);
        info!(count = n, "fine: {} {x}", parse()?);
        my_warn!(error = ?e);
    "#;
    let mut found: Vec<String> = macro_calls(source)
        .into_iter()
        .flat_map(|(_, call)| debug_uses(call))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            "\"claimed {:?} and {x:?}\"".to_string(),
            "?error".to_string(),
            "?lease".to_string(),
        ]
    );
}
