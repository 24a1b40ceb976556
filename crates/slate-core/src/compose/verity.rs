//! An image whose manifest asks for a verified `/usr` (`[deploy] usr =
//! "verity"`): once its tree is committed, the EROFS image of its `/usr`
//! and its dm-verity root hash are made (`crate::verity`, as deploy will
//! make them), and the commit is replaced by one of the same tree whose
//! metadata also names the root hash (`slate.usr.verity`), so a signature
//! of the commit covers it. The first commit is left unreferenced; a
//! build whose commit would equal the branch's previous one moves the
//! branch back to it (no new commit).

use std::path::Path;

use super::Error;
use crate::commit::CommitOutcome;
use crate::image_meta::{self, ImageUsr, UsrMode};
use crate::store::{ObjectRead, ObjectWrite, Repo, Transaction};

/// Seal `out` (the commit just made on `branch`, whatever its parent
/// had): its `/usr` image built in `work`, the root hash into its
/// metadata. With `skip_if_unchanged`, the branch's previous commit is
/// kept when the sealed one would be the same. Returns the outcome and
/// the root hash.
pub(super) fn seal(
    repo: &Repo,
    work: &Path,
    branch: &str,
    out: CommitOutcome,
    skip_if_unchanged: bool,
) -> Result<(CommitOutcome, String), Error> {
    let scratch = work.join("verity");
    std::fs::create_dir_all(&scratch).map_err(|source| Error::Io {
        path: scratch.clone(),
        source,
    })?;
    let img = scratch.join("usr.img");
    let built = crate::verity::build_from_commit(repo, &out.id, &scratch, &img)
        .map_err(|e| Error::Verity(e.to_string()))?;
    let _ = std::fs::remove_file(&img);
    let mut c = repo.read_commit(&out.id)?;
    ImageUsr {
        mode: Some(UsrMode::Verity),
        root_hash: Some(built.root_hash.clone()),
    }
    .write(&mut c.metadata);
    let mut tx = Transaction::begin(repo)?;
    let previous = c.parent;
    if let (true, Some(prev)) = (skip_if_unchanged, previous) {
        let old = repo.read_commit(&prev)?;
        if old.tree == c.tree
            && old.subject == c.subject
            && old.body == c.body
            && old.metadata == c.metadata
        {
            tx.set_ref(branch, Some(out.id), prev)?;
            tx.commit()?;
            return Ok((
                CommitOutcome {
                    id: prev,
                    parent: old.parent,
                    unchanged: true,
                    ..out
                },
                built.root_hash,
            ));
        }
    }
    let id = tx.write_commit(&c)?;
    tx.set_ref(branch, Some(out.id), id)?;
    tx.commit()?;
    debug_assert!(c.metadata.contains_key(image_meta::USR_VERITY));
    Ok((
        CommitOutcome {
            id,
            parent: previous,
            unchanged: false,
            ..out
        },
        built.root_hash,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::commit::{self, CommitOptions, ParentSpec, Source};
    use crate::progress::Progress;
    use crate::store::RepoMode;

    fn commit_tree(repo: &Repo, tree: &Path, time: i64) -> CommitOutcome {
        let opts = CommitOptions {
            branch: "img".into(),
            subject: "img 1".into(),
            body: String::new(),
            timestamp: time,
            metadata: BTreeMap::new(),
            parent: ParentSpec::Auto,
            skip_if_unchanged: false,
        };
        commit::commit(repo, Source::Dir(tree), &opts, &Progress::default()).expect("commit")
    }

    #[test]
    #[cfg_attr(not(test_root), ignore = "needs root (a bare repository)")]
    fn the_same_image_composed_twice_gives_one_root_hash_and_one_commit() {
        if let Some(why) = crate::verity::tests::can_build() {
            eprintln!("SKIPPED: {why}");
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let tree = d.path().join("tree");
        crate::verity::tests::sample_tree(&tree);
        let repo = Repo::init(&d.path().join("repo"), RepoMode::Bare).expect("init");
        let work = d.path().join("work");
        let first = commit_tree(&repo, &tree, 100);
        let (a, ha) = seal(&repo, &work, "img", first, true).expect("seal");
        assert!(!a.unchanged);
        let meta = repo.read_commit(&a.id).expect("commit").metadata;
        assert_eq!(meta[image_meta::USR_VERITY], ha);
        assert_eq!(meta[image_meta::DEPLOY_USR], "verity");
        assert_eq!(repo.read_ref("img").expect("ref"), Some(a.id));
        // The same build again, in another work folder: the same root
        // hash, and the branch keeps the first commit.
        let again = commit_tree(&repo, &tree, 100);
        let (b, hb) = seal(&repo, &d.path().join("work2"), "img", again, true).expect("seal");
        assert_eq!(hb, ha);
        assert!(b.unchanged);
        assert_eq!(b.id, a.id);
        assert_eq!(repo.read_ref("img").expect("ref"), Some(a.id));
        // A change in /usr: another hash, a new commit after the first.
        std::fs::write(tree.join("usr/lib/sub/small"), "changed\n").expect("write");
        let third = commit_tree(&repo, &tree, 100);
        let (c, hc) = seal(&repo, &work, "img", third, true).expect("seal");
        assert_ne!(hc, ha);
        assert_eq!(c.parent, Some(a.id));
        assert_eq!(repo.read_ref("img").expect("ref"), Some(c.id));
    }
}
