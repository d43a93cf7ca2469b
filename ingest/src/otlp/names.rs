//! Metric and label names from OTLP names, units and types, following
//! Prometheus 3's default translation strategy `UnderscoreEscapingWithSuffixes`
//! (the `prometheus/otlptranslator` rules):
//!
//! - a metric name is split into tokens at every character outside
//!   `[a-zA-Z0-9:]` (so runs of invalid characters and underscores become one
//!   `_`, and leading or trailing ones vanish); the unit's suffixes are added
//!   unless a token already equals them; monotonic sums get `_total`, gauges
//!   with unit `1` get `_ratio` (an existing `total`/`ratio` token is moved to
//!   the end); a leading digit gets a `_` prefix;
//! - a label name has every character outside `[a-zA-Z0-9_]` replaced by `_`
//!   (one per character); a leading digit gets `key_`, a single leading `_`
//!   gets `key`; names starting with `__` are kept;
//! - a name that ends up empty, or (when changed) all underscores, is an error.

/// What a metric is, as far as its name is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    MonotonicSum,
    NonMonotonicSum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

/// OTLP (UCUM) units with a Prometheus word.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

/// The denominator of a `a/b` unit, in words.
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The unit's main and `per_` suffixes, before cleaning. Units in braces
/// (`{requests}`, annotations in UCUM) give no suffix.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let main = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        unit_word(main).map_or_else(|| main.to_string(), str::to_string)
    };
    let per = match parts.next().map(str::trim) {
        Some(p) if !p.is_empty() && !p.contains(['{', '}']) => {
            format!("per_{}", per_unit_word(p).unwrap_or(p))
        }
        _ => String::new(),
    };
    (main, per)
}

/// Invalid characters to `_`, runs of `_` to one, no leading `_`.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// The Prometheus name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: Kind) -> Result<String, String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let (mut main, per) = (clean_unit(&main), clean_unit(&per));
    if tokens.contains(&main) {
        main.clear();
    }
    let per = if per == "per_" {
        String::new()
    } else {
        let p = per.strip_suffix('_').unwrap_or(&per).to_string();
        if tokens.contains(&p) {
            String::new()
        } else {
            p
        }
    };
    if !per.is_empty()
        && let Some(m) = main.strip_suffix('_')
    {
        main = m.to_string();
    }
    if !main.is_empty() {
        tokens.push(main);
    }
    if !per.is_empty() {
        tokens.push(per);
    }
    let mut move_to_end = |word: &str| {
        tokens.retain(|t| t != word);
        tokens.push(word.to_string());
    };
    if kind == Kind::MonotonicSum {
        move_to_end("total");
    }
    if unit == "1" && kind == Kind::Gauge {
        move_to_end("ratio");
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    check(name, out, "metric")
}

/// The Prometheus name of an OTLP attribute.
pub fn label_name(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("attribute with an empty key".into());
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    check(key, out, "label")
}

fn check(original: &str, normalized: String, what: &str) -> Result<String, String> {
    if normalized.is_empty() {
        return Err(format!(
            "{what} name {original:?} is empty after normalization"
        ));
    }
    if normalized != original && normalized.bytes().all(|b| b == b'_') {
        return Err(format!(
            "{what} name {original:?} normalizes to the invalid name {normalized:?}"
        ));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, unit: &str, kind: Kind) -> String {
        metric_name(n, unit, kind).unwrap_or_else(|e| panic!("{n}: {e}"))
    }

    #[test]
    fn invalid_characters_become_single_underscores() {
        assert_eq!(
            name("http.server.duration", "", Kind::Gauge),
            "http_server_duration"
        );
        assert_eq!(name("a..b__c-d", "", Kind::Gauge), "a_b_c_d");
        assert_eq!(
            name("_leading.trailing_", "", Kind::Gauge),
            "leading_trailing"
        );
        assert_eq!(name("with:colon", "", Kind::Gauge), "with:colon");
        assert_eq!(name("température", "", Kind::Gauge), "temp_rature");
        assert_eq!(name("2xx.responses", "", Kind::Gauge), "_2xx_responses");
    }

    #[test]
    fn units_become_suffixes() {
        let cases = [
            (
                "http.server.duration",
                "s",
                Kind::Histogram,
                "http_server_duration_seconds",
            ),
            ("memory.usage", "By", Kind::Gauge, "memory_usage_bytes"),
            ("latency", "ms", Kind::Summary, "latency_milliseconds"),
            (
                "throughput",
                "By/s",
                Kind::Gauge,
                "throughput_bytes_per_second",
            ),
            ("rate", "1/s", Kind::Gauge, "rate_per_second"),
            (
                "requests",
                "{request}",
                Kind::MonotonicSum,
                "requests_total",
            ),
            (
                "requests",
                "{request}/s",
                Kind::Gauge,
                "requests_per_second",
            ),
            ("size", "MiBy", Kind::Gauge, "size_mebibytes"),
            ("temp", "Cel", Kind::Gauge, "temp_celsius"),
            ("odd", "foo bar", Kind::Gauge, "odd_foo_bar"),
            ("speed", "m/h", Kind::Gauge, "speed_meters_per_hour"),
            // Already there: not repeated.
            ("duration_seconds", "s", Kind::Histogram, "duration_seconds"),
            (
                "bytes_per_second",
                "By/s",
                Kind::Gauge,
                "bytes_per_second_per_second",
            ),
        ];
        for (n, unit, kind, want) in cases {
            assert_eq!(name(n, unit, kind), want, "{n} {unit}");
        }
    }

    #[test]
    fn counters_get_total_and_unit_one_gauges_get_ratio() {
        assert_eq!(name("requests", "", Kind::MonotonicSum), "requests_total");
        assert_eq!(
            name("requests.total", "", Kind::MonotonicSum),
            "requests_total"
        );
        assert_eq!(
            name("total.requests", "", Kind::MonotonicSum),
            "requests_total"
        );
        assert_eq!(
            name("cpu.time", "s", Kind::MonotonicSum),
            "cpu_time_seconds_total"
        );
        assert_eq!(
            name("queue.depth", "", Kind::NonMonotonicSum),
            "queue_depth"
        );
        assert_eq!(
            name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(name("ratio.cpu", "1", Kind::Gauge), "cpu_ratio");
        // Only gauges: a counter with unit 1 gets no suffix from it.
        assert_eq!(name("items", "1", Kind::MonotonicSum), "items_total");
        assert_eq!(name("items", "1", Kind::NonMonotonicSum), "items");
    }

    #[test]
    fn names_that_normalize_to_nothing_are_errors() {
        assert!(metric_name("...", "", Kind::Gauge).is_err());
        assert!(metric_name("", "", Kind::Gauge).is_err());
        // Suffixes make an empty base valid.
        assert_eq!(name("", "", Kind::MonotonicSum), "total");
    }

    #[test]
    fn label_names() {
        let cases = [
            ("http.method", "http_method"),
            ("service.instance.id", "service_instance_id"),
            ("0day", "key_0day"),
            ("_private", "key_private"),
            ("__reserved__", "__reserved__"),
            ("a-b c", "a_b_c"),
            ("é", "key_"),
            (".", "key_"),
            ("ok_name", "ok_name"),
        ];
        for (key, want) in cases {
            assert_eq!(label_name(key).as_deref(), Ok(want), "{key}");
        }
        assert!(label_name("").is_err());
        assert!(label_name("..").is_err(), "__ from .. is all underscores");
    }
}
