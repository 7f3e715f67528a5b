//! Turns a byte span of the config file into what a user can act on: line, column and the dotted
//! key (`backend.web.servers[1].weight`) it belongs to.

use std::ops::Range;

use fulcrum_common::Spanned;
use toml::de::{DeTable, DeValue};

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted path of the innermost key whose key or value covers `span`.
pub(crate) fn key_path(root: &DeTable<'_>, span: &Range<usize>) -> String {
    let mut path = String::new();
    for segment in find_in_table(root, span).unwrap_or_default() {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// Whether the innermost key covering `span` is a whole named section that other sections refer
/// to by name (`[backend.web]`, `[vrrp.instance.VI_1]`), not a key inside one.
pub(crate) fn is_named_section(root: &DeTable<'_>, span: &Range<usize>) -> bool {
    let keys: Vec<String> = find_in_table(root, span)
        .unwrap_or_default()
        .into_iter()
        .map(|segment| match segment {
            Segment::Key(key) => key,
            Segment::Index(i) => format!("[{i}]"),
        })
        .collect();
    match keys.as_slice() {
        [kind, _name] => {
            ["frontend", "backend", "virtual_server", "volume", "sync"].contains(&kind.as_str())
        }
        [vrrp, kind, _name] => vrrp == "vrrp" && (kind == "instance" || kind == "group"),
        _ => false,
    }
}

/// Removes the innermost key or array element covering `span`; returns the removed key's name
/// and the span of the table it was removed from, or `None` when nothing covers `span`.
pub(crate) fn remove_at(
    root: &mut Spanned<DeTable<'_>>,
    span: &Range<usize>,
) -> Option<(String, Range<usize>)> {
    let mut path = find_in_table(root.get_ref(), span)?;
    let last = path.pop()?;
    let mut parent_span = root.span();
    let mut current = Container::Table(root.get_mut());
    for segment in path {
        let value = match (current, segment) {
            (Container::Table(t), Segment::Key(k)) => t.get_mut(k.as_str())?,
            (Container::Array(a), Segment::Index(i)) => a.as_mut().get_mut(i)?,
            _ => return None,
        };
        parent_span = value.span();
        current = match value.get_mut() {
            DeValue::Table(t) => Container::Table(t),
            DeValue::Array(a) => Container::Array(a),
            _ => return None,
        };
    }
    match (current, last) {
        (Container::Table(t), Segment::Key(k)) => {
            t.remove(k.as_str())?;
            Some((k, parent_span))
        }
        (Container::Array(a), Segment::Index(i)) => {
            let old = std::mem::replace(a, toml::de::DeArray::new());
            for (j, item) in old.into_iter().enumerate() {
                if j != i {
                    a.push(item);
                }
            }
            Some((format!("[{i}]"), parent_span))
        }
        _ => None,
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

enum Container<'a, 'i> {
    Table(&'a mut DeTable<'i>),
    Array(&'a mut toml::de::DeArray<'i>),
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Depth first, since a `[header]` table's span covers its header line, not its keys.
fn find_in_table(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
    for (key, value) in table {
        if let Some(mut inner) = find_in_value(value, span) {
            inner.insert(0, Segment::Key(key.get_ref().to_string()));
            return Some(inner);
        }
        if covers(&key.span(), span) || covers(&value.span(), span) {
            return Some(vec![Segment::Key(key.get_ref().to_string())]);
        }
    }
    None
}

fn find_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Vec<Segment>> {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let mut inner =
                find_in_value(item, span).or_else(|| covers(&item.span(), span).then(Vec::new))?;
            inner.insert(0, Segment::Index(i));
            Some(inner)
        }),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }

    #[test]
    fn key_paths_name_tables_and_array_items() {
        let text = "[backend.web]\nservers = [{ name = \"a\" }, { name = \"b\", weight = 999 }]\n";
        let root = DeTable::parse(text).unwrap();
        let at = text.find("999").unwrap();
        let path = key_path(root.get_ref(), &(at..at + 3));
        assert_eq!(path, "backend.web.servers[1].weight");
    }

    #[test]
    fn removal_takes_the_innermost_entry() {
        let text = "[backend.web]\nretries = 3\ntimeout = { connect = \"5x\", server = \"1s\" }\n";
        let mut root = DeTable::parse(text).unwrap();
        let at = text.find("\"5x\"").unwrap();
        let (key, _) = remove_at(&mut root, &(at..at + 4)).unwrap();
        assert_eq!(key, "connect");
        let path = key_path(
            root.get_ref(),
            &(text.find("\"1s\"").unwrap()..text.find("\"1s\"").unwrap() + 4),
        );
        assert_eq!(path, "backend.web.timeout.server");
    }
}
