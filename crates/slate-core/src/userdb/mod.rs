//! The user and group databases, shared by `sysusers` (which writes them)
//! and `tmpfiles` (which resolves owner names in them): `/etc/passwd`,
//! `/etc/shadow`, `/etc/group` and `/etc/gshadow`, read and written exactly
//! as glibc's `fgetpwent()`/`putpwent()` family does, so that rewriting a
//! file gives the bytes systemd-sysusers gives: blank and comment lines and
//! lines that do not parse are dropped, every kept entry is re-serialised
//! field by field. [`Names`] answers name lookups inside a root.

mod names;

pub use names::Names;

/// A field as bytes: the files need not be UTF-8.
pub type Field = Vec<u8>;

/// Whether the name is a NIS compat entry (`+…` or `-…`).
pub fn is_nis(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'+' | b'-'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: Field,
    pub passwd: Field,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Field,
    pub dir: Field,
    pub shell: Field,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub name: Field,
    pub pwd: Field,
    pub lstchg: i64,
    pub min: i64,
    pub max: i64,
    pub warn: i64,
    pub inact: i64,
    pub expire: i64,
    pub flag: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: Field,
    pub passwd: Field,
    pub gid: u32,
    pub mem: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GShadow {
    pub name: Field,
    pub passwd: Field,
    pub adm: Vec<Field>,
    pub mem: Vec<Field>,
}

/// The lines glibc's readers look at: leading whitespace skipped, empty and
/// `#` lines ignored, the text up to the newline.
fn entry_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&c| c == b'\n').filter_map(|l| {
        let start = l.iter().position(|c| !is_space(*c))?;
        let l = &l[start..];
        (l.first() != Some(&b'#')).then_some(l)
    })
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A cursor over one line, splitting on `:` as glibc's `STRING_FIELD` does:
/// a missing field is empty.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn string(&mut self) -> Field {
        match self.rest.iter().position(|&c| c == b':') {
            Some(p) => {
                let f = self.rest[..p].to_vec();
                self.rest = &self.rest[p + 1..];
                f
            }
            None => {
                let f = self.rest.to_vec();
                self.rest = &[];
                f
            }
        }
    }

    fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    /// `strtoull()` then the field terminator, as `INT_FIELD` does. `None`
    /// means the line does not parse.
    fn int(&mut self) -> Option<u64> {
        let (v, used) = strtoull(self.rest)?;
        self.finish_int(used).then_some(v)
    }

    /// `INT_FIELD_MAYBE_NULL`: an empty field gives `default`.
    fn int_or(&mut self, default: u64) -> Option<u64> {
        if self.rest.is_empty() {
            return None;
        }
        let (v, used) = strtoull(self.rest).unwrap_or((default, 0));
        self.finish_int(used).then_some(v)
    }

    fn finish_int(&mut self, used: usize) -> bool {
        match self.rest.get(used) {
            Some(b':') => {
                self.rest = &self.rest[used + 1..];
                true
            }
            None => {
                self.rest = &[];
                true
            }
            Some(_) => false,
        }
    }

    /// A `,`-separated list up to `stop` (or the end): leading blanks of each
    /// element skipped, empty elements dropped.
    fn list(&mut self, stop: Option<u8>) -> Vec<Field> {
        let end = stop
            .and_then(|s| self.rest.iter().position(|&c| c == s))
            .unwrap_or(self.rest.len());
        let field = &self.rest[..end];
        self.rest = if end < self.rest.len() {
            &self.rest[end + 1..]
        } else {
            &[]
        };
        field
            .split(|&c| c == b',')
            .map(|e| &e[e.iter().position(|c| !is_space(*c)).unwrap_or(e.len())..])
            .filter(|e| !e.is_empty())
            .map(|e| e.to_vec())
            .collect()
    }
}

/// `strtoull(s, &end, 10)`: leading whitespace, a sign, digits. `None` when
/// there are no digits (glibc then reports the field as unparsable).
fn strtoull(s: &[u8]) -> Option<(u64, usize)> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(s[i] - b'0')))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    if overflow {
        v = u64::MAX;
    } else if neg {
        v = v.wrapping_neg();
    }
    Some((v, i))
}

pub fn parse_passwd(data: &[u8]) -> Vec<Passwd> {
    entry_lines(data).filter_map(passwd_line).collect()
}

fn passwd_line(line: &[u8]) -> Option<Passwd> {
    let mut c = Cursor { rest: line };
    let name = c.string();
    if c.at_end() && is_nis(&name) {
        return Some(Passwd {
            name,
            passwd: vec![],
            uid: 0,
            gid: 0,
            gecos: vec![],
            dir: vec![],
            shell: vec![],
        });
    }
    let passwd = c.string();
    let (uid, gid) = if is_nis(&name) {
        (c.int_or(0)?, c.int_or(0)?)
    } else {
        (c.int()?, c.int()?)
    };
    let gecos = c.string();
    let dir = c.string();
    let shell = c.rest.to_vec();
    Some(Passwd {
        name,
        passwd,
        uid: uid as u32,
        gid: gid as u32,
        gecos,
        dir,
        shell,
    })
}

pub fn parse_shadow(data: &[u8]) -> Vec<Shadow> {
    entry_lines(data).filter_map(shadow_line).collect()
}

fn shadow_line(line: &[u8]) -> Option<Shadow> {
    let mut c = Cursor { rest: line };
    let name = c.string();
    let long = |v: u64| i64::from(v as u32 as i32);
    let none = u64::MAX;
    if c.at_end() && is_nis(&name) {
        return Some(Shadow {
            name,
            pwd: vec![],
            lstchg: 0,
            min: 0,
            max: 0,
            warn: 0,
            inact: 0,
            expire: 0,
            flag: 0,
        });
    }
    let pwd = c.string();
    let lstchg = long(c.int_or(none)?);
    let min = long(c.int_or(none)?);
    let max = long(c.int_or(none)?);
    while c.rest.first().is_some_and(|b| is_space(*b)) {
        c.rest = &c.rest[1..];
    }
    let (warn, inact, expire, flag) = if c.at_end() {
        (-1, -1, -1, u64::MAX)
    } else {
        let warn = long(c.int_or(none)?);
        let inact = long(c.int_or(none)?);
        let expire = long(c.int_or(none)?);
        let flag = if c.at_end() {
            u64::MAX
        } else {
            c.int_or(none)?
        };
        (warn, inact, expire, flag)
    };
    Some(Shadow {
        name,
        pwd,
        lstchg,
        min,
        max,
        warn,
        inact,
        expire,
        flag,
    })
}

pub fn parse_group(data: &[u8]) -> Vec<Group> {
    entry_lines(data).filter_map(group_line).collect()
}

fn group_line(line: &[u8]) -> Option<Group> {
    let mut c = Cursor { rest: line };
    let name = c.string();
    let (passwd, gid) = if c.at_end() && is_nis(&name) {
        (vec![], 0)
    } else {
        let passwd = c.string();
        let gid = if is_nis(&name) {
            c.int_or(0)?
        } else {
            c.int()?
        };
        (passwd, gid as u32)
    };
    let mem = c.list(None);
    Some(Group {
        name,
        passwd,
        gid,
        mem,
    })
}

pub fn parse_gshadow(data: &[u8]) -> Vec<GShadow> {
    entry_lines(data).filter_map(gshadow_line).collect()
}

fn gshadow_line(line: &[u8]) -> Option<GShadow> {
    let mut c = Cursor { rest: line };
    let name = c.string();
    if c.at_end() && is_nis(&name) {
        return Some(GShadow {
            name,
            passwd: vec![],
            adm: vec![],
            mem: vec![],
        });
    }
    let passwd = c.string();
    let adm = c.list(Some(b':'));
    let mem = c.list(None);
    Some(GShadow {
        name,
        passwd,
        adm,
        mem,
    })
}

fn join(out: &mut Vec<u8>, list: &[Field]) {
    for (i, m) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
}

/// `putpwent()`.
pub fn put_passwd(out: &mut Vec<u8>, p: &Passwd) {
    let gecos: Vec<u8> = p
        .gecos
        .iter()
        .map(|&c| if c == b':' || c == b'\n' { b' ' } else { c })
        .collect();
    out.extend_from_slice(&p.name);
    out.push(b':');
    out.extend_from_slice(&p.passwd);
    if is_nis(&p.name) {
        out.extend_from_slice(b":::");
    } else {
        out.extend_from_slice(format!(":{}:{}:", p.uid, p.gid).as_bytes());
    }
    for (i, f) in [&gecos, &p.dir, &p.shell].into_iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.extend_from_slice(f);
    }
    out.push(b'\n');
}

/// `putspent()`: `-1` numbers and an all-ones flag are written empty.
pub fn put_shadow(out: &mut Vec<u8>, s: &Shadow) {
    out.extend_from_slice(&s.name);
    out.push(b':');
    out.extend_from_slice(&s.pwd);
    out.push(b':');
    for v in [s.lstchg, s.min, s.max, s.warn, s.inact, s.expire] {
        if v != -1 {
            out.extend_from_slice(v.to_string().as_bytes());
        }
        out.push(b':');
    }
    if s.flag != u64::MAX {
        out.extend_from_slice((s.flag as i64).to_string().as_bytes());
    }
    out.push(b'\n');
}

/// `putgrent()`.
pub fn put_group(out: &mut Vec<u8>, g: &Group) {
    out.extend_from_slice(&g.name);
    out.push(b':');
    out.extend_from_slice(&g.passwd);
    if is_nis(&g.name) {
        out.extend_from_slice(b"::");
    } else {
        out.extend_from_slice(format!(":{}:", g.gid).as_bytes());
    }
    join(out, &g.mem);
    out.push(b'\n');
}

/// `putsgent()`.
pub fn put_gshadow(out: &mut Vec<u8>, g: &GShadow) {
    out.extend_from_slice(&g.name);
    out.push(b':');
    out.extend_from_slice(&g.passwd);
    out.push(b':');
    join(out, &g.adm);
    out.push(b':');
    join(out, &g.mem);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_passwd(s: &str) -> String {
        let mut out = Vec::new();
        for p in parse_passwd(s.as_bytes()) {
            put_passwd(&mut out, &p);
        }
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn passwd_like_glibc() {
        assert_eq!(
            roundtrip_passwd("root:x:0:0:root:/root:/bin/bash\n# c\n\n  bin:x:2:2::/bin:\nbad:x:zz:1::/:/bin/sh\nshort:x:5\n+\n+nis:*:::::\n"),
            "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2::/bin:\n+::::::\n+nis:*:::::\n"
        );
    }

    #[test]
    fn shadow_like_glibc() {
        let data = b"root:*:19000:0:99999:7:::\nold:!:5:1:2\nflag:x:1:2:3:4:5:6:7\nempty::::::::\n";
        let mut out = Vec::new();
        for s in parse_shadow(data) {
            put_shadow(&mut out, &s);
        }
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "root:*:19000:0:99999:7:::\nold:!:5:1:2::::\nflag:x:1:2:3:4:5:6:7\nempty::::::::\n"
        );
    }

    #[test]
    fn group_and_gshadow_like_glibc() {
        let mut out = Vec::new();
        for g in parse_group(b"adm:x:4:a, b,,c\nnone:x:5:\n") {
            put_group(&mut out, &g);
        }
        for g in parse_gshadow(b"adm:*:x,y:a,b\nnone:!::\n") {
            put_gshadow(&mut out, &g);
        }
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "adm:x:4:a,b,c\nnone:x:5:\nadm:*:x,y:a,b\nnone:!::\n"
        );
    }
}
