//! What an engine reports: events in the order they happened, each with a
//! level, a kind a caller can act on, the path it is about, and the text
//! systemd's tool prints for it. Messages of debug level are not printed
//! by the command line; `--json` shows them all.

use serde::Serialize;

/// How bad an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A diagnostic, as systemd's tool prints it.
    Message,
    /// A configuration line was rejected.
    InvalidLine,
    /// An action failed.
    Failed,
    /// A file, directory, link, node or fifo was created.
    Created,
    /// An existing inode was replaced by a new one (`+` lines, or a file
    /// with several links replaced by a copy of its own before a change).
    Replaced,
    Written,
    Truncated,
    /// Owner, mode, xattrs, ACLs or attributes changed.
    Adjusted,
    Copied,
    Removed,
    /// Removed by age.
    Cleaned,
    /// sysusers: a group, user or membership planned or made.
    Group,
    User,
    Member,
    /// sysusers: a database file written.
    Database,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub level: Level,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub text: String,
}

/// Events in the order they arose, for the caller to print.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<Event>,
}

impl Log {
    /// A diagnostic message.
    pub fn push(&mut self, level: Level, text: String) {
        let kind = if level == Level::Error {
            Kind::Failed
        } else {
            Kind::Message
        };
        self.event(level, kind, None, text);
    }

    pub fn event(&mut self, level: Level, kind: Kind, path: Option<&str>, text: String) {
        self.events.push(Event {
            level,
            kind,
            path: path.map(str::to_owned),
            text,
        });
    }

    /// An action done, at debug level.
    pub fn done(&mut self, kind: Kind, path: &str, text: String) {
        self.event(Level::Debug, kind, Some(path), text);
    }

    /// The events a command line prints (all but debug), in order.
    pub fn printed(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.level < Level::Debug)
    }

    /// Whether an event of `kind` arose.
    pub fn has(&self, kind: Kind) -> bool {
        self.events.iter().any(|e| e.kind == kind)
    }
}
