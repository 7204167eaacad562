//! The part of ZPL (ZeroMQ RFC 4, "ZeroMQ Property Language") that
//! certificates use: `#` comments, sections nested by four spaces, and
//! `name = "value"` properties. Errors name the line and what was expected.

/// One property or section, with its full path (`curve/public-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Names from the top level down, joined by `/`.
    pub path: String,
    /// The value, if the line had `= value`.
    pub value: Option<String>,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// A syntax error: the 1-based line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What the line should have looked like.
    pub expected: String,
}

/// Parses ZPL text into a flat list of entries, in file order.
///
/// # Errors
/// The first line that is not valid ZPL.
pub fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut entries = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |expected: &str| SyntaxError { line: line_no, expected: expected.to_string() };
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with('\t') {
            return Err(err("indentation with spaces (4 per level), not tabs"));
        }
        let indent = line.len() - trimmed.len();
        if indent % 4 != 0 {
            return Err(err("indentation in multiples of 4 spaces"));
        }
        let level = indent / 4;
        if level > stack.len() {
            return Err(err("at most one more level of indentation than the line above"));
        }
        stack.truncate(level);

        let name_len = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || "$-_@.&+/".contains(c)))
            .unwrap_or(trimmed.len());
        if name_len == 0 {
            return Err(err("a name made of letters, digits and $-_@.&+/"));
        }
        let name = &trimmed[..name_len];
        let rest = trimmed[name_len..].trim_start();
        let value = if rest.is_empty() || rest.starts_with('#') {
            None
        } else if let Some(after_eq) = rest.strip_prefix('=') {
            Some(parse_value(after_eq.trim_start()).map_err(err)?)
        } else {
            return Err(err("`name = \"value\"` or a section name alone"));
        };
        stack.push(name.to_string());
        entries.push(Entry { path: stack.join("/"), value, line: line_no });
    }
    Ok(entries)
}

fn parse_value(text: &str) -> Result<String, &'static str> {
    match text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &text[1..];
            let end = inner.find(quote).ok_or("a closing quote")?;
            let after = inner[end + 1..].trim_start();
            if after.is_empty() || after.starts_with('#') {
                Ok(inner[..end].to_string())
            } else {
                Err("nothing but a comment after the quoted value")
            }
        }
        Some(_) => {
            let value = text.split('#').next().unwrap_or("").trim_end();
            Ok(value.to_string())
        }
        None => Err("a value after `=`"),
    }
}

/// Quotes a value for writing. Certificates only hold Z85 keys and names;
/// a double quote inside a value cannot be expressed in ZPL and is replaced.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_czmq_certificate() {
        let text = "#   ****  Generated  ****\n\
                    metadata\n    name = \"web-01\"  # the host\ncurve\n    public-key = \"abc\"\n\
                    \n    secret-key = 'x#y'\n";
        let entries = parse(text).unwrap();
        let pairs: Vec<_> = entries.iter().map(|e| (e.path.as_str(), e.value.as_deref())).collect();
        assert_eq!(
            pairs,
            vec![
                ("metadata", None),
                ("metadata/name", Some("web-01")),
                ("curve", None),
                ("curve/public-key", Some("abc")),
                ("curve/secret-key", Some("x#y")),
            ]
        );
        assert_eq!(entries[3].line, 5);
    }

    #[test]
    fn reports_line_and_expectation() {
        let e = parse("curve\n   public-key = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.expected.contains("multiples of 4"), "{}", e.expected);
        let e = parse("curve\n    public-key \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("curve\n        deep = 1\n").unwrap_err();
        assert!(e.expected.contains("one more level"));
        let e = parse("a = \"open\n").unwrap_err();
        assert!(e.expected.contains("closing quote"));
        let e = parse("= 3\n").unwrap_err();
        assert!(e.expected.contains("a name"));
    }
}
