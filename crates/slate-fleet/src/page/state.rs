//! The machine page's kept state: the paths (names, sizes, when they last
//! changed; never contents), the log, and the replacement form.

use std::fmt::Write;

use super::html::{date, esc};
use crate::operators::Session;
use crate::state::operator::Listing;

pub fn section(l: &Listing, session: &Session) -> String {
    let mut out = String::from(
        "<h2>Kept state</h2><table id=\"state\"><tr><th>Path</th><th>Size</th>\
         <th>Mode</th><th>Owner</th><th>Changed</th></tr>\n",
    );
    for f in &l.files {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{} B</td><td>{:04o}</td><td>{}:{}</td><td>{}</td></tr>",
            esc(&f.path),
            f.size,
            f.mode,
            f.uid,
            f.gid,
            date(f.changed)
        );
    }
    out.push_str("</table>\n");
    if let Some(by) = &l.replaced_by {
        let _ = writeln!(
            out,
            "<p id=\"replaced\">Replaced by <a href=\"/machine/{b}\">{b}</a>.</p>",
            b = esc(by)
        );
    } else {
        if let Some(h) = &l.pending_hardware {
            let _ = writeln!(
                out,
                "<p id=\"pending\">Replacement approved for hardware <code>{}</code>.</p>",
                esc(h)
            );
        }
        let _ = writeln!(
            out,
            "<form method=\"post\" action=\"/machine/{id}/replace\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             Replace by the enrolled machine <input name=\"new\" size=\"34\"> \
             or by hardware id <input name=\"hardware\" size=\"38\"> \
             <button>Replace</button></form>",
            id = esc(&l.machine),
            csrf = esc(&session.csrf),
        );
    }
    if !l.log.is_empty() {
        out.push_str("<h3>State log</h3><ul id=\"state-log\">\n");
        for e in &l.log {
            let _ = writeln!(
                out,
                "<li>{} {}: {}</li>",
                date(e.at),
                esc(&e.event),
                esc(&e.detail)
            );
        }
        out.push_str("</ul>\n");
    }
    out
}
