//! Users and groups as sysusers.d lines (`docs/stateless.md`): the tree's
//! `/etc/passwd` and `/etc/group` are made per machine by
//! systemd-sysusers, so every user and group the tree has that no
//! sysusers.d file declares gets a line, with its ids, in
//! `/usr/lib/sysusers.d/slate-image.conf`. Runs before `/etc` moves.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::confd::{Host, Log};
use crate::sysusers;
use crate::userdb;

pub const SYSUSERS: &str = "usr/lib/sysusers.d/slate-image.conf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tree's sysusers.d files do not load: {0}")]
    Config(String),
    #[error("/etc/passwd or /etc/group of the tree holds \"{0}\", which is not UTF-8: no sysusers.d line can carry it")]
    NotText(String),
}

/// The lines written.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Declared {
    pub lines: Vec<String>,
}

/// A sysusers.d field: quoted when empty or holding a space or a quote.
fn field(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    if s.contains([' ', '"', '\'', '\\']) {
        return format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    }
    s.to_string()
}

/// Declare the tree's undeclared users and groups.
pub fn declare(root: &Path) -> Result<Declared, Error> {
    let read = |p: &str| -> Result<Vec<u8>, Error> {
        let path = root.join(p);
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(Error::Io { path, source }),
        }
    };
    let passwd = userdb::parse_passwd(&read("etc/passwd")?);
    let groups = userdb::parse_group(&read("etc/group")?);
    let opts = sysusers::Options {
        root: Some(root.to_path_buf()),
        ..Default::default()
    };
    let r = opts.open_root().map_err(|source| Error::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut log = Log::default();
    let config = sysusers::load(&r, &opts, &Host::for_image(), &mut log)
        .map_err(|_| Error::Config(format!("{log:?}")))?;
    // sysusers.d lines are text: a field that is not UTF-8 has no line.
    let text = |f: &[u8]| {
        String::from_utf8(f.to_vec()).map_err(|_| Error::NotText(crate::object::name::escape(f)))
    };

    let mut out = Declared::default();
    // A `u` line makes the group of the user's name too, with the
    // user's id as its id: such a group needs no line of its own.
    let own_group = |p: &userdb::Passwd| {
        groups
            .iter()
            .any(|g| g.name == p.name && g.gid == p.gid && p.uid == p.gid)
    };
    for g in &groups {
        let name = text(&g.name)?;
        let by_user_line = passwd.iter().any(|p| p.name == g.name && own_group(p));
        if config.groups.contains_key(&name) || config.users.contains_key(&name) || by_user_line {
            continue;
        }
        out.lines.push(format!("g {} {}", field(&name), g.gid));
    }
    for p in &passwd {
        let name = text(&p.name)?;
        if config.users.contains_key(&name) {
            continue;
        }
        let id = if own_group(p) {
            p.uid.to_string()
        } else {
            format!("{}:{}", p.uid, p.gid)
        };
        out.lines.push(format!(
            "u {} {id} {} {} {}",
            field(&name),
            field(&text(&p.gecos)?),
            field(&text(&p.dir)?),
            field(&text(&p.shell)?),
        ));
    }
    for g in &groups {
        let name = text(&g.name)?;
        for m in &g.mem {
            let m = text(m)?;
            let declared = config.members.get(&name).is_some_and(|v| v.contains(&m));
            if !declared {
                out.lines.push(format!("m {} {}", field(&m), field(&name)));
            }
        }
    }
    if out.lines.is_empty() {
        return Ok(out);
    }
    let conf = root.join(SYSUSERS);
    let dir = conf.parent().expect("SYSUSERS has a parent");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut body = String::from("# Users and groups of the image (slate compose).\n");
    for l in &out.lines {
        body.push_str(l);
        body.push('\n');
    }
    let d = crate::fsutil::open_dir(dir).map_err(io(dir))?;
    crate::fsutil::atomic_write_at(&d, "slate-image.conf", body.as_bytes(), 0o644)
        .map_err(io(&conf))?;
    Ok(out)
}
