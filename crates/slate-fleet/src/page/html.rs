//! The page's HTML, rendered on the server: readable without JavaScript,
//! every value from a machine or a database escaped.

use std::fmt::Write;

use crate::operators::Session;
use crate::records::{Group, HistoryEntry, MachineRow};
use crate::rollout::Rollout;

/// Text made safe for HTML content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

pub(crate) fn date(ts: i64) -> String {
    slate_core::summary::date(ts)
}

fn short(c: &Option<String>) -> String {
    esc(c.as_deref().map_or("-", |c| c.get(..12).unwrap_or(c)))
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}\
.blessed{color:#070}.pending{color:#a60}.bad{color:#b00}form.inline{display:inline}\
progress{width:12em}";

pub fn layout(title: &str, session: Option<&Session>, body: &str) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{} · Slate fleet</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    if let Some(s) = session {
        let _ = writeln!(
            out,
            "<header><a href=\"/\">Machines</a> · signed in as {} \
             <form class=\"inline\" method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></header>",
            esc(&s.operator),
            esc(&s.csrf)
        );
    }
    let _ = write!(out, "<h1>{}</h1>\n{body}</body></html>\n", esc(title));
    out
}

pub fn login(error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(e) = error {
        let _ = writeln!(body, "<p class=\"bad\" id=\"error\">{}</p>", esc(e));
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\">\
         <p><label>Name <input name=\"name\" id=\"name\" autocomplete=\"username\" required></label></p>\
         <p><label>Password <input type=\"password\" name=\"password\" id=\"password\" \
         autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\" id=\"login\">Sign in</button></p></form>\n",
    );
    layout("Sign in", None, &body)
}

fn rollout_html(out: &mut String, g: &Group, r: &Rollout, csrf: &str) {
    let _ = write!(
        out,
        "<p>Rollout {} to <code>{}</code>: <strong class=\"state\" id=\"state-{}\">{}</strong>, \
         {} failures of {} allowed.</p>\n<table><tr><th>Wave</th><th>Share</th><th>Progress</th>\
         <th>Done</th><th>Failed</th><th></th></tr>\n",
        r.id,
        esc(&r.commit),
        esc(&g.name),
        esc(&r.state),
        r.failures,
        r.max_failures
    );
    let percents: Vec<&str> = r.waves.split(',').collect();
    for (i, c) in r.counts.iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}%</td><td><progress value=\"{}\" max=\"{}\">{}/{}</progress></td>\
             <td>{}/{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(percents.get(i).unwrap_or(&"?")),
            c.done,
            c.machines.max(1),
            c.done,
            c.machines,
            c.done,
            c.machines,
            c.failed,
            if (i as u64) < r.opened { "open" } else { "closed" }
        );
    }
    out.push_str("</table>\n");
    let actions: &[&str] = match r.state.as_str() {
        "running" => &["pause", "abort"],
        "paused" => &["resume", "abort"],
        _ => &[],
    };
    for a in actions {
        let _ = writeln!(
            out,
            "<form class=\"inline\" method=\"post\" action=\"/rollout/{g}/{a}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"{a}-{g}\">{label}</button></form>",
            g = esc(&g.name),
            csrf = esc(csrf),
            label = match *a {
                "pause" => "Pause",
                "resume" => "Resume",
                _ => "Abort",
            }
        );
    }
}

pub struct MachinesPage<'a> {
    pub machines: &'a [MachineRow],
    pub total: u64,
    pub page: u64,
    pub per_page: u64,
    pub groups: &'a [(Group, Option<Rollout>)],
    pub session: &'a Session,
}

pub fn machines(p: &MachinesPage) -> String {
    let mut out = String::new();
    out.push_str("<h2>Groups</h2>\n");
    for (g, r) in p.groups {
        let _ = writeln!(
            out,
            "<h3>{}</h3><p>Follows <code>{}</code>; {} machines.</p>",
            esc(&g.name),
            esc(&g.follows),
            g.machines
        );
        match r {
            Some(r) => rollout_html(&mut out, g, r, &p.session.csrf),
            None => out.push_str("<p>No rollout.</p>\n"),
        }
    }
    let pages = p.total.div_ceil(p.per_page).max(1);
    let _ = writeln!(
        out,
        "<h2>Machines</h2><p id=\"count\">{} machines; page {} of {}.</p>",
        p.total,
        p.page + 1,
        pages
    );
    out.push_str(
        "<table id=\"machines\"><tr><th>Machine</th><th>Hostname</th><th>Group</th>\
         <th>Version</th><th>Commit</th><th>Health</th><th>Drift</th><th>Last seen</th></tr>\n",
    );
    for m in p.machines {
        let health = m.health.map_or("unknown", |h| h.as_str());
        let _ = writeln!(
            out,
            "<tr><td><a href=\"/machine/{id}\">{short}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"{health}\">{health}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.hostname),
            esc(&m.group),
            esc(m.booted_version.as_deref().unwrap_or("-")),
            short(&m.booted_commit),
            m.drift_etc.unwrap_or(0) + m.drift_var.unwrap_or(0),
            date(m.last_seen),
            id = esc(&m.machine),
            short = esc(m.machine.get(..12).unwrap_or(&m.machine)),
        );
    }
    out.push_str("</table>\n<p>");
    if p.page > 0 {
        let _ = write!(
            out,
            "<a href=\"/?page={}\" rel=\"prev\">Previous</a> ",
            p.page - 1
        );
    }
    if p.page + 1 < pages {
        let _ = write!(
            out,
            "<a href=\"/?page={}\" rel=\"next\">Next</a>",
            p.page + 1
        );
    }
    out.push_str("</p>\n");
    layout("Fleet", Some(p.session), &out)
}

pub fn machine(
    m: &MachineRow,
    history: &[HistoryEntry],
    state: &crate::state::operator::Listing,
    session: &Session,
) -> String {
    let mut out = String::new();
    let health = m.health.map_or("unknown", |h| h.as_str());
    let _ = writeln!(
        out,
        "<table><tr><th>Machine</th><td>{}</td></tr><tr><th>Hostname</th><td>{}</td></tr>\
         <tr><th>Group</th><td>{}</td></tr><tr><th>Health</th><td class=\"{health}\">{health}</td></tr>\
         <tr><th>Booted</th><td>{} ({})</td></tr><tr><th>Staged</th><td>{}</td></tr>\
         <tr><th>Drift</th><td>/etc {} · /var {}</td></tr>\
         <tr><th>Enrolled</th><td>{}</td></tr><tr><th>Last seen</th><td>{}</td></tr></table>",
        esc(&m.machine),
        esc(&m.hostname),
        esc(&m.group),
        esc(m.booted_commit.as_deref().unwrap_or("-")),
        esc(m.booted_version.as_deref().unwrap_or("-")),
        esc(m.staged_commit.as_deref().unwrap_or("-")),
        m.drift_etc.unwrap_or(0),
        m.drift_var.unwrap_or(0),
        date(m.enrolled),
        date(m.last_seen),
    );
    out.push_str(
        "<h2>History</h2><table id=\"history\"><tr><th>Received</th><th>Health</th>\
         <th>Commit</th><th>Version</th><th>Uptime</th><th>Agent</th></tr>\n",
    );
    for h in history {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"{hl}\">{hl}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td></tr>",
            date(h.received),
            short(&h.booted_commit),
            esc(h.booted_version.as_deref().unwrap_or("-")),
            h.report["uptime_secs"].as_u64().unwrap_or(0),
            esc(h.report["agent_version"].as_str().unwrap_or("-")),
            hl = h.health.as_str(),
        );
    }
    out.push_str("</table>\n");
    out.push_str(&super::state::section(state, session));
    layout(&format!("Machine {}", m.hostname), Some(session), &out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            super::esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
