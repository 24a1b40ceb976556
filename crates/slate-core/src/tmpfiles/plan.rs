//! The plan of a run: which line acts on which path, in the order
//! systemd-tmpfiles acts (remove and clean first, then create; plain paths
//! before globs; a parent's lines before a child's when creating, after
//! them when removing), each step with what it is expected to do to the
//! root as it is now. Computing it reads the root and changes nothing;
//! [`super::apply`] carries the same steps out.

use rustix::fs::FileType;
use serde::Serialize;

use super::fs::{self, file_type};
use super::parse::Item;
use super::{Config, Runner, OP_CLEAN, OP_CREATE, OP_REMOVE};

/// What a step is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// The path is missing: it will be made.
    Create,
    /// The path exists: owner, mode and the like are set as the line says.
    Adjust,
    /// The path exists and is replaced (`+` lines, or a wrong type with `=`).
    Replace,
    /// Content is written into existing files (`w`).
    Write,
    /// An existing file is emptied (`F`, `f+`).
    Truncate,
    /// A tree is copied in (`C`).
    Copy,
    /// Paths are removed (`r`, `R`, `D` with `--remove`).
    Remove,
    /// Old entries below the path are removed by age.
    Clean,
    /// Nothing to do: the path is missing where it is not made, or the
    /// line only marks what cleaning must keep.
    Nothing,
}

/// One step: a line applied with some operations.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The operations (bits of `OP_*`); as words in JSON.
    #[serde(serialize_with = "serialize_ops")]
    pub ops: u8,
    /// `FILE:LINE`.
    pub line: String,
    /// The line's type with its modifiers.
    #[serde(rename = "type")]
    pub kind: String,
    /// The line's path (a glob for glob lines).
    pub path: String,
    pub effect: Effect,
    /// For a glob line: the paths it matches now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    #[serde(skip)]
    pub(super) array: usize,
    #[serde(skip)]
    pub(super) item: usize,
}

fn serialize_ops<S: serde::Serializer>(ops: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(op_names(*ops))
}

fn op_names(ops: u8) -> Vec<&'static str> {
    [
        (OP_REMOVE, "remove"),
        (OP_CLEAN, "clean"),
        (OP_CREATE, "create"),
    ]
    .into_iter()
    .filter(|(b, _)| ops & b != 0)
    .map(|(_, n)| n)
    .collect()
}

impl Step {
    /// The operations as words: `create`, `remove`, `clean`.
    pub fn op_names(&self) -> Vec<&'static str> {
        op_names(self.ops)
    }
}

/// What a run will do: the steps, and the configuration they come from.
pub struct Plan {
    pub steps: Vec<Step>,
    pub(super) config: Config,
}

impl Runner<'_> {
    /// The steps of a run with the operations `ops`, in order.
    pub(super) fn plan_steps(&self, ops: u8) -> Vec<Step> {
        let mut done = vec![Vec::new(); self.config.arrays.len()];
        for (a, arr) in self.config.arrays.iter().enumerate() {
            done[a] = vec![0u8; arr.items.len()];
        }
        let mut order = Vec::new();
        for op in [ops & (OP_REMOVE | OP_CLEAN), ops & OP_CREATE] {
            if op == 0 {
                continue;
            }
            let arrays: Vec<usize> = self
                .config
                .items
                .values()
                .chain(self.config.globs.values())
                .copied()
                .collect();
            for a in arrays {
                self.visit(a, op, &mut done, &mut order);
            }
        }
        order
            .into_iter()
            .map(|(a, i, op)| self.step(a, i, op))
            .collect()
    }

    /// `process_item_array()`: a parent's lines first when creating, the
    /// children's first when removing or cleaning; each line once per
    /// operation.
    fn visit(&self, a: usize, op: u8, done: &mut [Vec<u8>], order: &mut Vec<(usize, usize, u8)>) {
        let arr = &self.config.arrays[a];
        if op & OP_CREATE != 0 {
            if let Some(p) = arr.parent {
                self.visit(p, OP_CREATE, done, order);
            }
        }
        if op & (OP_REMOVE | OP_CLEAN) != 0 {
            for &c in &arr.children {
                self.visit(c, op & (OP_REMOVE | OP_CLEAN), done, order);
            }
        }
        for (n, d) in done[a].iter_mut().enumerate() {
            if op & !*d == 0 {
                continue;
            }
            *d |= op;
            order.push((a, n, op));
        }
    }

    fn step(&self, a: usize, n: usize, ops: u8) -> Step {
        let i = &self.config.arrays[a].items[n];
        let (effect, matches) = self.predict(i, ops);
        Step {
            ops,
            line: i.line.clone(),
            kind: i.type_text(),
            path: i.path.clone(),
            effect,
            matches,
            array: a,
            item: n,
        }
    }

    fn exists(&self, path: &str) -> Option<FileType> {
        self.root.lstat(path).ok().map(|st| file_type(&st))
    }

    /// What a line is expected to do with `ops` to the root as it is now.
    fn predict(&self, i: &Item, ops: u8) -> (Effect, Vec<String>) {
        let globbed = || fs::glob(self.root, &i.path);
        let some = |m: Vec<String>, e: Effect| {
            if m.is_empty() {
                (Effect::Nothing, m)
            } else {
                (e, m)
            }
        };
        if ops & OP_REMOVE != 0 {
            match i.kind {
                b'r' | b'R' => return some(globbed(), Effect::Remove),
                b'D' if self.exists(&i.path).is_some() => return (Effect::Remove, Vec::new()),
                _ => {}
            }
        }
        if ops & OP_CLEAN != 0 && i.age.is_some() && b"dDvqQxCeX".contains(&i.kind) {
            if fs::is_glob(&i.path) {
                return some(globbed(), Effect::Clean);
            }
            if self.exists(&i.path) == Some(FileType::Directory) {
                return (Effect::Clean, Vec::new());
            }
        }
        if ops & OP_CREATE == 0 {
            return (Effect::Nothing, Vec::new());
        }
        let here = self.exists(&i.path);
        let made_or = |e: Effect| match here {
            None => Effect::Create,
            Some(_) => e,
        };
        let effect = match i.kind {
            b'x' | b'X' | b'r' | b'R' => Effect::Nothing,
            b'f' if i.append_or_force => made_or(Effect::Truncate),
            b'f' => made_or(Effect::Adjust),
            b'F' => made_or(Effect::Truncate),
            b'w' => return some(globbed(), Effect::Write),
            b'd' | b'D' | b'v' | b'q' | b'Q' => made_or(Effect::Adjust),
            b'e' | b'm' | b'z' | b't' | b'a' | b'h' | b'Z' | b'T' | b'A' | b'H' => {
                return some(globbed(), Effect::Adjust)
            }
            b'c' | b'b' if !self.host.can_mknod => Effect::Nothing,
            b'p' | b'L' | b'c' | b'b' if i.append_or_force => made_or(Effect::Replace),
            b'p' | b'L' | b'c' | b'b' => made_or(Effect::Adjust),
            b'C' => match here {
                None => Effect::Copy,
                Some(_) => Effect::Nothing,
            },
            _ => Effect::Nothing,
        };
        (effect, Vec::new())
    }
}
