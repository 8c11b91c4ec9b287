//! The HTML pages: what a browser gets from the same URLs as the JSON API.
//!
//! Links are built from the path the request arrived at, so the pages work wherever the router
//! is nested. Everything that comes from a table or a request is escaped.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::Value;

use super::segment;
use crate::runtime::health::TableState;

/// Text made safe to put in HTML, inside elements and inside quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page.
fn page(title: &str, body: &str) -> String {
    page_with_head(title, "", body)
}

/// A whole page with more in its head (`head` is markup, not escaped).
fn page_with_head(title: &str, head: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{head}<title>{title} · faustus</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }}
td.value {{ font-family: ui-monospace, monospace; white-space: pre-wrap; }}
nav a {{ margin-right: 1rem; }}
.error {{ color: #a00; }}
.state {{ font-size: .85em; padding: .05rem .4rem; border-radius: .6rem; background: #eee; }}
.state.ready {{ background: #dfd; }}
.state.restoring, .state.starting {{ background: #ffd; }}
.state.unavailable {{ background: #fdd; }}
form {{ margin: 1rem 0; }}
</style>
</head>
<body>
{body}
</body>
</html>
"#,
        title = escape(title),
    )
}

/// The lookup form of a table (`table_url` has no trailing slash).
fn lookup_form(table_url: &str) -> String {
    format!(
        r#"<form id="lookup" method="get" action="{action}/">
<label for="key">Look a key up:</label>
<input id="key" name="key" type="text" required>
<button id="lookup-submit" type="submit">Look up</button>
</form>"#,
        action = escape(table_url),
    )
}

/// A JSON value as shown in a cell.
fn show(value: &Value) -> String {
    escape(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// The list of tables and where each stands (`base` is `/api/table` where the router is
/// mounted). While a table is not ready, the page reloads itself.
pub(super) fn tables_page(base: &str, tables: &BTreeMap<String, TableState>) -> String {
    let items: String = tables
        .iter()
        .map(|(name, state)| {
            format!(
                "<li><a class=\"table\" href=\"{}/{}/\">{}</a> <span class=\"state {state_name}\" title=\"{title}\">{state}</span></li>\n",
                escape(base),
                escape(&segment(name)),
                escape(name),
                state_name = state.name(),
                title = escape(&state.describe(&format!("table `{name}`"))),
                state = escape(&state_text(state)),
            )
        })
        .collect();
    let list = if tables.is_empty() {
        "<p>No public tables.</p>".to_string()
    } else {
        format!("<ul id=\"tables\">\n{items}</ul>")
    };
    let refresh = tables
        .values()
        .filter_map(TableState::retry_after)
        .min()
        .map(refresh_tag)
        .unwrap_or_default();
    page_with_head("Tables", &refresh, &format!("<h1>Tables</h1>\n{list}"))
}

/// A table's state in a few words: `ready`, `starting`, `restoring: 41%`.
fn state_text(state: &TableState) -> String {
    match state {
        TableState::Restoring(p) => match p.expected_records {
            Some(expected) if expected > 0 => format!(
                "restoring: {}%",
                (p.records.saturating_mul(100) / expected).min(99)
            ),
            _ => format!("restoring: {} records read", p.records),
        },
        other => other.name().to_string(),
    }
}

/// A tag that reloads the page after `seconds`.
fn refresh_tag(seconds: u64) -> String {
    format!("<meta http-equiv=\"refresh\" content=\"{seconds}\">\n")
}

/// A page of a table's entries.
#[allow(clippy::too_many_arguments)]
pub(super) fn table_page(
    table_url: &str,
    name: &str,
    entries: &[(String, Value)],
    number: u64,
    total: usize,
    previous: Option<&str>,
    next: Option<&str>,
) -> String {
    let tables_url = table_url.rsplit_once('/').map_or("", |(t, _)| t);
    let rows: String = entries
        .iter()
        .map(|(key, value)| {
            format!(
                "<tr><td class=\"key\"><a href=\"{}/{}/\">{}</a></td><td class=\"value\">{}</td></tr>\n",
                escape(table_url),
                escape(&segment(key)),
                escape(key),
                show(value)
            )
        })
        .collect();
    let link = |id: &str, text: &str, href: Option<&str>| match href {
        Some(h) => format!("<a id=\"{id}\" href=\"{}\">{text}</a>", escape(h)),
        None => String::new(),
    };
    let position = format!("Page {number} · {total} entries");
    let body = format!(
        r#"<nav><a id="all-tables" href="{tables}/">All tables</a></nav>
<h1>Table <code>{name}</code></h1>
{form}
<p id="position">{position}</p>
<table id="entries">
<thead><tr><th>Key</th><th>Value</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
<nav id="pages">{previous} {next}</nav>"#,
        tables = escape(tables_url),
        name = escape(name),
        form = lookup_form(table_url),
        previous = link("previous", "← Previous page", previous),
        next = link("next", "Next page →", next),
    );
    page(name, &body)
}

/// One key's value.
pub(super) fn key_page(table_url: &str, name: &str, key: &str, value: &Value) -> String {
    let body = format!(
        r#"<nav><a id="table" href="{table}/">Table {name}</a></nav>
<h1>Key <code id="key-name">{key}</code> in <code>{name}</code></h1>
<pre id="value" class="value">{value}</pre>
{form}"#,
        table = escape(table_url),
        name = escape(name),
        key = escape(key),
        value = show(value),
        form = lookup_form(table_url),
    );
    page(key, &body)
}

/// An error; one that says when to try again (a table that is restoring) reloads the page
/// then.
pub(super) fn error_page(status: StatusCode, message: &str, retry_after: Option<u64>) -> String {
    let again = match retry_after {
        Some(s) => format!(
            "\n<p id=\"retry\">This page reloads itself in {s} s, until the table is ready.</p>"
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>{}</h1>\n<p id=\"error\" class=\"error\">{}</p>{again}",
        escape(&status.to_string()),
        escape(message)
    );
    let head = retry_after.map(refresh_tag).unwrap_or_default();
    page_with_head(&status.to_string(), &head, &body)
}

/// The paragraph saying why process `id` did not answer (as `from_every_process` reports
/// it), if it did not.
fn process_error(id: &str, process: &Value) -> Option<String> {
    let error = process["error"].as_str()?;
    Some(format!(
        "<p class=\"error\">process {}: {}</p>\n",
        escape(id),
        escape(error)
    ))
}

/// The agents of every process (`processes` as `/api/agents/` answers): per agent its settings
/// and counts, and per assigned partition its in-flight events, positions and acked ranges.
pub(super) fn agents_page(processes: &[Value]) -> String {
    let mut body = String::from("<h1>Agents</h1>\n");
    let mut any = false;
    for process in processes {
        let id = process["process"].to_string();
        if let Some(error) = process_error(&id, process) {
            body.push_str(&error);
            continue;
        }
        for agent in process["agents"].as_array().into_iter().flatten() {
            any = true;
            body.push_str(&agent_section(&id, agent));
        }
    }
    if !any {
        body.push_str("<p>No agents.</p>\n");
    }
    // The page follows the agents as they work: it reloads itself.
    page_with_head("Agents", &refresh_tag(5), &body)
}

/// One agent of one process.
fn agent_section(process: &str, agent: &Value) -> String {
    let settings = &agent["settings"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let rows: String = agent["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ranges: Vec<String> = p["acked_ranges"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{}–{}", text(&r[0]), text(&r[1])))
                .collect();
            let blocked = p["blocked_ms"]
                .as_u64()
                .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                .unwrap_or_default();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&text(&p["partition"])),
                escape(&text(&p["in_flight"])),
                escape(&text(&p["buffered"])),
                escape(&text(&p["committed"])),
                escape(&text(&p["committable"])),
                escape(&ranges.join(", ")),
                escape(&blocked),
                if p["paused"].as_bool() == Some(true) {
                    "paused"
                } else {
                    ""
                },
            )
        })
        .collect();
    format!(
        "<section class=\"agent\">\n<h2>{name} <span class=\"state\">{state}</span></h2>\n\
         <p>process {process} · topic <code>{topic}</code> · concurrency {concurrency} · \
         handled {handled} · failed attempts {failed} · dead letters {dead}</p>\n\
         <table>\n<tr><th>partition</th><th>in flight</th><th>read ahead</th><th>committed</th>\
         <th>committable</th><th>acked ranges</th><th>blocked for</th><th></th></tr>\n{rows}</table>\n</section>\n",
        name = escape(&text(&settings["name"])),
        state = escape(&text(&agent["state"])),
        process = escape(process),
        topic = escape(&text(&settings["topic"])),
        concurrency = escape(&text(&settings["concurrency"])),
        handled = escape(&text(&agent["handled"])),
        failed = escape(&text(&agent["failed_attempts"])),
        dead = escape(&text(&agent["dead_lettered"])),
    )
}

/// The chords in progress on every process (`processes` as `/api/workflows/` answers, `now` in
/// milliseconds since 1970): per chord its size, members done and failed, and deadline; per
/// process the partitions of `<app>-chords` it coordinates. It reloads itself every 5 s.
pub(super) fn workflows_page(processes: &[Value], now: i64) -> String {
    let mut body = String::from("<h1>Workflows</h1>\n");
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let mut coordinators = String::new();
    let mut rows = String::new();
    for process in processes {
        let id = process["process"].to_string();
        if let Some(error) = process_error(&id, process) {
            body.push_str(&error);
            continue;
        }
        if process["coordinator"].as_bool() == Some(true) {
            let partitions: Vec<String> = process["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            let partitions = match partitions.is_empty() {
                true => {
                    "none now (other processes have them, or they are being assigned or rebuilt)"
                        .to_string()
                }
                false => partitions.join(", "),
            };
            coordinators.push_str(&format!(
                "<li>process {}: partitions {}</li>\n",
                escape(&id),
                escape(&partitions)
            ));
        }
        for chord in process["chords"].as_array().into_iter().flatten() {
            let deadline = chord["deadline"]
                .as_i64()
                .map(|ms| deadline_text(ms, now))
                .unwrap_or_else(|| "none".into());
            rows.push_str(&format!(
                "<tr data-chord=\"{chord}\"><td class=\"chord\">{chord}</td>\
                 <td class=\"process\">{}</td><td class=\"partition\">{}</td>\
                 <td class=\"size\">{}</td><td class=\"done\">{}</td>\
                 <td class=\"failed\">{}</td><td class=\"deadline\">{}</td></tr>\n",
                escape(&id),
                escape(&text(&chord["partition"])),
                escape(&text(&chord["size"])),
                escape(&text(&chord["done"])),
                escape(&text(&chord["failed"])),
                escape(&deadline),
                chord = escape(&text(&chord["chord"])),
            ));
        }
    }
    match coordinators.is_empty() {
        true => body.push_str(
            "<p id=\"coordinators\">No process runs the chord coordinator \
             (<code>App::chords</code>).</p>\n",
        ),
        false => body.push_str(&format!(
            "<p>The chord coordinator runs on:</p>\n<ul id=\"coordinators\">\n{coordinators}</ul>\n"
        )),
    }
    match rows.is_empty() {
        true => body.push_str("<p id=\"no-chords\">No chords in progress.</p>\n"),
        false => body.push_str(&format!(
            "<h2>Chords in progress</h2>\n<table id=\"chords\">\n<thead><tr><th>chord</th>\
             <th>process</th><th>partition</th><th>size</th><th>done</th><th>failed</th>\
             <th>deadline</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
        )),
    }
    page_with_head("Workflows", &refresh_tag(5), &body)
}

/// A chord's deadline (`at`) as a UTC time and how far it is from `now` (both in milliseconds
/// since 1970): `2026-12-02 15:04:05 UTC (in 59 min)`.
fn deadline_text(at: i64, now: i64) -> String {
    let seconds = at.div_euclid(1000);
    let (days, time) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = crate::timer::cron::civil_from_days(days);
    let left = (at - now) / 1000;
    let relative = match left {
        l if l < 0 => "passed".to_string(),
        l if l < 120 => format!("in {l} s"),
        l if l < 7200 => format!("in {} min", l / 60),
        l => format!("in {} h", l / 3600),
    };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC ({relative})",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_outside_is_escaped() {
        let html = table_page(
            "/api/table/t",
            "<script>",
            &[("\"><img src=x>".into(), Value::String("<b>&".into()))],
            1,
            1,
            None,
            Some("/api/table/t/?page=2&size=1"),
        );
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;b&gt;&amp;"));
        assert!(html.contains("href=\"/api/table/t/?page=2&amp;size=1\""));
        assert!(error_page(StatusCode::NOT_FOUND, "<x>", None).contains("&lt;x&gt;"));
        let tables = BTreeMap::from([(
            "<t>".to_string(),
            TableState::Unavailable {
                reason: "<i>".into(),
            },
        )]);
        let html = tables_page("/api/table", &tables);
        assert!(!html.contains("<t>") && !html.contains("<i>"), "{html}");
    }

    #[test]
    fn pages_of_tables_that_are_not_ready_reload_themselves() {
        let restoring = TableState::Restoring(crate::RestoreProgress {
            records: 250,
            expected_records: Some(1000),
            seconds: 1.0,
        });
        let tables = BTreeMap::from([
            ("a".to_string(), TableState::Ready),
            ("b".to_string(), restoring.clone()),
        ]);
        let html = tables_page("/api/table", &tables);
        assert!(html.contains(r#"<span class="state ready""#), "{html}");
        assert!(html.contains("restoring: 25%"), "{html}");
        // 750 records left at 250 records/s: 3 s.
        assert!(
            html.contains(r#"<meta http-equiv="refresh" content="3">"#),
            "{html}"
        );
        let ready = BTreeMap::from([("a".to_string(), TableState::Ready)]);
        assert!(!tables_page("/api/table", &ready).contains("refresh"));
        let error = error_page(StatusCode::SERVICE_UNAVAILABLE, "restoring", Some(3));
        assert!(error.contains(r#"content="3""#) && error.contains(r#"id="retry""#));
    }

    #[test]
    fn the_workflows_page_shows_each_chord_and_its_deadline_as_a_time() {
        let processes = [serde_json::json!({
            "process": 0,
            "coordinator": true,
            "partitions": [0, 2],
            "chords": [{
                "chord": "<c>", "partition": 2, "size": 4, "done": 2, "failed": 1,
                "deadline": 1_764_687_845_000_i64, "started": 0,
            }],
        })];
        let html = workflows_page(&processes, 1_764_687_845_000 - 3_540_000);
        assert!(html.contains(r#"<tr data-chord="&lt;c&gt;">"#), "{html}");
        assert!(html.contains(r#"<td class="failed">1</td>"#), "{html}");
        assert!(
            html.contains("2025-12-02 15:04:05 UTC (in 59 min)"),
            "{html}"
        );
        assert!(html.contains("partitions 0, 2"), "{html}");
        assert_eq!(deadline_text(0, 1_000), "1970-01-01 00:00:00 UTC (passed)");
        assert_eq!(
            deadline_text(951_782_400_000, 951_782_390_000),
            "2000-02-29 00:00:00 UTC (in 10 s)"
        );
        let idle = workflows_page(
            &[
                serde_json::json!({"process": 0, "coordinator": false, "partitions": [], "chords": []}),
            ],
            0,
        );
        assert!(
            idle.contains("No process runs the chord coordinator"),
            "{idle}"
        );
        assert!(idle.contains("No chords in progress"), "{idle}");
    }
}
