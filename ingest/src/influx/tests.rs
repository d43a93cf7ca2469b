//! Conformance tests from InfluxDB's line-protocol reference (syntax, types,
//! escaping, comments, timestamps) and M3's mapping to Prometheus names.

use super::*;

const NOW_MS: i64 = 1_700_000_000_000;

fn run(body: &str) -> Parsed {
    run_with(body, Precision::Nanoseconds, &SeriesCache::new(100))
}

fn run_with(body: &str, precision: Precision, cache: &SeriesCache) -> Parsed {
    parse(
        body.as_bytes(),
        precision,
        NOW_MS,
        &SeriesLimits::default(),
        cache,
    )
}

/// `name{labels}` -> samples, sorted, for comparisons.
fn samples(p: &Parsed) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out: Vec<_> = p
        .series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v)).collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn only_error(body: &str) -> String {
    let p = run(body);
    assert_eq!(
        p.rejected,
        1,
        "{body:?} should be rejected: {:?}",
        samples(&p)
    );
    assert!(p.series.is_empty(), "{body:?}");
    p.first_error.expect("error").1
}

#[test]
fn m3s_documented_example() {
    let p = run("weather,location=us-midwest temperature=82,wind=42 1556813561098000000");
    assert_eq!(
        samples(&p),
        vec![
            (
                r#"weather_temperature{location="us-midwest"}"#.into(),
                vec![(1_556_813_561_098, 82.0)]
            ),
            (
                r#"weather_wind{location="us-midwest"}"#.into(),
                vec![(1_556_813_561_098, 42.0)]
            ),
        ]
    );
    assert_eq!((p.lines, p.samples, p.rejected), (1, 2, 0));
}

#[test]
fn field_types_follow_the_reference() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("1.0", 1.0),
        ("-1.234456e+78", -1.234456e78),
        ("1E3", 1000.0),
        ("1e-3", 0.001),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0", -0.0),
        ("1i", 1.0),
        ("12485903i", 12_485_903.0),
        ("-12485903i", -12_485_903.0),
        ("9223372036854775807i", 9_223_372_036_854_775_807.0),
        ("-9223372036854775808i", -9_223_372_036_854_775_808.0),
        ("0u", 0.0),
        ("18446744073709551615u", 18_446_744_073_709_551_615.0),
        ("t", 1.0),
        ("T", 1.0),
        ("true", 1.0),
        ("True", 1.0),
        ("TRUE", 1.0),
        ("f", 0.0),
        ("F", 0.0),
        ("false", 0.0),
        ("False", 0.0),
        ("FALSE", 0.0),
    ];
    for (raw, want) in cases {
        let p = run(&format!("m v={raw} 1000000"));
        assert_eq!(p.rejected, 0, "{raw}: {:?}", p.first_error);
        assert_eq!(samples(&p), vec![("m_v".into(), vec![(1, *want)])], "{raw}");
    }
}

#[test]
fn invalid_field_values_are_named() {
    let cases: &[(&str, &str)] = &[
        ("+1", "invalid field value"),
        ("1e", "invalid field value"),
        ("1.2.3", "invalid field value"),
        ("NaN", "invalid field value"),
        ("inf", "invalid field value"),
        ("0x10", "invalid field value"),
        ("1_000", "invalid field value"),
        ("tru", "invalid field value"),
        ("yes", "invalid field value"),
        ("1.5i", "invalid field value"),
        ("-1u", "invalid field value"),
        ("i", "invalid field value"),
        ("1e400", "out of range"),
        ("9223372036854775808i", "out of range"),
        ("18446744073709551616u", "out of range"),
        ("'single'", "invalid field value"),
    ];
    for (raw, needle) in cases {
        let msg = only_error(&format!("m v={raw}"));
        assert!(msg.contains(needle), "{raw}: {msg}");
        assert!(msg.contains("field v"), "{raw}: {msg}");
    }
}

#[test]
fn string_fields_are_parsed_and_skipped() {
    // The reference's own example: only a string field, so no series.
    let p =
        run(r#"myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000"#);
    assert_eq!((p.lines, p.rejected, p.series.len()), (1, 0, 0));
    // Quotes, backslashes, commas, spaces and equals signs inside strings.
    let p = run(r#"m s="a \"q\" \\ b, c=d e",f=1,t="",u="Launch 🚀" 2000000"#);
    assert_eq!(p.rejected, 0, "{:?}", p.first_error);
    assert_eq!(samples(&p), vec![("m_f".into(), vec![(2, 1.0)])]);
    // A string is not a number, whatever it holds.
    let p = run(r#"m f="1""#);
    assert!(p.series.is_empty() && p.rejected == 0);
}

#[test]
fn escapes_in_every_element() {
    let p = run(concat!(
        r#"my\ Measurement,tag\ Key1=tag\ Value1,a\,b=v\,x,c\=d=e\=f,q=it's\ "quoted" "#,
        r"field\ x\,y\=z=1 3000000"
    ));
    assert_eq!(p.rejected, 0, "{:?}", p.first_error);
    let s = &p.series[0];
    assert_eq!(s.labels.metric_name(), Some("my_Measurement_field_x_y_z"));
    assert_eq!(s.labels.get("tag_Key1"), Some("tag Value1"));
    assert_eq!(s.labels.get("a_b"), Some("v,x"));
    assert_eq!(s.labels.get("c_d"), Some("e=f"));
    assert_eq!(s.labels.get("q"), Some(r#"it's "quoted""#));
    // An unescaped '=' is part of a measurement (only ',' and space need
    // escaping there); an escaped comma too.
    assert_eq!(
        samples(&run("a=b f=1 0")),
        vec![("a_b_f".into(), vec![(0, 1.0)])]
    );
    assert_eq!(
        samples(&run(r"m\,n f=1 0")),
        vec![("m_n_f".into(), vec![(0, 1.0)])]
    );
    // Emoji and other UTF-8 in tag values is kept as it is.
    let p = run("myMeasurement,tagKey=🍭 fieldKey=1 0");
    assert_eq!(p.series[0].labels.get("tagKey"), Some("🍭"));
}

#[test]
fn backslashes_follow_the_reference_table() {
    // (written, read): two contiguous backslashes are one escaped backslash;
    // a lone one is literal.
    let table = [
        (r"\", r"\"),
        (r"\\", r"\"),
        (r"\\\", r"\\"),
        (r"\\\\", r"\\"),
        (r"\\\\\", r"\\\"),
        (r"\\\\\\", r"\\\"),
    ];
    for (written, read) in table {
        assert_eq!(unescape(written, KEY_ESCAPES), read, "{written}");
        assert_eq!(unescape(written, MEASUREMENT_ESCAPES), read, "{written}");
        // In a tag value (followed by a letter so no space is escaped).
        let p = run(&format!("m,t=a{written}b f=1 0"));
        assert_eq!(p.rejected, 0, "{written}: {:?}", p.first_error);
        assert_eq!(
            p.series[0].labels.get("t"),
            Some(format!("a{read}b").as_str())
        );
    }
    // `\\` then a comma: the comma is unescaped and starts the tag set.
    let p = run(r"m\\,t=v f=1 0");
    assert_eq!(samples(&p), vec![(r#"m__f{t="v"}"#.into(), vec![(0, 1.0)])]);
    // A backslash before an ordinary character stays.
    let p = run(r"m,t=a\b f=1 0");
    assert_eq!(p.series[0].labels.get("t"), Some(r"a\b"));
}

#[test]
fn m3_name_rules() {
    assert_eq!(metric_name("cpu.load", "1min"), "cpu_load_1min");
    assert_eq!(metric_name("9lives", "x"), "_lives_x");
    assert_eq!(metric_name("a:b", "c:d"), "a:b_c:d");
    assert_eq!(metric_name("héllo", "wörld"), "h__llo_w__rld");
    assert_eq!(metric_name("_m", "-"), "_m__");
    assert_eq!(label_name("1abc"), "_abc");
    assert_eq!(label_name("a-b.c:d"), "a_b_c_d");
    assert_eq!(label_name("é"), "__");
    assert_eq!(label_name("__replica__"), "__replica__");
    // Through the parser: rewritten label names, untouched values.
    let p = run("disk.io,host-name=a.b,9z=x read-bytes=5 0");
    assert_eq!(
        samples(&p),
        vec![(
            r#"disk_io_read_bytes{_z="x", host_name="a.b"}"#.into(),
            vec![(0, 5.0)]
        )]
    );
}

#[test]
fn tags_that_collide_after_rewriting_reject_the_point() {
    for line in ["m,a=1,a=2 f=1", "m,a-b=1,a_b=2 f=1", "m,__name__=x f=1"] {
        let msg = only_error(line);
        assert!(msg.contains("duplicate"), "{line}: {msg}");
    }
}

#[test]
fn timestamps_and_precisions() {
    let cases: &[(&str, Precision, i64)] = &[
        (
            "1556813561098765432",
            Precision::Nanoseconds,
            1_556_813_561_098,
        ),
        (
            "1556813561098765",
            Precision::Microseconds,
            1_556_813_561_098,
        ),
        ("1556813561098", Precision::Milliseconds, 1_556_813_561_098),
        ("1556813561", Precision::Seconds, 1_556_813_561_000),
        ("25946892", Precision::Minutes, 1_556_813_520_000),
        ("432448", Precision::Hours, 1_556_812_800_000),
        ("-1", Precision::Nanoseconds, -1),
        ("-1500", Precision::Microseconds, -2),
        ("0", Precision::Seconds, 0),
        (
            "9223372036854775806",
            Precision::Nanoseconds,
            9_223_372_036_854,
        ),
        (
            "-9223372036854775806",
            Precision::Nanoseconds,
            -9_223_372_036_855,
        ),
    ];
    for (ts, precision, want) in cases {
        let p = run_with(&format!("m f=1 {ts}"), *precision, &SeriesCache::new(0));
        assert_eq!(p.rejected, 0, "{ts} {precision:?}: {:?}", p.first_error);
        assert_eq!(p.series[0].samples[0].t, *want, "{ts} {precision:?}");
    }
    // No timestamp: the time the request arrived; trailing blanks are fine.
    for line in ["m f=1", "m f=1 ", "m f=1\t", "m f=1  1000000  "] {
        let p = run(line);
        assert_eq!(p.rejected, 0, "{line:?}: {:?}", p.first_error);
    }
    assert_eq!(run("m f=1").series[0].samples[0].t, NOW_MS);
    let bad: &[(&str, Precision, &str)] = &[
        (
            "9223372036854775807",
            Precision::Nanoseconds,
            "out of range",
        ),
        (
            "-9223372036854775807",
            Precision::Nanoseconds,
            "out of range",
        ),
        ("9223372037", Precision::Seconds, "out of range"),
        (
            "99999999999999999999",
            Precision::Nanoseconds,
            "out of range",
        ),
        ("12a", Precision::Nanoseconds, "invalid timestamp"),
        ("1.5", Precision::Nanoseconds, "invalid timestamp"),
        ("-", Precision::Nanoseconds, "invalid timestamp"),
        ("1 2", Precision::Nanoseconds, "after the timestamp"),
    ];
    for (ts, precision, needle) in bad {
        let p = run_with(&format!("m f=1 {ts}"), *precision, &SeriesCache::new(0));
        let msg = p.first_error.map(|e| e.1).unwrap_or_default();
        assert!(msg.contains(needle), "{ts} {precision:?}: {msg:?}");
    }
}

#[test]
fn precision_names() {
    for (name, want) in [
        (None, Precision::Nanoseconds),
        (Some(""), Precision::Nanoseconds),
        (Some("n"), Precision::Nanoseconds),
        (Some("ns"), Precision::Nanoseconds),
        (Some("u"), Precision::Microseconds),
        (Some("us"), Precision::Microseconds),
        (Some("ms"), Precision::Milliseconds),
        (Some("s"), Precision::Seconds),
        (Some("m"), Precision::Minutes),
        (Some("h"), Precision::Hours),
    ] {
        assert_eq!(Precision::parse(name), Ok(want), "{name:?}");
    }
    for bad in ["d", "MS", "sec", "1s"] {
        assert!(Precision::parse(Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn comments_blank_lines_whitespace_and_crlf() {
    let body =
        "# a comment\n\n   \n  \tm f=1 1000000\r\n   # an indented comment\n#m f=2\nm f=3 2000000";
    let p = run(body);
    assert_eq!((p.lines, p.rejected), (2, 0), "{:?}", p.first_error);
    assert_eq!(samples(&p), vec![("m_f".into(), vec![(1, 1.0), (2, 3.0)])]);
    // Extra spaces between the sections are accepted.
    let p = run("m,t=v   f=1    1000000");
    assert_eq!(samples(&p), vec![(r#"m_f{t="v"}"#.into(), vec![(1, 1.0)])]);
    // An empty body is no points and no error.
    assert_eq!(run("").lines, 0);
}

#[test]
fn syntax_errors_are_named() {
    let cases: &[(&str, &str)] = &[
        ("m", "missing fields"),
        ("m ", "missing fields"),
        ("m,t=v", "missing fields"),
        (",t=1 f=1", "missing measurement"),
        ("m,t f=1", "missing tag value"),
        ("m,t= f=1", "missing tag value"),
        ("m,=v f=1", "missing tag key"),
        ("m, f=1", "missing tag key"),
        ("m,t=v, f=1", "missing tag key"),
        ("m,t=a=b f=1", "unescaped '='"),
        ("m f", "missing field value"),
        ("m f=", "missing field value"),
        ("m f=1,", "missing field key"),
        ("m =1", "missing field key"),
        ("m f=1,g", "missing field value"),
        ("m f=1,,g=2", "missing field key"),
        (r#"m f="abc"#, "unterminated string"),
        (r#"m f="a\""#, "unterminated string"),
        (r#"m f="a"x"#, "after the closing quote"),
        ("m f=1 x", "invalid timestamp"),
        (r"m,t=x\ f=1", "missing fields"),
    ];
    for (line, needle) in cases {
        let msg = only_error(line);
        assert!(msg.contains(needle), "{line:?}: {msg}");
    }
}

#[test]
fn bad_lines_are_reported_by_number_and_good_ones_kept() {
    let body = "m f=1 1000000\n\n# comment\nm f\nm f=2 2000000\nm,t=a=b g=1\n";
    let p = run(body);
    assert_eq!((p.lines, p.rejected, p.samples), (4, 2, 2));
    let (line, reason) = p.first_error.clone().expect("error");
    assert_eq!(line, 4);
    assert!(reason.contains("missing field value"), "{reason}");
    assert!(reason.contains(r#""m f""#), "the line is quoted: {reason}");
    let msg = p.error().expect("error").to_string();
    assert!(
        msg.starts_with("2 of 4 lines rejected; first: line 4:"),
        "{msg}"
    );
    // Invalid UTF-8 is a bad line, not a bad request.
    let mut body = b"m f=1 0\nm,t=".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b" f=1 0\n");
    let p = parse(
        &body,
        Precision::Nanoseconds,
        NOW_MS,
        &SeriesLimits::default(),
        &SeriesCache::new(10),
    );
    assert_eq!((p.samples, p.rejected), (1, 1));
    assert_eq!(p.first_error.map(|e| e.0), Some(2));
}

#[test]
fn series_repeated_across_lines_share_one_entry_and_repeated_fields_keep_the_last() {
    let p = run("m,h=a f=1,g=2 1000000\nm,h=b f=3 1000000\nm,h=a f=4 2000000\nm f=1,f=9 0");
    assert_eq!(p.series.len(), 4);
    assert_eq!(
        samples(&p),
        vec![
            ("m_f".into(), vec![(0, 9.0)]),
            (r#"m_f{h="a"}"#.into(), vec![(1, 1.0), (2, 4.0)]),
            (r#"m_f{h="b"}"#.into(), vec![(1, 3.0)]),
            (r#"m_g{h="a"}"#.into(), vec![(1, 2.0)]),
        ]
    );
}

#[test]
fn limits_reject_the_line() {
    let limits = SeriesLimits {
        max_label_value_length: 4,
        max_label_names_per_series: 3,
        ..Default::default()
    };
    let cache = SeriesCache::new(10);
    let p = parse(
        b"m,t=toolong f=1 0\nm,a=1,b=2,c=3 f=1 0\nm,a=1,b=2 f=1 0",
        Precision::Nanoseconds,
        NOW_MS,
        &limits,
        &cache,
    );
    assert_eq!((p.rejected, p.samples), (2, 1));
    assert!(
        p.first_error
            .expect("error")
            .1
            .contains("longer than 4 bytes"),
        "value limit"
    );
}

#[test]
fn a_warm_cache_gives_the_same_series() {
    let body =
        "cpu,host=a,region=eu usage=1,idle=2 1000000\ncpu,host=b usage=3 1000000\nbad line\n";
    let cache = SeriesCache::new(100);
    let cold = run_with(body, Precision::Nanoseconds, &cache);
    let warm = run_with(body, Precision::Nanoseconds, &cache);
    assert_eq!(samples(&cold), samples(&warm));
    assert_eq!(cold.first_error, warm.first_error);
    assert_eq!(samples(&cold).len(), 3);
    // A cached series key is not re-parsed, but a key seen with only string
    // fields is still checked.
    let p = run_with("cpu,host= s=\"x\"", Precision::Nanoseconds, &cache);
    assert_eq!(p.rejected, 1);
}
