//! One StatsD line: the etsy protocol and the DogStatsD extensions that
//! matter, parsed without allocating (the agent may take tens of thousands
//! of lines a second).
//!
//! ```text
//! <name>:<value>[:<value>...]|<type>[|@<rate>][|#<tag>[:<v>],...][|<other>...]
//! ```
//!
//! - types: `c` counter, `g` gauge (`+N`/`-N` change it), `ms` timer in
//!   milliseconds, `h` histogram and `d` distribution (DogStatsD: unitless
//!   values; where other servers read `h` as a timer alias, curvemon keeps
//!   the value as is), `s` set (distinct values per interval);
//! - `@rate`: the client's sampling rate (0 < rate ≤ 1), for `c`, `ms`,
//!   `h` and `d`;
//! - `#tags` (DogStatsD): `key:value` or a bare `key`;
//! - several values packed in one line (DogStatsD 1.1): `name:1:2:3|d`;
//! - other `|x...` fields (container id `c:`, timestamp `T`) are skipped;
//!   events (`_e{`) and service checks (`_sc|`) are not metrics and are
//!   reported as such.

/// The StatsD metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// `c`: adds up.
    Counter,
    /// `g`: a level.
    Gauge,
    /// `ms`: a duration in milliseconds.
    Timer,
    /// `h`: a distribution of unitless values.
    Histogram,
    /// `d`: a distribution of unitless values (DogStatsD).
    Distribution,
    /// `s`: distinct values.
    Set,
}

/// One parsed line. Values and tags stay text until iterated.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    /// The name as sent (`shop.checkout.duration`).
    pub name: &'a str,
    /// Its type.
    pub kind: Type,
    /// The `:`-separated values.
    pub values: &'a str,
    /// The sampling rate (1 when not given).
    pub rate: f64,
    /// The `,`-separated tags, or "".
    pub tags: &'a str,
}

/// What a line is when it is not a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// A DogStatsD event or service check: valid, but not a metric.
    NotAMetric,
    /// Not `name:value|type`.
    Shape,
    /// A type other than c, g, ms, h, d, s.
    Type,
    /// A value that is not a number (or empty).
    Value,
    /// A sampling rate outside (0, 1] or not a number.
    Rate,
    /// An empty name.
    Name,
}

impl LineError {
    /// Words for logs.
    pub fn describe(self) -> &'static str {
        match self {
            LineError::NotAMetric => "an event or service check, not a metric",
            LineError::Shape => "not name:value|type",
            LineError::Type => "a type other than c, g, ms, h, d or s",
            LineError::Value => "a value that is not a number",
            LineError::Rate => "a sample rate outside (0, 1]",
            LineError::Name => "an empty name",
        }
    }
}

/// A value of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A number.
    Number(f64),
    /// A gauge change (`+5`, `-2`).
    Delta(f64),
    /// A set member.
    Member(&'a str),
}

/// Parses one line (without its newline).
///
/// # Errors
/// What the line is instead of a metric.
pub fn parse(line: &str) -> Result<Metric<'_>, LineError> {
    let line = line.trim_end_matches('\r');
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(LineError::NotAMetric);
    }
    let (head, fields) = line.split_once('|').ok_or(LineError::Shape)?;
    let (name, values) = head.split_once(':').ok_or(LineError::Shape)?;
    if name.trim().is_empty() {
        return Err(LineError::Name);
    }
    if values.is_empty() {
        return Err(LineError::Value);
    }
    let mut fields = fields.split('|');
    let kind = match fields.next() {
        Some("c") => Type::Counter,
        Some("g") => Type::Gauge,
        Some("ms") => Type::Timer,
        Some("h") => Type::Histogram,
        Some("d") => Type::Distribution,
        Some("s") => Type::Set,
        _ => return Err(LineError::Type),
    };
    let mut rate = 1.0;
    let mut tags = "";
    for field in fields {
        if let Some(r) = field.strip_prefix('@') {
            rate = r.parse().map_err(|_| LineError::Rate)?;
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(LineError::Rate);
            }
        } else if let Some(t) = field.strip_prefix('#') {
            tags = t;
        }
        // Anything else (container id, timestamp, future fields) is skipped.
    }
    let metric = Metric { name: name.trim(), kind, values, rate, tags };
    // Check every value now, so that a line is taken whole or not at all.
    for value in metric.values() {
        value?;
    }
    Ok(metric)
}

impl<'a> Metric<'a> {
    /// The line's values.
    pub fn values(&self) -> impl Iterator<Item = Result<Value<'a>, LineError>> + '_ {
        let kind = self.kind;
        self.values.split(':').map(move |text| match kind {
            Type::Set if !text.is_empty() => Ok(Value::Member(text)),
            Type::Set => Err(LineError::Value),
            Type::Gauge if text.starts_with(['+', '-']) => number(text).map(Value::Delta),
            _ => number(text).map(Value::Number),
        })
    }

    /// The line's tags: `(key, value)`, value `None` for a bare tag.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.tags.split(',').filter(|t| !t.is_empty()).map(|tag| match tag.split_once(':') {
            Some((k, v)) => (k, Some(v)),
            None => (tag, None),
        })
    }
}

/// A finite number (StatsD has no NaN or infinity).
fn number(text: &str) -> Result<f64, LineError> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LineError::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(line: &str) -> Vec<Value<'_>> {
        let m = parse(line).unwrap();
        let v: Vec<Value<'_>> = m.values().map(Result::unwrap).collect();
        v
    }

    #[test]
    fn the_etsy_protocol() {
        let m = parse("shop.requests:3|c|@0.5").unwrap();
        assert_eq!((m.name, m.kind, m.rate), ("shop.requests", Type::Counter, 0.5));
        assert_eq!(values("shop.requests:3|c"), [Value::Number(3.0)]);
        assert_eq!(values("q:-4|g"), [Value::Delta(-4.0)]);
        assert_eq!(values("q:+4|g"), [Value::Delta(4.0)]);
        assert_eq!(values("q:4|g"), [Value::Number(4.0)]);
        assert_eq!(parse("t:320.5|ms").unwrap().kind, Type::Timer);
        assert_eq!(values("users:alice|s"), [Value::Member("alice")]);
        assert_eq!(parse("a:1|c\r").unwrap().kind, Type::Counter);
    }

    #[test]
    fn dogstatsd_extensions() {
        let m =
            parse("shop.latency:1:2.5:3|d|@1|#app:shop,env:prod,canary|c:abc|T1656581400").unwrap();
        assert_eq!(m.kind, Type::Distribution);
        assert_eq!(
            m.values().map(Result::unwrap).collect::<Vec<_>>(),
            [Value::Number(1.0), Value::Number(2.5), Value::Number(3.0)]
        );
        assert_eq!(
            m.tags().collect::<Vec<_>>(),
            [("app", Some("shop")), ("env", Some("prod")), ("canary", None)]
        );
        assert_eq!(parse("x:1|h|#a:b:c").unwrap().tags().next(), Some(("a", Some("b:c"))));
        assert_eq!(parse("x:1|c|zzz|#t").unwrap().tags().count(), 1, "unknown fields skipped");
    }

    #[test]
    fn what_is_not_a_metric_says_why() {
        for (line, error) in [
            ("_e{5,4}:title|text", LineError::NotAMetric),
            ("_sc|redis|0", LineError::NotAMetric),
            ("no value", LineError::Shape),
            ("a:1", LineError::Shape),
            ("a:1|x", LineError::Type),
            ("a:|c", LineError::Value),
            ("a:one|c", LineError::Value),
            ("a:NaN|g", LineError::Value),
            ("a:inf|ms", LineError::Value),
            ("a:1:x|d", LineError::Value),
            ("a:1|c|@0", LineError::Rate),
            ("a:1|c|@2", LineError::Rate),
            ("a:1|c|@x", LineError::Rate),
            (":1|c", LineError::Name),
            ("\u{0}\u{1}:\u{2}|c", LineError::Value),
            ("s:a::b|s", LineError::Value),
        ] {
            assert_eq!(parse(line), Err(error), "{line:?}");
        }
    }
}
