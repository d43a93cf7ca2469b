use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

const EXAMPLE: &str = r#"
[[mapping_rules]]
name = "cpu"
filter = { __name__ = "node_cpu_*", mode = "{user,system}" }
aggregations = ["last", "max"]
storage_policies = ["1m:40d", "1h:5y"]

[[mapping_rules]]
name = "no-debug"
filter = { __name__ = "debug_*" }
drop = true

[[rollup_rules]]
name = "requests-by-job"
filter = { __name__ = "http_requests_total" }
keep_original = false

[[rollup_rules.targets]]
storage_policies = ["1m:40d"]
pipeline = [
  { transform = "increase" },
  { rollup = { new_name = "job:http_requests:sum", group_by = ["job"], aggregations = ["sum"] } },
  { transform = "add" },
]
"#;

#[test]
fn parses_and_compiles_a_toml_rule_file() {
    let spec = RuleSetSpec::parse(EXAMPLE, false).expect("parse");
    let rules = RuleSet::new(spec.clone()).expect("valid");
    assert_eq!(rules.mapping.len(), 2);
    assert_eq!(
        rules.mapping[0].aggregations,
        [Aggregation::Last, Aggregation::Max]
    );
    let t = &rules.rollup[0].targets[0];
    assert_eq!(t.pre, [Transform::Increase]);
    assert_eq!(t.post, [Transform::Add]);
    assert_eq!(t.rollup.grouping, Grouping::By(vec!["job".into()]));
    let names: Vec<String> = rules.policies().iter().map(|p| p.to_string()).collect();
    assert_eq!(names, ["1m:40d", "1h:5y"]);
    // JSON round trip of the document.
    let json = serde_json::to_string(&spec).expect("json");
    assert_eq!(RuleSetSpec::parse(&json, true).expect("parse json"), spec);
}

#[test]
fn drops_and_keeps_follow_the_filters() {
    let rules = RuleSet::new(RuleSetSpec::parse(EXAMPLE, false).expect("parse")).expect("valid");
    assert!(rules.drops(&labels(&[("__name__", "debug_requests")])));
    assert!(!rules.drops(&labels(&[("__name__", "node_cpu_seconds_total")])));
    assert!(!rules.keeps_original(&labels(&[
        ("__name__", "http_requests_total"),
        ("job", "a")
    ])));
    assert!(rules.keeps_original(&labels(&[("__name__", "up")])));
}

#[test]
fn globs() {
    let m = |p: &str, v: &str| Glob::new(p).expect("glob").matches(v);
    assert!(m("http_*", "http_requests_total"));
    assert!(!m("http_*", "xhttp_"));
    assert!(m("a?c", "abc") && !m("a?c", "abbc"));
    assert!(m("{api,web}-*", "web-1") && !m("{api,web}-*", "db-1"));
    assert!(m("[a-c]x", "bx") && !m("[!a-c]x", "bx") && m("[!a-c]x", "dx"));
    assert!(m("!debug*", "info") && !m("!debug*", "debug_x"));
    assert!(m("a.b", "a.b") && !m("a.b", "axb"), "dots are literal");
    assert!(m("*", ""), "absent label is the empty string");
    assert!(Glob::new("[ab").is_err());
    assert!(Glob::new("{a,b").is_err());
}

#[test]
fn storage_policies_parse_and_print() {
    let p = StoragePolicy::parse("60s:40d").expect("policy");
    assert_eq!(p.resolution(), "1m");
    assert_eq!(p.to_string(), "1m:40d");
    assert_eq!(
        StoragePolicy::parse("1h:5y").expect("p").to_string(),
        "1h:5y"
    );
    assert_eq!(
        StoragePolicy::parse("10s:2d").expect("p").resolution_ms,
        10_000
    );
    for bad in ["1m", "1m:", "x:1d", "1q:1d", "0s:1d", "1d:1h", "-1s:1d"] {
        assert!(StoragePolicy::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn aggregations_compute() {
    let pts = [(1, 4.0), (2, 1.0), (3, 3.0), (4, 2.0)];
    assert_eq!(Aggregation::Last.apply(&pts), 2.0);
    assert_eq!(Aggregation::Min.apply(&pts), 1.0);
    assert_eq!(Aggregation::Max.apply(&pts), 4.0);
    assert_eq!(Aggregation::Sum.apply(&pts), 10.0);
    assert_eq!(Aggregation::Count.apply(&pts), 4.0);
    assert_eq!(Aggregation::Mean.apply(&pts), 2.5);
    assert_eq!(Aggregation::Percentile(5000).apply(&pts), 2.0);
    assert_eq!(Aggregation::Percentile(9900).apply(&pts), 4.0);
    assert_eq!(
        output_name("cpu", &[Aggregation::Last, Aggregation::Max], 1),
        "cpu:max"
    );
    assert_eq!(output_name("cpu", &[Aggregation::Max], 0), "cpu");
}

/// Every validation error names the field it is about.
#[test]
fn errors_name_the_field() {
    let bad = |toml: &str| {
        RuleSet::new(RuleSetSpec::parse(toml, false).expect("parse"))
            .unwrap_err()
            .field
    };
    let m = |body: &str| format!("[[mapping_rules]]\nname = \"m\"\n{body}");
    assert_eq!(
        bad(&m("filter = {}\nstorage_policies = [\"1m:1d\"]")),
        "mapping_rules[0].filter"
    );
    assert_eq!(
        bad(&m(
            "filter = { \"\" = \"x\" }\nstorage_policies = [\"1m:1d\"]"
        )),
        "mapping_rules[0].filter."
    );
    assert_eq!(
        bad(&m(
            "filter = { job = \"[x\" }\nstorage_policies = [\"1m:1d\"]"
        )),
        "mapping_rules[0].filter.job"
    );
    assert_eq!(
        bad(&m(
            "filter = { job = \"x\" }\nstorage_policies = [\"1m:1d\", \"2m\"]"
        )),
        "mapping_rules[0].storage_policies[1]"
    );
    assert_eq!(
        bad(&m("filter = { job = \"x\" }")),
        "mapping_rules[0].storage_policies"
    );
    assert_eq!(
        bad(&m(
            "filter = { job = \"x\" }\naggregations = [\"median\"]\nstorage_policies = [\"1m:1d\"]"
        )),
        "mapping_rules[0].aggregations[0]"
    );
    assert_eq!(
        bad(&m(
            "filter = { job = \"x\" }\ndrop = true\nstorage_policies = [\"1m:1d\"]"
        )),
        "mapping_rules[0].storage_policies"
    );
    // One retention per resolution across the rule set.
    assert_eq!(
        bad(&format!(
            "{}\n[[mapping_rules]]\nname = \"n\"\nfilter = {{ a = \"b\" }}\nstorage_policies = [\"1m:2d\"]",
            m("filter = { job = \"x\" }\nstorage_policies = [\"1m:1d\"]")
        )),
        "mapping_rules[1].storage_policies[0]"
    );
    assert_eq!(
        bad(&format!(
            "{}\n[[mapping_rules]]\nname = \"m\"\nfilter = {{ a = \"b\" }}\ndrop = true",
            m("filter = { job = \"x\" }\nstorage_policies = [\"1m:1d\"]")
        )),
        "mapping_rules[1].name"
    );
    let r = |pipeline: &str| {
        bad(&format!(
            "[[rollup_rules]]\nname = \"r\"\nfilter = {{ a = \"b\" }}\n[[rollup_rules.targets]]\nstorage_policies = [\"1m:1d\"]\npipeline = [{pipeline}]"
        ))
    };
    assert_eq!(
        r("{ transform = \"increase\" }"),
        "rollup_rules[0].targets[0].pipeline"
    );
    assert_eq!(
        r("{ transform = \"double\" }, { rollup = { new_name = \"x\" } }"),
        "rollup_rules[0].targets[0].pipeline[0].transform"
    );
    assert_eq!(
        r("{ rollup = { new_name = \"\" } }"),
        "rollup_rules[0].targets[0].pipeline[0].rollup.new_name"
    );
    assert_eq!(
        r("{ rollup = { new_name = \"x\", group_by = [\"a\"], exclude_by = [\"b\"] } }"),
        "rollup_rules[0].targets[0].pipeline[0].rollup.exclude_by"
    );
    assert_eq!(
        r("{ rollup = { new_name = \"x\" } }, { rollup = { new_name = \"y\" } }"),
        "rollup_rules[0].targets[0].pipeline[1]"
    );
    // Unknown fields are refused by the parser, naming the field.
    let e = RuleSetSpec::parse("[[mapping_rules]]\nnme = \"x\"", false).unwrap_err();
    assert!(e.reason.contains("nme"), "{e}");
}

#[test]
fn rollup_group_labels() {
    let by = Rollup {
        new_name: "sum_x".into(),
        grouping: Grouping::By(vec!["job".into()]),
        aggregations: vec![Aggregation::Sum],
    };
    let l = labels(&[("__name__", "x"), ("job", "a"), ("instance", "i1")]);
    assert_eq!(
        by.group_labels(&l),
        labels(&[("__name__", "sum_x"), ("job", "a")])
    );
    let ex = Rollup {
        grouping: Grouping::Excluding(vec!["instance".into()]),
        ..by
    };
    assert_eq!(
        ex.group_labels(&l),
        labels(&[("__name__", "sum_x"), ("job", "a")])
    );
}
