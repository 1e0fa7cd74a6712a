//! The HTML page: the headline numbers, the chart inline, the actions with their
//! reasons, the devices and the plan's settings. One file with no scripts, fonts or
//! images from anywhere: its Content-Security-Policy allows nothing to be fetched, so it
//! opens the same offline, in a ticket or from an archive years later.

use std::fmt::Write as _;

use plans::units::format_bytes;
use serde_json::Value;

use super::draw;
use super::svg::escape;
use super::view::View;
use super::words;
use crate::render::human::ms_text;

const STYLE: &str = "\
body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;margin:24px;color:#111;background:#fff;max-width:1200px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
p.msg{margin:0 0 12px;color:#333}\
table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}\
dl.numbers{display:flex;flex-wrap:wrap;gap:8px;margin:0}\
dl.numbers div{border:1px solid #ddd;border-radius:4px;padding:6px 10px;min-width:110px}\
dl.numbers dt{font-size:11px;color:#555}dl.numbers dd{margin:0;font-size:16px;font-weight:bold}\
figure{margin:16px 0;overflow-x:auto}\
.failed{color:#b71c1c}.ok{color:#1b5e20}\
footer{margin-top:24px;font-size:11px;color:#777}";

/// The page for `view`.
pub fn html(view: &View) -> String {
    let mut out = String::new();
    let ok = view.result == "migrated";
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&format!("vfio-migrate: {} {}", view.vm, view.result))
    );
    let _ = writeln!(
        out,
        "<h1 class=\"{}\">{}</h1>",
        if ok { "ok" } else { "failed" },
        escape(&words::headline(view))
    );
    // The message repeats the headline, or the `why` below says it: only a message the
    // page shows nowhere else is printed.
    if !view.msg.is_empty() && view.error.is_none() && !ok {
        let _ = writeln!(out, "<p class=\"msg\">{}</p>", escape(&view.msg));
    }
    numbers(&mut out, view);
    let _ = writeln!(out, "<figure>\n{}</figure>", draw::svg(view));
    actions(&mut out, view);
    devices(&mut out, view);
    plan(&mut out, view);
    let _ = writeln!(
        out,
        "<footer>Drawn by vfio-migrate {} from the run's JSON report. No scripts, no network.</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn numbers(out: &mut String, view: &View) {
    let mut cells: Vec<(&str, String)> = vec![
        ("result", view.result.clone()),
        (
            "VM runs on",
            view.running_on.clone().unwrap_or_else(|| "not reported".into()),
        ),
        ("total", ms_text(view.total_ms)),
        (
            "guest paused (measured)",
            view.paused_ms.map_or_else(|| "none".into(), ms_text),
        ),
    ];
    if let Some(d) = view.downtime_ms.filter(|_| view.result == "migrated") {
        cells.push(("downtime (QEMU)", ms_text(d)));
    }
    cells.push(("passes", view.passes.to_string()));
    cells.push(("bytes sent", format_bytes(view.transferred_bytes)));
    if let Some(v) = view.vfio_transferred_bytes {
        cells.push(("device state sent", format_bytes(v)));
    }
    if let Some(rc) = view.rc {
        cells.push(("exit code", rc.to_string()));
    }
    out.push_str("<dl class=\"numbers\">\n");
    for (name, value) in cells {
        let _ = writeln!(
            out,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(name),
            escape(&value)
        );
    }
    out.push_str("</dl>\n");
    if let Some(e) = &view.error {
        let _ = writeln!(out, "<p class=\"failed\">why: {}</p>", escape(e));
    }
    if let (Some(s), Some(d)) = (&view.source_state, &view.destination_state) {
        let _ = writeln!(
            out,
            "<p>QEMU at the end: source {}, destination {}</p>",
            escape(s),
            escape(d)
        );
    }
}

fn actions(out: &mut String, view: &View) {
    out.push_str("<h2>Policy actions</h2>\n");
    if view.actions.is_empty() {
        out.push_str("<p>None: the policy did not act.</p>\n");
        return;
    }
    out.push_str("<table class=\"actions\">\n<tr><th>#</th><th>pass</th><th>at</th><th>step</th><th>done</th><th>why</th></tr>\n");
    for (i, a) in view.actions.iter().enumerate() {
        let mut why = a.reason.clone();
        for s in &a.skipped {
            why.push_str(&format!(" [skipped {s}]"));
        }
        if let Some(f) = &a.failed {
            why.push_str(&format!(" [failed: {f}]"));
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>+{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            a.pass,
            escape(&ms_text(a.at)),
            escape(&a.step),
            escape(&words::action_label(a)),
            escape(&why)
        );
    }
    out.push_str("</table>\n");
}

fn devices(out: &mut String, view: &View) {
    out.push_str("<h2>VFIO devices</h2>\n");
    if view.devices.is_empty() {
        out.push_str("<p>None in this run.</p>\n");
        return;
    }
    out.push_str("<table class=\"devices\">\n<tr><th>device</th><th>pre-copy</th><th>states</th></tr>\n");
    for d in &view.devices {
        let states: Vec<String> = d
            .timeline
            .iter()
            .map(|c| format!("{} +{}", c.state, ms_text(c.at_ms)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.id),
            d.precopy.map_or("?", |p| if p { "yes" } else { "no" }),
            escape(&match states.is_empty() {
                true => "no state events".to_string(),
                false => states.join(" → "),
            })
        );
    }
    out.push_str("</table>\n");
    if let Some(at) = view.gate_opened_ms {
        let _ = writeln!(
            out,
            "<p>Every device was saving {} after migrate: the gate opened there.</p>",
            escape(&ms_text(at))
        );
    }
}

fn plan(out: &mut String, view: &View) {
    out.push_str("<h2>The plan's limits and policy</h2>\n");
    let Some(Value::Object(plan)) = &view.plan else {
        out.push_str("<p>This report does not carry the plan's settings.</p>\n");
        return;
    };
    out.push_str("<table class=\"plan\">\n");
    for section in ["limits", "convergence", "policy"] {
        let Some(Value::Object(keys)) = plan.get(section) else {
            continue;
        };
        for (key, value) in keys {
            let _ = writeln!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&format!("{section}.{key}")),
                escape(&words::value_text(value))
            );
        }
    }
    out.push_str("</table>\n");
}
