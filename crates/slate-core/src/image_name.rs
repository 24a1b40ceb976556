//! Image names (`docs/format/names.md`): what kind of tree an image is,
//! whose, for which architecture, which version, in one line, as the
//! stateless designs name their trees:
//!
//! ```text
//! usr:VENDOR:ARCH:VERSION            an OS image (its /usr)
//! ext:VENDOR:NAME:ARCH:VERSION       a system extension NAME of VENDOR's OS
//! ```
//!
//! The default ref of an image is its name without the version, `:`
//! turned `/` (`usr/VENDOR/ARCH`, `ext/VENDOR/NAME/ARCH`): a ref is what
//! machines follow, the version changes with each build. Compose keeps
//! the parts in the commit's metadata; `status` and `show` print the
//! name. Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::image_meta::Metadata;

/// The kind of image (`[image] kind`): `slate.image.kind`.
pub const KIND: &str = "slate.image.kind";
/// Who makes it (`[image] vendor`): `slate.image.vendor`.
pub const VENDOR: &str = "slate.image.vendor";
/// Its architecture, systemd's name of it (`x86-64`, `arm64`):
/// `slate.image.arch`.
pub const ARCH: &str = "slate.image.arch";
/// A system extension's name (its `extension-release.NAME`).
pub const EXT_NAME: &str = "slate.sysext.name";
/// The commit of the OS image a system extension was built over.
pub const EXT_BASE: &str = "slate.sysext.base";

/// What an image is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An operating system: deployed, booted.
    #[default]
    Os,
    /// A system extension (`systemd-sysext`): files under `/usr` and
    /// `/opt` merged over an OS image's at boot.
    Sysext,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Os => "os",
            Kind::Sysext => "sysext",
        }
    }
    /// The first part of a name.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Os => "usr",
            Kind::Sysext => "ext",
        }
    }
}

/// The parts of an image's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    pub kind: Kind,
    pub vendor: String,
    /// A system extension's name (none for an OS).
    pub ext: Option<String>,
    pub arch: String,
    pub version: String,
}

/// Whether `s` may be a part of a name: letters, digits, `.`, `_`, `-`,
/// `+`, `~`; not starting with `.` or `-`; at most 64 bytes. No `:`
/// (the separator) and no `/` (a ref's).
pub fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~'))
}

/// Whether `s` may name a system extension: letters, digits, `.`, `_`,
/// `-`; not starting with `.` or `-`; at most 64 bytes (it becomes the
/// file name `extension-release.NAME` and the image's name for
/// `systemd-sysext`).
pub fn valid_ext_name(s: &str) -> bool {
    valid_part(s) && !s.contains(['+', '~'])
}

/// systemd's name of the architecture this build of Slate runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

impl Name {
    /// `usr:VENDOR:ARCH:VERSION` or `ext:VENDOR:NAME:ARCH:VERSION`.
    pub fn full(&self) -> String {
        let mut parts = vec![self.kind.prefix(), self.vendor.as_str()];
        if let Some(e) = &self.ext {
            parts.push(e);
        }
        parts.push(&self.arch);
        parts.push(&self.version);
        parts.join(":")
    }

    /// The default ref: the name without its version, `/`-separated.
    pub fn default_ref(&self) -> String {
        let mut parts = vec![self.kind.prefix(), self.vendor.as_str()];
        if let Some(e) = &self.ext {
            parts.push(e);
        }
        parts.push(&self.arch);
        parts.join("/")
    }

    /// The parts into a commit's metadata (the version is the image's
    /// `slate.image.version`, written beside).
    pub fn write(&self, meta: &mut Metadata) {
        meta.insert(KIND.into(), self.kind.as_str().into());
        meta.insert(VENDOR.into(), self.vendor.clone());
        meta.insert(ARCH.into(), self.arch.clone());
        if let Some(e) = &self.ext {
            meta.insert(EXT_NAME.into(), e.clone());
        }
    }

    /// The name a commit's metadata gives, when it has a vendor (images
    /// composed before names have none). Every part is checked: a
    /// commit's metadata comes from wherever the commit did.
    pub fn read(meta: &Metadata) -> Option<Name> {
        let kind = match meta.get(KIND).map(String::as_str) {
            None | Some("os") => Kind::Os,
            Some("sysext") => Kind::Sysext,
            Some(_) => return None,
        };
        let vendor = meta.get(VENDOR).filter(|v| valid_part(v))?.clone();
        let arch = meta.get(ARCH).filter(|v| valid_part(v))?.clone();
        let version = meta
            .get(crate::image_meta::VERSION)
            .filter(|v| valid_part(v))?
            .clone();
        let ext = match kind {
            Kind::Os => None,
            Kind::Sysext => Some(meta.get(EXT_NAME).filter(|v| valid_ext_name(v))?.clone()),
        };
        Some(Name {
            kind,
            vendor,
            ext,
            arch,
            version,
        })
    }
}

/// The name of the image whose commit has `meta`, or none.
pub fn of_metadata(meta: &Metadata) -> Option<String> {
    Name::read(meta).map(|n| n.full())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os() -> Name {
        Name {
            kind: Kind::Os,
            vendor: "example".into(),
            ext: None,
            arch: "x86-64".into(),
            version: "12.1".into(),
        }
    }

    #[test]
    fn names_and_refs() {
        let n = os();
        assert_eq!(n.full(), "usr:example:x86-64:12.1");
        assert_eq!(n.default_ref(), "usr/example/x86-64");
        crate::store::validate_ref_name(&n.default_ref()).expect("a ref");
        let e = Name {
            kind: Kind::Sysext,
            ext: Some("debug".into()),
            ..os()
        };
        assert_eq!(e.full(), "ext:example:debug:x86-64:12.1");
        assert_eq!(e.default_ref(), "ext/example/debug/x86-64");
    }

    #[test]
    fn metadata_round_trip_and_hostile_parts() {
        let e = Name {
            kind: Kind::Sysext,
            ext: Some("debug".into()),
            ..os()
        };
        let mut meta = Metadata::new();
        e.write(&mut meta);
        meta.insert(crate::image_meta::VERSION.into(), "12.1".into());
        assert_eq!(Name::read(&meta), Some(e));
        for bad in ["a:b", "a/b", "", ".x", "-x", "a b", "x\n"] {
            let mut m = meta.clone();
            m.insert(VENDOR.into(), bad.into());
            assert_eq!(Name::read(&m), None, "{bad:?}");
        }
        let mut m = meta.clone();
        m.insert(EXT_NAME.into(), "a+b".into());
        assert_eq!(Name::read(&m), None);
        // No vendor: an image composed before names.
        let mut m = meta;
        m.remove(VENDOR);
        assert_eq!(of_metadata(&m), None);
    }
}
