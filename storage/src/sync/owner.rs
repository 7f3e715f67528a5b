//! Who owns a synced path, and what the owner is called: `[sync.NAME] owners`, rsync's `-o -g`.
//!
//! An entry holds its owner as numbers ([`Owner`]), the numbers of the node that holds the
//! entry. On the wire each number travels with its name, and the receiver turns the name back
//! into its own number ([`uid_named`], [`gid_named`]), as rsync does without `--numeric-ids`:
//! two nodes whose `apache` user has different numbers still agree on who owns a file. A name
//! the receiver does not know, or a number without a name, is kept as the number. A lookup
//! that fails (NSS unreachable) sends, or takes, the entry without an owner: the receiver then
//! keeps the owner its copy has, rather than guess one.
//!
//! Lookups go through the C library (`getpwuid_r` and friends, so NSS: LDAP users too), and
//! are cached for [`CACHE_FOR`]: an index exchange names the same few users thousands of times,
//! and a user added while Fulcrum runs is known within that time.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use nix::unistd::{Gid, Group, Uid, User};

/// A path's owner and group, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// The owner of what `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// Whether this process may give files away (`chown` to any user): only root. rsync applies
/// `-o` only as root too.
pub fn can_chown() -> bool {
    nix::unistd::geteuid().is_root()
}

/// How long a looked-up name or number is trusted.
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// The name of user `uid`, if it has one; `Err` when the lookup failed (NSS unreachable).
pub fn user_name(uid: u32) -> nix::Result<Option<Arc<str>>> {
    cached(
        &names().users,
        &uid,
        |uid| *uid,
        || User::from_uid(Uid::from_raw(uid)).map(|u| u.map(|u| u.name.into())),
    )
}

/// The name of group `gid`, if it has one; `Err` when the lookup failed.
pub fn group_name(gid: u32) -> nix::Result<Option<Arc<str>>> {
    cached(
        &names().groups,
        &gid,
        |gid| *gid,
        || Group::from_gid(Gid::from_raw(gid)).map(|g| g.map(|g| g.name.into())),
    )
}

/// The number of the user called `name` here, if there is one; `Err` when the lookup failed.
pub fn uid_named(name: &str) -> nix::Result<Option<u32>> {
    cached(
        &names().uids,
        name,
        |name| Arc::from(name),
        || User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
    )
}

/// The number of the group called `name` here, if there is one; `Err` when the lookup
/// failed.
pub fn gid_named(name: &str) -> nix::Result<Option<u32>> {
    cached(
        &names().gids,
        name,
        |name| Arc::from(name),
        || Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
    )
}

type Cache<K, V> = Mutex<HashMap<K, (Option<V>, Instant)>>;

/// The most keys a cache holds: the names come from peers, and a peer must not make it grow
/// without bound. A full cache starts over.
const CACHE_MAX: usize = 4096;

#[derive(Default)]
struct Names {
    users: Cache<u32, Arc<str>>,
    groups: Cache<u32, Arc<str>>,
    uids: Cache<Arc<str>, u32>,
    gids: Cache<Arc<str>, u32>,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(Names::default)
}

/// `key`'s value from `cache`, looked up with `look_up` when it is missing or older than
/// [`CACHE_FOR`]. "No such name" is cached too (a file owned by a deleted user would otherwise
/// cost a lookup per entry); a failed lookup (NSS unreachable) is not, so that it is tried
/// again at the next entry.
fn cached<K, Q, V>(
    cache: &Cache<K, V>,
    key: &Q,
    owned: impl FnOnce(&Q) -> K,
    look_up: impl FnOnce() -> nix::Result<Option<V>>,
) -> nix::Result<Option<V>>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
    V: Clone,
{
    let now = Instant::now();
    if let Some((value, at)) = lock(cache).get(key)
        && now.duration_since(*at) < CACHE_FOR
    {
        return Ok(value.clone());
    }
    // Looked up without the lock: NSS may be slow (LDAP), and other keys need not wait.
    let value = look_up()?;
    let mut cache = lock(cache);
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert(owned(key), (value.clone(), now));
    Ok(value)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn names_and_numbers_of_root_map_both_ways() {
        assert_eq!(user_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(group_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(uid_named("root"), Ok(Some(0)));
        assert_eq!(gid_named("root"), Ok(Some(0)));
        // Asked again: the cached answer is the same.
        assert_eq!(uid_named("root"), Ok(Some(0)));
    }

    #[test]
    fn unknown_names_and_numbers_have_no_counterpart() {
        assert_eq!(uid_named("fulcrum-no-such-user"), Ok(None));
        assert_eq!(gid_named("fulcrum-no-such-group"), Ok(None));
        assert_eq!(user_name(3_999_999_999), Ok(None));
        assert_eq!(group_name(3_999_999_999), Ok(None));
    }
}
