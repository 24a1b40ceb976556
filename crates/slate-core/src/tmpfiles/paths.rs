//! Reaching the paths a line acts on, inside the root: the parent of a
//! path (`path_open_parent_safe()`), a path itself (`path_open_safe()`),
//! and the parents a line needs made (`mkdir_parents_item()`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, OFlags, Stat};

use super::fs::{self, file_type, ChaseError};
use super::parse::Item;
use super::perms::errno_text;
use super::{Failed, Kind, Level, Runner};

type R = Result<(), Failed>;

impl Runner<'_> {
    /// Note what was created.
    pub(super) fn created(&mut self, path: &str, what: &str) {
        let text = format!("Created {what} {}.", self.show(path));
        self.log.done(Kind::Created, path, text);
    }

    pub(super) fn chase_error(&mut self, e: ChaseError, text: String) -> Failed {
        match e {
            ChaseError::Unsafe(t) => {
                let m = t.message(|uid| self.host.user_name(uid));
                self.log.push(Level::Warning, m);
                Failed
            }
            ChaseError::Io(_) => self.error(format!("{text}: {e}")),
        }
    }

    /// The last component of `path`; `/` has none, which is reported as
    /// systemd reports it ("Cannot open path '/' for ACTION, is a directory.").
    pub(super) fn file_name_of<'p>(
        &mut self,
        path: &'p str,
        action: &str,
    ) -> Result<&'p str, Failed> {
        fs::file_name(path).ok_or_else(|| {
            let m = format!(
                "Cannot open path '{}' for {action}, is a directory.",
                self.show(path)
            );
            self.error(m)
        })
    }

    /// `path_open_parent_safe()`: the directory holding `path`.
    pub(super) fn open_parent(
        &mut self,
        path: &str,
        allow_failure: bool,
    ) -> Result<OwnedFd, Failed> {
        let ignoring = if allow_failure { ", ignoring" } else { "" };
        if path.split('/').any(|c| c == "..") {
            let m = format!(
                "Failed to open parent of '{}': path not normalized{ignoring}.",
                self.show(path)
            );
            return Err(self.error(m));
        }
        let dn = fs::dir_name(path);
        match fs::chase(self.root, &dn, true, false) {
            Ok(r) => Ok(r.fd),
            Err(ChaseError::Unsafe(t)) => {
                let m = t.message(|uid| self.host.user_name(uid));
                self.log.push(Level::Warning, m);
                Err(Failed)
            }
            Err(e) => {
                let m = format!("Failed to open path '{}'{ignoring}: {e}", self.show(&dn));
                Err(self.error(m))
            }
        }
    }

    /// `path_open_safe()`: `path` itself, a final symlink not followed.
    pub(super) fn open_safe(&mut self, path: &str) -> Result<fs::Resolved, Failed> {
        if path.split('/').any(|c| c == "..") {
            let m = format!("Failed to open invalid path '{}'.", self.show(path));
            return Err(self.error(m));
        }
        fs::chase(self.root, path, true, true).map_err(|e| {
            let m = format!("Failed to open path {}", self.show(path));
            self.chase_error(e, m)
        })
    }

    /// `mkdir_parents_item()`.
    pub(super) fn mkdir_parents_item(&mut self, i: &Item, child: Option<FileType>) -> R {
        if i.try_replace {
            self.mkdir_parents_rm_if_wrong_type(child, &i.path)
        } else {
            fs::mkdir_parents(self.root, &i.path);
            Ok(())
        }
    }

    fn wrong_type_rm(&mut self, dir: BorrowedFd<'_>, dir_path: &str, name: &str, st: &Stat) -> R {
        self.log.push(
            Level::Info,
            format!(
                "Wrong file type 0o{:o}; rm -rf \"{}/{name}\"",
                st.st_mode & 0o170000,
                self.show(dir_path).trim_end_matches('/')
            ),
        );
        fs::rm_rf_at(dir, name).map_err(|e| {
            let m = format!(
                "Failed to remove \"{name}\" at \"{}\": {}",
                self.show(dir_path),
                errno_text(e)
            );
            self.error(m)
        })
    }

    /// `mkdir_parents_rm_if_wrong_type()`: every parent made a directory
    /// (whatever else is in the way is removed); the last component
    /// removed when it is not of type `child`.
    fn mkdir_parents_rm_if_wrong_type(&mut self, child: Option<FileType>, path: &str) -> R {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = String::from("/");
        for (n, c) in comps.iter().enumerate() {
            let dir = match self.root.open(&cur, OFlags::PATH | OFlags::DIRECTORY, 0) {
                Ok(d) => d,
                Err(e) => {
                    let m = format!(
                        "Failed to open \"{}\": {}",
                        self.show(&cur),
                        super::os_text(&e)
                    );
                    return Err(self.error(m));
                }
            };
            let next = if cur == "/" {
                format!("/{c}")
            } else {
                format!("{cur}/{c}")
            };
            if n + 1 == comps.len() {
                if let Some(want) = child {
                    if let Ok(st) = fs::lstat_at(dir.as_fd(), c) {
                        if file_type(&st) != want {
                            self.wrong_type_rm(dir.as_fd(), &cur, c, &st)?;
                        }
                    }
                }
                return Ok(());
            }
            let followed = self.root.stat(&next);
            let is_dir = matches!(&followed, Ok(st) if file_type(st) == FileType::Directory);
            if !is_dir {
                let st = match followed {
                    Ok(st) => Some(st),
                    Err(_) => fs::lstat_at(dir.as_fd(), c).ok(),
                };
                if let Some(st) = st {
                    self.wrong_type_rm(dir.as_fd(), &cur, c, &st)?;
                }
                if let Err(e) = fs::mkdir_exact(dir.as_fd(), c, 0o755) {
                    let m = format!(
                        "Failed to mkdir \"{c}\" at \"{}\": {}",
                        self.show(&cur),
                        errno_text(e)
                    );
                    return Err(self.error(m));
                }
            }
            cur = next;
        }
        Ok(())
    }
}
