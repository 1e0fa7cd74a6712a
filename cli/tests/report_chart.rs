//! The drawn report's structure, on reports the simulator wrote (`vfio-migrate demo
//! --sim --scenario ... --output json`, kept under `tests/fixtures/reports/`): one
//! polyline per series, a marker per policy action, a span per device state, the pause
//! and the gate where the report puts them, and every bit of report text escaped.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use vfio_migrate::chart::{draw, lanes, page, series, View};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reports")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn view(report: &Value) -> View {
    View::from_value(report.clone()).expect("a report")
}

/// The start tags named `tag` in `svg` whose attributes contain `attr`.
fn tags<'a>(svg: &'a str, tag: &str, attr: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    svg.match_indices(&open)
        .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap_or(svg.len() - i)])
        .filter(|t| t.contains(attr))
        .collect()
}

/// Checks that every element is closed in order: the SVG is well-formed enough for a
/// browser's XML parser (text is escaped, so `<` and `>` only start and end tags).
fn assert_balanced(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("every tag ends") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "</{name}> closes the wrong element"
            );
        } else if !["meta", "br"].contains(&name.as_str()) {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

/// The structure every report's chart must have.
fn assert_chart_matches_report(report: &Value) {
    let view = view(report);
    let svg = draw::svg(&view);
    assert_balanced(&svg);
    for s in series::series(&view) {
        let lines = tags(&svg, "polyline", &format!(r#"data-series="{}""#, s.id));
        assert_eq!(lines.len(), 1, "one polyline for {}", s.id);
        let points = lines[0].split("points=\"").nth(1).unwrap_or("");
        let n = points.split('"').next().unwrap_or("").split_whitespace().count();
        assert_eq!(n, s.points.len(), "{} has a vertex per point", s.id);
    }
    assert_eq!(
        tags(&svg, "polyline", "").len(),
        series::series(&view).len(),
        "no other polylines"
    );
    let actions = report["actions"].as_array().map_or(0, Vec::len);
    assert_eq!(tags(&svg, "g", r#"class="action""#).len(), actions);
    assert_eq!(tags(&svg, "circle", r#"class="action-marker""#).len(), actions);
    assert_eq!(tags(&svg, "text", r#"class="action-label""#).len(), actions);
    for (i, a) in report["actions"].as_array().into_iter().flatten().enumerate() {
        let marker = tags(&svg, "g", r#"class="action""#)[i];
        assert!(marker.contains(&format!(
            r#"data-action="{}""#,
            a["action"].as_str().unwrap_or("")
        )));
        assert!(marker.contains(&format!(r#"data-at-ms="{}""#, a["at"])));
    }
    let devices = report["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(tags(&svg, "g", r#"class="lane""#).len(), devices.len());
    for d in &devices {
        let timeline = d["timeline"].as_array().cloned().unwrap_or_default();
        let lane_start = svg
            .find(&format!(r#"data-device="{}""#, d["id"].as_str().unwrap_or("")))
            .expect("a lane per device");
        let lane = &svg[lane_start..lane_start + svg[lane_start..].find("</g>").unwrap_or(0)];
        let spans = tags(lane, "rect", r#"class="state""#);
        assert_eq!(spans.len(), timeline.len(), "a span per state of {}", d["id"]);
        for (span, change) in spans.iter().zip(&timeline) {
            assert!(span.contains(&format!(
                r#"data-state="{}""#,
                change["state"].as_str().unwrap_or("")
            )));
            assert!(span.contains(&format!(r#"data-from-ms="{}""#, change["at_ms"])));
        }
    }
    let pauses = tags(&svg, "g", r#"class="pause""#);
    match report["paused_ms"].as_u64() {
        Some(ms) => {
            assert_eq!(pauses.len(), 1);
            assert!(pauses[0].contains(&format!(r#"data-ms="{ms}""#)));
            if let Some(at) = report["paused_at_ms"].as_u64() {
                assert!(pauses[0].contains(&format!(r#"data-from-ms="{at}""#)));
            }
        }
        None => assert!(pauses.is_empty()),
    }
    let gates = tags(&svg, "g", r#"class="gate""#);
    assert_eq!(gates.len(), usize::from(report["gate_opened_ms"].is_u64()));
    let html = page::html(&view);
    assert_balanced(&html);
    assert!(html.contains(&svg), "the page holds the same chart");
    assert!(!html.contains("<script"), "no scripts");
    let without_namespace = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !without_namespace.contains("http:") && !without_namespace.contains("https:"),
        "nothing fetched"
    );
}

#[test]
fn a_converging_run_with_two_devices_draws_every_series_each_devices_states_the_gate_and_the_pause() {
    let report = fixture("converge-two-devices.json");
    assert_chart_matches_report(&report);
    let ids: Vec<&str> = series::series(&view(&report)).iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "remaining-samples",
            "remaining-passes",
            "threshold",
            "dirty-kernel",
            "dirty-stats",
            "bandwidth"
        ]
    );
    let svg = draw::svg(&view(&report));
    assert_eq!(tags(&svg, "g", r#"class="lane""#).len(), 2);
    assert!(tags(&svg, "g", r#"class="pause""#).len() == 1);
}

#[test]
fn an_aborted_run_draws_its_abort_where_it_happened_with_its_reason_and_no_pause() {
    let report = fixture("abort.json");
    assert_chart_matches_report(&report);
    let svg = draw::svg(&view(&report));
    let action = tags(&svg, "g", r#"data-action="abort""#);
    assert_eq!(action.len(), 1);
    let reason = report["actions"][0]["reason"].as_str().expect("a reason");
    assert!(svg.contains(reason), "the reason is the marker's tooltip");
    assert!(tags(&svg, "g", r#"class="pause""#).is_empty());
}

#[test]
fn a_forced_run_draws_the_raise_and_the_threshold_line_steps_up_with_it() {
    let report = fixture("force.json");
    assert_chart_matches_report(&report);
    let v = view(&report);
    let threshold = series::series(&v)
        .into_iter()
        .find(|s| s.id == "threshold")
        .expect("a threshold line");
    let raised_at = report["actions"][0]["at"].as_u64().expect("when");
    let to_ms = report["actions"][0]["to_ms"].as_u64().expect("the new limit") as f64;
    let bandwidth = |at: u64| {
        v.samples
            .iter()
            .find(|s| s.at_ms == at)
            .map(|s| s.bandwidth as f64)
    };
    for (at, value) in threshold.points {
        let limit = if at >= raised_at { to_ms } else { 1000.0 };
        assert_eq!(
            Some(value),
            bandwidth(at).map(|b| b * limit / 1000.0),
            "at {at}ms"
        );
    }
}

#[test]
fn a_throttled_run_draws_its_throttle() {
    let report = fixture("throttle.json");
    assert_chart_matches_report(&report);
    assert_eq!(
        tags(&draw::svg(&view(&report)), "g", r#"data-action="throttle""#).len(),
        1
    );
}

#[test]
fn a_run_without_devices_says_so_instead_of_drawing_lanes() {
    let report = fixture("converge-no-devices.json");
    assert_chart_matches_report(&report);
    let svg = draw::svg(&view(&report));
    assert!(svg.contains("no VFIO devices in this run"));
}

#[test]
fn a_run_that_ended_at_preflight_draws_an_empty_chart_that_says_why() {
    let report = fixture("not-ready.json");
    assert_chart_matches_report(&report);
    let svg = draw::svg(&view(&report));
    assert!(svg.contains("no measurements"));
    assert!(page::html(&view(&report)).contains("cannot connect"));
}

#[test]
fn an_older_report_without_samples_or_rate_sources_draws_boundaries_and_says_what_is_missing() {
    let mut report = fixture("force.json");
    let object = report.as_object_mut().expect("an object");
    for key in ["samples", "paused_at_ms", "plan"] {
        object.remove(key);
    }
    for p in object["pass_history"].as_array_mut().expect("passes") {
        p.as_object_mut().expect("a pass").remove("dirty_rate_source");
    }
    assert_chart_matches_report(&report);
    let v = view(&report);
    let ids: Vec<&str> = series::series(&v).iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        ["remaining-passes", "threshold", "dirty-unrecorded", "bandwidth"]
    );
    let raised_at = report["actions"][0]["at"].as_u64().expect("when");
    let threshold = series::series(&v).into_iter().find(|s| s.id == "threshold");
    assert!(
        threshold.is_some_and(|t| t.points.iter().all(|(at, _)| *at >= raised_at)),
        "without the plan, the limit is known only from the raise on"
    );
    let svg = draw::svg(&v);
    assert!(svg.contains("this report has no samples"));
    assert!(svg.contains("the threshold line starts at the first raise"));
    assert!(
        svg.contains("placed at the end"),
        "the pause is placed where it must have been"
    );
}

#[test]
fn markup_in_the_vm_name_device_ids_and_reasons_stays_text() {
    let mut report = fixture("abort.json");
    report["vm"] = Value::from(r#"<script>alert("x")</script> & co"#);
    report["devices"][0]["id"] = Value::from("gpu<0>&");
    report["actions"][0]["reason"] = Value::from("dirty > link & <b>stuck</b>");
    let v = view(&report);
    for doc in [draw::svg(&v), page::html(&v)] {
        assert!(!doc.contains("<script"), "{doc}");
        assert!(!doc.contains("<b>"));
        assert!(doc.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"));
        assert!(doc.contains("gpu&lt;0&gt;&amp;"));
        assert_balanced(&doc);
    }
}

#[test]
fn each_device_span_lasts_until_its_next_state() {
    let report = fixture("converge-two-devices.json");
    let v = view(&report);
    let spans = lanes::spans(&v.devices[0], v.end_ms());
    assert_eq!(spans.len(), v.devices[0].timeline.len());
    assert_eq!(spans.last().map(|s| s.to_ms), Some(v.end_ms()));
}

#[test]
fn a_file_that_is_no_report_is_refused_with_a_reason() {
    assert!(View::from_json("not json").is_err());
    assert!(View::from_json("[1, 2]").is_err());
    let check_answer = r#"{"changed": false, "failed": true, "msg": "x", "rc": 3, "rows": []}"#;
    assert!(View::from_json(check_answer).is_err());
}

#[test]
fn the_last_report_line_of_ndjson_draws_like_the_json_report() {
    let report = fixture("abort.json");
    let mut tagged = report.clone();
    tagged["event"] = Value::from("report");
    let ndjson = format!("{{\"event\":\"phase\",\"phase\":\"connect\"}}\n{tagged}\n");
    let from_lines = View::from_json(&ndjson).expect("a report line");
    assert_eq!(draw::svg(&from_lines), draw::svg(&view(&report)));
}

fn bin() -> Command {
    Command::cargo_bin("vfio-migrate").expect("binary")
}

#[test]
fn report_draws_a_saved_report_into_html_and_svg_files() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports/force.json");
    let (html, svg) = (dir.path().join("r.html"), dir.path().join("r.svg"));
    let out = bin()
        .args(["-o", "json", "report"])
        .arg(&input)
        .arg("--html")
        .arg(&html)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(answer["rc"], 0);
    assert_eq!(answer["changed"], false);
    let page = std::fs::read_to_string(&html).expect("the page");
    assert!(page.starts_with("<!DOCTYPE html>"));
    let chart = std::fs::read_to_string(&svg).expect("the chart");
    assert!(chart.starts_with("<?xml"));
    assert!(chart.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
}

#[test]
fn report_refuses_a_file_that_is_no_report_with_exit_2_and_a_json_answer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("plan.toml");
    std::fs::write(&input, "[vm]\nname = \"x\"\n").expect("write");
    let out = bin()
        .args(["-o", "json", "report"])
        .arg(&input)
        .arg("--html")
        .arg(dir.path().join("r.html"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(answer["failed"], true);
    assert!(
        answer["msg"].as_str().unwrap_or("").contains("not JSON"),
        "{answer}"
    );
    assert!(!dir.path().join("r.html").exists());
}

#[test]
fn report_needs_somewhere_to_draw() {
    bin().args(["report", "x.json"]).assert().code(2);
}

#[test]
fn drawing_options_are_refused_on_commands_that_run_no_migration() {
    bin()
        .args(["--report-html", "x.html", "validate", "plan.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("draw a run's report"));
}

#[test]
fn a_run_that_cannot_reach_its_hosts_still_draws_its_report_and_keeps_its_exit_code() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[vm]\nname = \"DB-Primary\"\n[source]\nqmp = \"unix:/nonexistent/vfio-migrate-test/s.qmp\"\n\
         [destination]\nqmp = \"unix:/nonexistent/vfio-migrate-test/d.qmp\"\nlisten = \"tcp:127.0.0.1:49152\"\n",
    )
    .expect("write plan");
    let html = dir.path().join("run.html");
    let out = bin()
        .env("VFIO_MIGRATE_STATE_DIR", dir.path().join("state"))
        .args(["-o", "json", "migrate"])
        .arg(&plan)
        .arg("--report-html")
        .arg(&html)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("stdout stays one JSON report");
    assert_eq!(answer["vm"], "DB-Primary");
    let page = std::fs::read_to_string(&html).expect("the page was drawn");
    assert!(page.contains("DB-Primary"));
}
