//! Duplicate keys in a JSON text, with their JSON paths and line/column.
//!
//! `serde_json` keeps the last of two equal keys in an object without a word, so a second,
//! empty `"axes"` would silently turn a 24-cell grid into one cell. This scanner runs over text
//! that already parsed as JSON, in one pass without recursion, and finds every repeated key.

use std::collections::HashSet;

use crate::problem::{join_index, join_key};

/// One repeated key: where it is (JSON path of the repeated member), and the 1-based line and
/// column of the repeat and of the first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub path: String,
    pub key: String,
    pub at: (usize, usize),
    pub first: (usize, usize),
}

enum Frame {
    Object { keys: HashSet<String>, first: Vec<(String, (usize, usize))>, key: Option<String>, expect_key: bool },
    Array { index: usize },
}

/// Every duplicate key of `text` (valid JSON), in text order; at most `max`.
pub(crate) fn duplicates(text: &str, max: usize) -> Vec<Duplicate> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut line, mut line_start) = (1usize, 0usize);
    let mut i = 0;
    while i < b.len() && out.len() < max {
        match b[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'{' => stack.push(Frame::Object { keys: HashSet::new(), first: Vec::new(), key: None, expect_key: true }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b'"' => {
                let start = i;
                let mut escaped = false;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        escaped = true;
                        i += 1;
                    }
                    i += 1;
                }
                let raw = text.get(start..(i + 1).min(b.len())).unwrap_or("");
                let pos = (line, text.get(line_start..start).map_or(1, |s| s.chars().count() + 1));
                let is_key = matches!(stack.last(), Some(Frame::Object { expect_key: true, .. }));
                if is_key {
                    let key = if escaped {
                        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
                    } else {
                        raw.trim_matches('"').to_owned()
                    };
                    let parent = path_of(&stack[..stack.len() - 1]);
                    if let Some(Frame::Object { keys, first, key: current, .. }) = stack.last_mut() {
                        if keys.insert(key.clone()) {
                            first.push((key.clone(), pos));
                        } else {
                            let first_at = first.iter().find(|(k, _)| *k == key).map_or((0, 0), |(_, p)| *p);
                            out.push(Duplicate {
                                path: join_key(&parent, &key),
                                key: key.clone(),
                                at: pos,
                                first: first_at,
                            });
                        }
                        *current = Some(key);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The JSON path of the value the innermost frame of `stack` is at.
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for f in stack {
        path = match f {
            Frame::Object { key: Some(k), .. } => join_key(&path, k),
            Frame::Object { key: None, .. } => path,
            Frame::Array { index } => join_index(&path, *index),
        };
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_duplicate_with_path_and_position() {
        let text = "{\"a\": 1,\n \"b\": {\"c\": [1, {\"d\": 1, \"d\": 2}], \"c\": 3},\n \"a\": \"x\\\"\", \"e\\u0061\": 0, \"ea\": 1}";
        let d = duplicates(text, 10);
        type Found<'a> = Vec<(&'a str, (usize, usize), (usize, usize))>;
        let got: Found = d.iter().map(|d| (d.path.as_str(), d.at, d.first)).collect();
        assert_eq!(
            got,
            vec![
                ("b.c[1].d", (2, 26), (2, 18)),
                ("b.c", (2, 36), (2, 8)),
                ("a", (3, 2), (1, 2)),
                ("ea", (3, 28), (3, 14)),
            ]
        );
        assert!(duplicates("{\"a\": {\"a\": 1}, \"b\": [\"a\", \"a\"]}", 10).is_empty());
        assert_eq!(duplicates("{\"a\":1,\"a\":1,\"a\":1}", 1).len(), 1);
    }
}
