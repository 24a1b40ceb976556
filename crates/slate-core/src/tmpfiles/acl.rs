//! POSIX ACLs for `a`/`A` lines: the text form of acl(5) as libacl reads
//! it, the kernel's `system.posix_acl_*` xattr encoding, and the merging
//! systemd-tmpfiles does (`a+`), its mask computation and its base entries
//! taken from the file's mode.

/// Entry tags, as the kernel numbers them.
pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;

const UNDEFINED_ID: u32 = u32::MAX;
const XATTR_VERSION: u32 = 2;
pub const ACCESS_XATTR: &str = "system.posix_acl_access";
pub const DEFAULT_XATTR: &str = "system.posix_acl_default";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    /// The user or group id of `USER`/`GROUP` entries.
    pub id: u32,
    /// `r`=4, `w`=2, `x`=1.
    pub perm: u16,
}

/// An ACL: its entries in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl(pub Vec<Entry>);

/// Resolves a user (`true`) or group (`false`) name to its id.
pub type Resolve<'a> = dyn FnMut(bool, &str) -> Option<u32> + 'a;

impl Acl {
    /// The short text form of acl(5) (`u::rwx,g:adm:r-x,m::r-x,o::---`,
    /// several entries separated by `,` or whitespace), as
    /// `acl_from_text()` reads it. Names go through `resolve`.
    pub fn from_text(text: &str, resolve: &mut Resolve<'_>) -> Option<Acl> {
        let mut out = Vec::new();
        for raw in text.split([',', '\n', ' ', '\t']) {
            let raw = raw.split('#').next().unwrap_or_default().trim();
            if raw.is_empty() {
                continue;
            }
            out.push(parse_entry(raw, resolve)?);
        }
        if out.is_empty() {
            return None;
        }
        Some(Acl(out))
    }

    fn has(&self, tag: u16) -> bool {
        self.0.iter().any(|e| e.tag == tag)
    }

    /// `calc_acl_mask_if_needed()`: when there are named entries and no
    /// mask, add one that is the union of the group class.
    pub fn add_mask_if_needed(&mut self) {
        if self.has(MASK) || !self.0.iter().any(|e| e.tag == USER || e.tag == GROUP) {
            return;
        }
        let perm = self
            .0
            .iter()
            .filter(|e| matches!(e.tag, USER | GROUP_OBJ | GROUP))
            .fold(0, |p, e| p | e.perm);
        self.0.push(Entry {
            tag: MASK,
            id: UNDEFINED_ID,
            perm,
        });
    }

    /// `add_base_acls_if_needed()`: the owner, group and other entries
    /// that are missing, from the file's mode.
    pub fn add_base_from_mode(&mut self, mode: u32) {
        for (tag, shift) in [(USER_OBJ, 6), (GROUP_OBJ, 3), (OTHER, 0)] {
            if !self.has(tag) {
                self.0.push(Entry {
                    tag,
                    id: UNDEFINED_ID,
                    perm: ((mode >> shift) & 7) as u16,
                });
            }
        }
    }

    /// The ACL a file without an access ACL has: its mode bits.
    pub fn from_mode(mode: u32) -> Acl {
        let mut a = Acl::default();
        a.add_base_from_mode(mode);
        a
    }

    /// `acls_for_file()`: every entry of `new` replaces the same entry of
    /// `self` (same tag and, for named entries, same id) or is added.
    pub fn merge(&mut self, new: &Acl) {
        for n in &new.0 {
            match self
                .0
                .iter_mut()
                .find(|e| e.tag == n.tag && (!matches!(n.tag, USER | GROUP) || e.id == n.id))
            {
                Some(e) => e.perm = n.perm,
                None => self.0.push(*n),
            }
        }
    }

    /// The kernel's xattr encoding, entries sorted as it requires.
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut entries = self.0.clone();
        entries.sort_by_key(|e| (e.tag, e.id));
        let mut out = XATTR_VERSION.to_le_bytes().to_vec();
        for e in entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            let id = if matches!(e.tag, USER | GROUP) {
                e.id
            } else {
                UNDEFINED_ID
            };
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Decode the kernel's xattr encoding.
    pub fn from_xattr(data: &[u8]) -> Option<Acl> {
        if data.len() < 4 || !(data.len() - 4).is_multiple_of(8) {
            return None;
        }
        let mut out = Vec::new();
        for c in data[4..].chunks_exact(8) {
            out.push(Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            });
        }
        Some(Acl(out))
    }

    /// The abbreviated text form, numeric ids (for messages).
    pub fn to_text(&self) -> String {
        let mut entries = self.0.clone();
        entries.sort_by_key(|e| (e.tag, e.id));
        entries
            .iter()
            .map(|e| {
                let (t, q) = match e.tag {
                    USER_OBJ => ("u", String::new()),
                    USER => ("u", e.id.to_string()),
                    GROUP_OBJ => ("g", String::new()),
                    GROUP => ("g", e.id.to_string()),
                    MASK => ("m", String::new()),
                    _ => ("o", String::new()),
                };
                let p = |bit: u16, c: char| if e.perm & bit != 0 { c } else { '-' };
                format!("{t}:{q}:{}{}{}", p(4, 'r'), p(2, 'w'), p(1, 'x'))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_entry(raw: &str, resolve: &mut Resolve<'_>) -> Option<Entry> {
    let mut parts = raw.splitn(3, ':');
    let tag = parts.next()?.trim();
    let second = parts.next()?;
    let third = parts.next();
    let (tag, qualifier, perms) = match tag {
        "u" | "user" | "g" | "group" => {
            let user = tag.starts_with('u');
            let q = second.trim();
            let perms = third?;
            if q.is_empty() {
                (if user { USER_OBJ } else { GROUP_OBJ }, UNDEFINED_ID, perms)
            } else {
                let id = match q.parse::<u32>() {
                    Ok(n) if n != UNDEFINED_ID => n,
                    Ok(_) => return None,
                    Err(_) => resolve(user, q)?,
                };
                (if user { USER } else { GROUP }, id, perms)
            }
        }
        "m" | "mask" | "o" | "other" => {
            let t = if tag.starts_with('m') { MASK } else { OTHER };
            match third {
                Some(p) if second.trim().is_empty() => (t, UNDEFINED_ID, p),
                Some(_) => return None,
                None => (t, UNDEFINED_ID, second),
            }
        }
        _ => return None,
    };
    let mut perm = 0u16;
    for c in perms.trim().chars() {
        perm |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => return None,
        };
    }
    Some(Entry {
        tag,
        id: qualifier,
        perm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mask_base_and_encoding() {
        let mut resolve = |user: bool, name: &str| match (user, name) {
            (false, "adm") => Some(4),
            _ => None,
        };
        let mut a = Acl::from_text("group:adm:r-x,u:1000:rw", &mut resolve).expect("parse");
        a.add_mask_if_needed();
        assert_eq!(
            a.0.last(),
            Some(&Entry {
                tag: MASK,
                id: UNDEFINED_ID,
                perm: 7
            })
        );
        a.add_base_from_mode(0o640);
        assert_eq!(
            a.to_text(),
            "u::rw-,u:1000:rw-,g::r--,g:4:r-x,m::rwx,o::---"
        );
        let back = Acl::from_xattr(&a.to_xattr()).expect("decode");
        assert_eq!(back.to_text(), a.to_text());
        assert!(Acl::from_text("user:nobody-here:r", &mut resolve).is_none());
        assert!(Acl::from_text("u:1:q", &mut resolve).is_none());
        assert!(Acl::from_text("m:rw", &mut resolve).is_some());
        let mut m = Acl::from_mode(0o755);
        m.merge(&Acl::from_text("o::-,u:7:r", &mut resolve).expect("p"));
        assert_eq!(m.to_text(), "u::rwx,u:7:r--,g::r-x,o::---");
    }
}
