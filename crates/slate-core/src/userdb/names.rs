//! Names of users and groups looked up in a root's own databases (never
//! the host's, never NSS), each database read once.

use super::{parse_group, parse_passwd};
use crate::fsutil::Root;

/// Names and ids of one database, or why it could not be read.
type Table = Result<Vec<(Vec<u8>, u32)>, String>;

/// Lookups in `/etc/passwd` and `/etc/group` of a root.
pub struct Names<'r> {
    root: &'r Root,
    passwd: Option<Table>,
    group: Option<Table>,
}

impl<'r> Names<'r> {
    pub fn new(root: &'r Root) -> Self {
        Names {
            root,
            passwd: None,
            group: None,
        }
    }

    fn table(&mut self, user: bool) -> &Table {
        let root = self.root;
        let slot = if user {
            &mut self.passwd
        } else {
            &mut self.group
        };
        slot.get_or_insert_with(|| {
            let file = if user { "/etc/passwd" } else { "/etc/group" };
            match root.read(file) {
                Ok(data) => Ok(if user {
                    parse_passwd(&data)
                        .into_iter()
                        .map(|p| (p.name, p.uid))
                        .collect()
                } else {
                    parse_group(&data)
                        .into_iter()
                        .map(|g| (g.name, g.gid))
                        .collect()
                }),
                Err(e) => Err(crate::confd::os_text(&e)),
            }
        })
    }

    /// The id of the user (`user`) or group named `name`; the error text is
    /// systemd's ("No such process" for a name that is not there).
    pub fn id(&mut self, user: bool, name: &str) -> Result<u32, String> {
        match self.table(user) {
            Err(e) => Err(e.clone()),
            Ok(list) => list
                .iter()
                .find(|(n, _)| n == name.as_bytes())
                .map(|(_, id)| *id)
                .ok_or_else(|| "No such process".to_string()),
        }
    }
}
