//! What the boot-time engines know of the machine they run on. An engine
//! never reads the host behind its caller's back: the caller fills a
//! [`Host`] — from the running system ([`Host::from_system`]), or with the
//! neutral values of an image build ([`Host::for_image`]) — and the engine
//! takes everything from it: the environment, credentials, host name, boot
//! id, kernel, clock, `/proc` settings and standard input.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::SystemTime;

/// Where credentials (`$CREDENTIALS_DIRECTORY/NAME`) come from.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    #[default]
    None,
    /// A directory of credential files, read when a credential is asked for.
    Dir(PathBuf),
    /// Credentials in memory.
    Map(BTreeMap<String, Vec<u8>>),
}

impl Credentials {
    /// The credential `name`, `Ok(None)` when there is none.
    pub fn get(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Map(m) => Ok(m.get(name).cloned()),
            Credentials::Dir(d) => match std::fs::read(d.join(name)) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// The directory shown in messages (`$CREDENTIALS_DIRECTORY`).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Credentials::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Whether credentials were given at all (a directory or a map).
    pub fn given(&self) -> bool {
        !matches!(self, Credentials::None)
    }
}

/// The user an engine runs as, and the environment a per-user run
/// (`tmpfiles --user`) takes its directories from.
#[derive(Clone, Debug, Default)]
pub struct UserEnv {
    pub uid: u32,
    pub gid: u32,
    /// The user's and the group's names in the user database (`%u`,
    /// `%g`); the numbers stand in when there are none.
    pub name: Option<String>,
    pub group: Option<String>,
    /// The home directory the user database gives (`%h` when `$HOME` is
    /// not a usable path).
    pub db_home: Option<String>,
    /// `$XDG_RUNTIME_DIR`, `$XDG_CONFIG_HOME`, `$XDG_CACHE_HOME`,
    /// `$XDG_DATA_HOME`, `$XDG_CONFIG_DIRS`, `$XDG_DATA_DIRS`, as set.
    pub runtime_dir: Option<String>,
    pub config_home: Option<String>,
    pub cache_home: Option<String>,
    pub data_home: Option<String>,
    pub config_dirs: Option<String>,
    pub data_dirs: Option<String>,
}

impl UserEnv {
    /// root, with no XDG variables.
    pub fn root() -> UserEnv {
        UserEnv {
            name: Some("root".into()),
            group: Some("root".into()),
            db_home: Some("/root".into()),
            ..UserEnv::default()
        }
    }

    /// The user's name (`%u`): from the user database, else the number.
    pub fn user_name(&self) -> String {
        match (&self.name, self.uid) {
            (_, 0) => "root".into(),
            (Some(n), _) => n.clone(),
            (None, uid) => uid.to_string(),
        }
    }

    /// The group's name (`%g`): from the group database, else the number.
    pub fn group_name(&self) -> String {
        match (&self.group, self.gid) {
            (_, 0) => "root".into(),
            (Some(n), _) => n.clone(),
            (None, gid) => gid.to_string(),
        }
    }
}

/// The machine an engine runs on, as its caller describes it.
#[derive(Clone, Debug)]
pub struct Host {
    pub credentials: Credentials,
    /// `$HOME` (`%h`), when set.
    pub home: Option<String>,
    /// `$TMPDIR`, `$TEMP` or `$TMP`, the first set (`%T`, `%V`).
    pub tmpdir: Option<String>,
    /// The host name (`%H`, `%l`).
    pub hostname: String,
    /// `PRETTY_HOSTNAME` of `/etc/machine-info` (`%q`).
    pub pretty_hostname: Option<String>,
    /// The boot id, 32 hex digits (`%b`); `None` when unknown.
    pub boot_id: Option<String>,
    /// The kernel release (`%v`).
    pub kernel_release: String,
    /// systemd's name of the architecture (`%a`).
    pub architecture: String,
    /// `fs.protected_hardlinks`: chmod and chown of a file with several
    /// links is safe only with it on.
    pub protected_hardlinks: bool,
    /// Whether device nodes may be created (`CAP_MKNOD`).
    pub can_mknod: bool,
    /// Paths of AF_UNIX sockets in use (never cleaned by age).
    pub live_sockets: HashSet<String>,
    /// The time now (ages of files to clean).
    pub now: SystemTime,
    /// `$SOURCE_DATE_EPOCH`: the time written into files instead of now
    /// (the password change day of new users), for reproducible images.
    pub source_date_epoch: Option<u64>,
    /// Standard input, for a CONFIG argument `-` (the caller reads it when
    /// an argument asks for it).
    pub stdin: Option<Vec<u8>>,
    /// Names of this machine's users, for messages that name owners as
    /// systemd does (uids not here are shown as numbers).
    pub user_names: BTreeMap<u32, String>,
    /// Who runs the engine, and the XDG environment of a per-user run.
    pub user: UserEnv,
}

impl Host {
    /// The running machine: the process environment, `uname`, `/proc`,
    /// `/etc/machine-info` and the process's capabilities.
    pub fn from_system() -> Host {
        let env = |k: &str| std::env::var(k).ok();
        let uname = rustix::system::uname();
        let trimmed = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Host {
            credentials: match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(d) => Credentials::Dir(PathBuf::from(d)),
                None => Credentials::None,
            },
            home: env("HOME"),
            tmpdir: ["TMPDIR", "TEMP", "TMP"]
                .into_iter()
                .find_map(|k| env(k).filter(|v| v.starts_with('/'))),
            hostname: uname.nodename().to_string_lossy().into_owned(),
            pretty_hostname: std::fs::read_to_string("/etc/machine-info")
                .ok()
                .and_then(|t| {
                    super::specifier::parse_env_file(&t)
                        .into_iter()
                        .rev()
                        .find(|(k, _)| k == "PRETTY_HOSTNAME")
                        .map(|(_, v)| v)
                })
                .filter(|v| !v.is_empty()),
            boot_id: trimmed("/proc/sys/kernel/random/boot_id").map(|s| s.replace('-', "")),
            kernel_release: uname.release().to_string_lossy().into_owned(),
            architecture: architecture_name(&uname.machine().to_string_lossy()),
            protected_hardlinks: trimmed("/proc/sys/fs/protected_hardlinks")
                .is_some_and(|s| s == "1"),
            can_mknod: rustix::thread::capabilities(None)
                .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::MKNOD)),
            live_sockets: live_sockets(),
            now: SystemTime::now(),
            source_date_epoch: env("SOURCE_DATE_EPOCH").and_then(|s| s.trim().parse().ok()),
            stdin: None,
            user_names: std::fs::read_to_string("/etc/passwd")
                .map(|t| passwd_names(&t))
                .unwrap_or_default(),
            user: user_env(),
        }
    }

    /// An image being built on another machine: no credentials, no
    /// environment, the build's own clock; nothing of the build host
    /// leaks into the image.
    pub fn for_image() -> Host {
        Host {
            credentials: Credentials::None,
            home: None,
            tmpdir: None,
            hostname: "localhost".into(),
            pretty_hostname: None,
            boot_id: None,
            kernel_release: String::new(),
            architecture: architecture_name(std::env::consts::ARCH),
            protected_hardlinks: true,
            can_mknod: rustix::process::geteuid().is_root(),
            live_sockets: HashSet::new(),
            now: SystemTime::now(),
            source_date_epoch: None,
            stdin: None,
            user_names: BTreeMap::new(),
            user: UserEnv::root(),
        }
    }

    /// A user's name for messages, or the number.
    pub fn user_name(&self, uid: u32) -> String {
        self.user_names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// Read standard input into [`Host::stdin`] when one of `args` is `-`.
    pub fn read_stdin_for(&mut self, args: &[String]) -> io::Result<()> {
        if self.stdin.is_none() && args.iter().any(|a| a == "-") {
            let mut data = Vec::new();
            io::stdin().read_to_end(&mut data)?;
            self.stdin = Some(data);
        }
        Ok(())
    }

    /// Microseconds since the epoch of [`Host::now`].
    pub fn now_usec(&self) -> u64 {
        self.now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    /// The day (since the epoch) written as "today" into files: from
    /// `$SOURCE_DATE_EPOCH` when set, else the clock.
    pub fn today(&self) -> i64 {
        let secs = self
            .source_date_epoch
            .unwrap_or_else(|| self.now_usec() / 1_000_000);
        (secs / 86400) as i64
    }
}

/// systemd's name for an architecture (`%a`), from `uname -m`'s.
pub fn architecture_name(machine: &str) -> String {
    match machine {
        "x86_64" => "x86-64".into(),
        "i386" | "i486" | "i586" | "i686" | "x86" => "x86".into(),
        "aarch64" => "arm64".into(),
        "aarch64_be" => "arm64-be".into(),
        "ppc64le" => "ppc64-le".into(),
        "riscv64" => "riscv64".into(),
        "s390x" => "s390x".into(),
        m if m.starts_with("arm") => "arm".into(),
        m => m.to_string(),
    }
}

/// uid → name of `passwd(5)` text (for messages only).
fn passwd_names(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// The running process's user, group and XDG variables. Names and the
/// home directory come from `/etc/passwd` and `/etc/group` (the files, as
/// the engines read user databases everywhere else).
fn user_env() -> UserEnv {
    let env = |k: &str| std::env::var(k).ok();
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let entry = |file: &str, id: u32| -> Option<Vec<String>> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<String> = l.split(':').map(String::from).collect();
            (f.len() >= 3 && f[2].parse() == Ok(id)).then_some(f)
        })
    };
    let pw = entry("/etc/passwd", uid);
    UserEnv {
        uid,
        gid,
        name: pw.as_ref().map(|f| f[0].clone()),
        group: entry("/etc/group", gid).map(|f| f[0].clone()),
        db_home: pw.and_then(|f| f.get(5).cloned()),
        runtime_dir: env("XDG_RUNTIME_DIR"),
        config_home: env("XDG_CONFIG_HOME"),
        cache_home: env("XDG_CACHE_HOME"),
        data_home: env("XDG_DATA_HOME"),
        config_dirs: env("XDG_CONFIG_DIRS"),
        data_dirs: env("XDG_DATA_DIRS"),
    }
}

/// Paths of the AF_UNIX sockets that are listening or connected.
fn live_sockets() -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return HashSet::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter(|p| p.starts_with('/'))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_host_leaks_nothing_and_source_date_epoch_sets_today() {
        let mut h = Host::for_image();
        assert!(h.home.is_none() && h.boot_id.is_none() && !h.credentials.given());
        h.source_date_epoch = Some(86_400 * 3 + 5);
        assert_eq!(h.today(), 3);
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), b"x".to_vec());
        let c = Credentials::Map(m);
        assert_eq!(c.get("a").expect("get"), Some(b"x".to_vec()));
        assert_eq!(c.get("b").expect("get"), None);
        assert_eq!(architecture_name("x86_64"), "x86-64");
    }
}
