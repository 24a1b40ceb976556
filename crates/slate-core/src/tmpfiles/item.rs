//! A parsed line ([`Item`]), which types create or glob, and how two
//! lines for one path combine (`item_compatible()`, `item_compare()`).

use super::acl::Acl;

/// One line of configuration.
#[derive(Debug, Clone, Default)]
pub struct Item {
    /// The line type: `f`, `d`, `L`, ...
    pub kind: u8,
    /// Absolute, simplified, inside the root.
    pub path: String,
    /// The argument after unescaping and specifiers (or decoded base64, or
    /// a credential's content).
    pub argument: Option<Vec<u8>>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub acl_access: Option<Acl>,
    pub acl_default: Option<Acl>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
    pub mode_set: bool,
    pub uid_only_create: bool,
    pub gid_only_create: bool,
    pub mode_only_create: bool,
    pub mask_perms: bool,
    /// Age in microseconds.
    pub age: Option<u64>,
    pub age_by_file: u8,
    pub age_by_dir: u8,
    pub keep_first_level: bool,
    pub major_minor: (u32, u32),
    /// File attributes to set: (value, mask).
    pub attribute: Option<(u32, u32)>,
    pub append_or_force: bool,
    pub allow_failure: bool,
    pub try_replace: bool,
    /// Where the line is: `FILE:LINE`.
    pub line: String,
}

impl Item {
    /// The line's type with its modifiers, as written: `L+`, `f!`.
    pub fn type_text(&self) -> String {
        let mut t = (self.kind as char).to_string();
        if self.append_or_force {
            t.push('+');
        }
        if self.allow_failure {
            t.push('-');
        }
        if self.try_replace {
            t.push('=');
        }
        t
    }

    pub fn arg_text(&self) -> String {
        self.argument
            .as_deref()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default()
    }
}

/// Types whose path is a glob.
pub fn needs_glob(t: u8) -> bool {
    b"wxXrReAmzZtTaAhH".contains(&t)
}

/// Types that create (or own) what their path names.
pub fn takes_ownership(t: u8) -> bool {
    b"fFdeDvqQpLcbCwxXrR".contains(&t)
}

/// `item_compatible()`: two lines for one path that may both stay.
fn compatible(a: &Item, b: &Item) -> bool {
    if !(takes_ownership(a.kind) && takes_ownership(b.kind)) {
        return true;
    }
    a.argument == b.argument
        && a.uid == b.uid
        && a.uid_only_create == b.uid_only_create
        && a.gid == b.gid
        && a.gid_only_create == b.gid_only_create
        && a.mode_set == b.mode_set
        && a.mode == b.mode
        && a.mode_only_create == b.mode_only_create
        && a.age == b.age
        && a.age_by_file == b.age_by_file
        && a.age_by_dir == b.age_by_dir
        && a.mask_perms == b.mask_perms
        && a.keep_first_level == b.keep_first_level
        && a.major_minor == b.major_minor
}

/// `is_duplicated_item()`.
pub fn is_duplicate(existing: &[Item], i: &Item) -> bool {
    existing.iter().any(|e| {
        !(compatible(e, i)
            || (e.kind == b'w' && e.append_or_force && i.kind == b'w' && i.append_or_force))
    })
}

/// `item_compare()`: creating lines first, then by type.
pub fn sort_items(items: &mut [Item]) {
    items.sort_by_key(|i| (!takes_ownership(i.kind), i.kind));
}
