//! What an image says of its versions and updates: the image's name and
//! version in its os-release (`IMAGE_ID=`, `IMAGE_VERSION=`), the remote
//! of `[remote]` in `/usr/lib/slate/remotes.d/`, and the update timer of
//! `[update]`: its policy file, its calendar in a drop-in, the timer
//! enabled.

use std::path::Path;

use super::image::{write_file, Added};
use super::manifest::Manifest;
use super::Error;
use crate::remotes::image as remote_image;

/// The real os-release; `/etc/os-release` links to it.
pub const OS_RELEASE: &str = "usr/lib/os-release";
pub const ETC_OS_RELEASE: &str = "etc/os-release";
/// The update units (shipped with Slate, `dist/systemd/`).
pub const UPGRADE_SERVICE: &str = "usr/lib/systemd/system/slate-upgrade.service";
pub const UPGRADE_TIMER: &str = "usr/lib/systemd/system/slate-upgrade.timer";
/// The timer's calendar from the manifest.
pub const TIMER_DROPIN: &str = "usr/lib/systemd/system/slate-upgrade.timer.d/slate-manifest.conf";
/// The link that enables the timer.
pub const TIMER_WANTS: &str = "usr/lib/systemd/system/timers.target.wants/slate-upgrade.timer";

pub(super) const UPGRADE_SERVICE_TEXT: &str =
    include_str!("../../../../dist/systemd/slate-upgrade.service");
pub(super) const UPGRADE_TIMER_TEXT: &str =
    include_str!("../../../../dist/systemd/slate-upgrade.timer");

/// `IMAGE_ID=` of an image's name: lower case letters, digits, `.`, `_`,
/// `-` (os-release(5)), other characters as `-`.
pub fn image_id(name: &str) -> String {
    let id: String = name
        .trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    id.trim_matches('-').to_string()
}

/// A value for os-release: bare when it is plain, else double-quoted
/// with `\`, `"`, `$` and `` ` `` escaped.
fn quoted(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+:~".contains(c))
    {
        return v.to_string();
    }
    let mut t = String::from('"');
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            t.push('\\');
        }
        t.push(c);
    }
    t.push('"');
    t
}

/// The os-release of the tree (`/usr/lib/os-release`, else a regular
/// `/etc/os-release`; no link followed) with `IMAGE_ID` and
/// `IMAGE_VERSION` set, the file's other lines kept; written as
/// `/usr/lib/os-release`, and `/etc/os-release` made a link to it.
pub fn os_release(root: &Path, m: &Manifest, out: &mut Added) -> Result<(), Error> {
    let regular = |rel: &str| {
        let p = root.join(rel);
        std::fs::symlink_metadata(&p)
            .is_ok_and(|md| md.is_file())
            .then_some(p)
    };
    let old = match regular(OS_RELEASE).or_else(|| regular(ETC_OS_RELEASE)) {
        Some(p) => std::fs::read(&p).map_err(Error::io(&p))?,
        None => Vec::new(),
    };
    let mut text = String::new();
    for line in String::from_utf8_lossy(&old).lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        if matches!(key, Some("IMAGE_ID" | "IMAGE_VERSION")) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    let id = image_id(m.image.name.get_ref());
    if !id.is_empty() {
        text.push_str(&format!("IMAGE_ID={}\n", quoted(&id)));
    }
    text.push_str(&format!(
        "IMAGE_VERSION={}\n",
        quoted(m.image.version.get_ref())
    ));
    write_file(root, OS_RELEASE, &text, out)?;
    let etc = root.join(ETC_OS_RELEASE);
    if std::fs::symlink_metadata(&etc).is_ok() {
        std::fs::remove_file(&etc).map_err(Error::io(&etc))?;
    }
    if root.join("etc").is_dir() {
        std::os::unix::fs::symlink("../usr/lib/os-release", &etc).map_err(Error::io(&etc))?;
    }
    Ok(())
}

/// `[remote]` into `remotes.d`; `[update]` into the policy file, the
/// timer's drop-in and its enabling link.
pub fn update_and_remote(root: &Path, m: &Manifest, out: &mut Added) -> Result<(), Error> {
    if let Some(r) = &m.remote {
        let r = r.get_ref();
        let config = r
            .config
            .as_ref()
            .expect("checked when the manifest was read");
        let rel = format!("{}/{}.toml", remote_image::REMOTES_D, r.name.get_ref());
        write_file(root, &rel, &remote_image::render_file(config), out)?;
    }
    let Some(u) = &m.update else {
        return Ok(());
    };
    let u = u.get_ref();
    if !root.join(UPGRADE_TIMER).is_file() {
        write_file(root, UPGRADE_SERVICE, UPGRADE_SERVICE_TEXT, out)?;
        write_file(root, UPGRADE_TIMER, UPGRADE_TIMER_TEXT, out)?;
    }
    write_file(
        root,
        crate::update_policy::IMAGE_FILE,
        &u.file().render(),
        out,
    )?;
    let mut dropin = String::from(
        "# From the image's manifest, [update] (slate compose).\n[Timer]\nOnCalendar=\n",
    );
    dropin.push_str(&format!("OnCalendar={}\n", u.schedule()));
    if let Some(d) = &u.randomized_delay {
        dropin.push_str(&format!("RandomizedDelaySec={}\n", d.get_ref().trim()));
    }
    write_file(root, TIMER_DROPIN, &dropin, out)?;
    let link = root.join(TIMER_WANTS);
    let dir = link.parent().expect("a folder");
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("../slate-upgrade.timer", &link).map_err(Error::io(&link))?;
    }
    out.enabled.push("slate-upgrade.timer".into());
    Ok(())
}
