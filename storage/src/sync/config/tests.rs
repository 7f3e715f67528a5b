//! `[sync.NAME]` from TOML text to a validated config: CONFIG.md's example builds, defaults are
//! as documented, and every class of mistake is reported at its key with what is allowed.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{collections::BTreeMap, io::Write, path::Path, time::Duration};

use fulcrum_common::{ConfigError, Spanned};

use super::*;
use crate::sync::tls::{TlsFiles, tls_certs};

/// CONFIG.md's `[sync.web]`, with `path` a scratch directory (`{dir}`).
const CONFIG_MD: &str = r#"
[sync.web]
path = '{dir}'
listen = "172.16.0.99:8730"
peers = ["172.16.0.88:8730"]
shared_secret = "web-sync"
direction = "both"                # both | push | pull
exclude = ["*.tmp", "cache/"]
delay = "100ms"                   # batch changes for this long before sending
conflict = "newest-wins"          # the losing version is kept as NAME.conflict-NODE-TIME
delete = true
"#;

#[derive(Debug, serde::Deserialize)]
struct File {
    sync: BTreeMap<Spanned<String>, SyncSection>,
}

fn built_all(text: &str) -> Result<Vec<SyncConfig>, Vec<ConfigError>> {
    build_all(&toml::from_str::<File>(text).unwrap().sync)
}

fn built(text: &str) -> SyncConfig {
    crate::test_support::only(built_all(text))
}

/// Each error as (the text its span covers, its message).
fn errors(text: &str) -> Vec<(String, String)> {
    crate::test_support::error_spans(text, built_all(text))
}

/// The one error of `text`, which must mention `needle`; returns the text its span covers.
fn one_error(text: &str, needle: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let (at, message) = &errors[0];
    assert!(message.contains(needle), "{message}");
    at.clone()
}

/// A minimal valid `[sync.web]` of `dir`, with `extra` lines appended.
fn minimal(dir: &Path, extra: &str) -> String {
    format!(
        "[sync.web]\npath = '{}'\nlisten = \"10.0.0.1:8730\"\npeers = [\"10.0.0.2:8730\"]\n\
         shared_secret = \"s3cret\"\n{extra}",
        dir.display()
    )
}

fn with(dir: &Path, key: &str, value: &str) -> String {
    let base = minimal(dir, "");
    let mut lines: Vec<String> = base
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .map(str::to_owned)
        .collect();
    if !value.is_empty() {
        lines.push(format!("{key} = {value}"));
    }
    lines.join("\n") + "\n"
}

#[test]
fn config_md_example_builds() {
    let dir = tempfile::tempdir().unwrap();
    let text = CONFIG_MD.replace("{dir}", &dir.path().display().to_string());
    let set = built(&text);
    assert_eq!(set.name, "web");
    assert_eq!(set.path, dir.path());
    assert_eq!(set.listen, "172.16.0.99:8730".parse().unwrap());
    assert_eq!(set.peers, vec!["172.16.0.88:8730".parse().unwrap()]);
    assert_eq!(set.shared_secret, SharedSecret::new("web-sync"));
    assert_eq!(set.direction, Direction::Both);
    let exclude: Vec<&str> = set.exclude.iter().map(Pattern::as_str).collect();
    assert_eq!(exclude, ["*.tmp", "cache/"]);
    assert_eq!(set.delay, Duration::from_millis(100));
    assert_eq!(set.conflict, ConflictPolicy::NewestWins);
    assert!(set.delete);
}

#[test]
fn defaults() {
    let dir = tempfile::tempdir().unwrap();
    let set = built(&minimal(dir.path(), ""));
    assert_eq!(set.direction, Direction::Both);
    assert!(set.exclude.is_empty());
    assert_eq!(set.delay, Duration::from_millis(100));
    assert_eq!(set.conflict, ConflictPolicy::NewestWins);
    assert!(set.delete, "lsyncd's default");
}

#[test]
fn direction_and_delete_are_read() {
    let dir = tempfile::tempdir().unwrap();
    for (name, direction, sends, receives) in [
        ("push", Direction::Push, true, false),
        ("pull", Direction::Pull, false, true),
        ("both", Direction::Both, true, true),
    ] {
        let set = built(&minimal(
            dir.path(),
            &format!("direction = \"{name}\"\ndelete = false\n"),
        ));
        assert_eq!(set.direction, direction);
        assert_eq!(direction.to_string(), name);
        assert_eq!((direction.sends(), direction.receives()), (sends, receives));
        assert!(!set.delete);
    }
}

#[test]
fn shared_secret_from_a_file_and_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    writeln!(std::fs::File::create(&secret).unwrap(), "from-file").unwrap();
    let text = with(
        dir.path(),
        "shared_secret_file",
        &format!("'{}'", secret.display()),
    );
    let text = text.replace("shared_secret = \"s3cret\"\n", "");
    assert_eq!(built(&text).shared_secret, SharedSecret::new("from-file"));
    assert!(!format!("{:?}", built(&text)).contains("from-file"));

    let missing = with(dir.path(), "shared_secret", "");
    assert_eq!(one_error(&missing, "needs `shared_secret`"), "web");
    let empty = with(dir.path(), "shared_secret", "\"\"");
    assert_eq!(one_error(&empty, "empty"), "\"\"");
    let both = minimal(
        dir.path(),
        &format!("shared_secret_file = '{}'\n", secret.display()),
    );
    one_error(&both, "not both");
}

#[test]
fn path_must_be_an_existing_directory_other_than_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let text = minimal(&missing, "");
    assert!(one_error(&text, "does not exist").contains("nope"));
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    one_error(&minimal(&file, ""), "not a directory");
    one_error(&minimal(Path::new("/"), ""), "root directory");
    one_error(&with(dir.path(), "path", "''"), "path is empty");
}

#[test]
fn addresses_are_checked_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        one_error(&with(d, "listen", "\"10.0.0.1\""), "port is missing"),
        "\"10.0.0.1\""
    );
    one_error(&with(d, "listen", "\"10.0.0.1:0\""), "port 0");
    assert_eq!(one_error(&with(d, "peers", "[]"), "peers is empty"), "[]");
    assert_eq!(
        one_error(
            &with(d, "peers", "[\"10.0.0.2:8730\", \"10.0.0.1:8730\"]"),
            "own `listen`"
        ),
        "\"10.0.0.1:8730\""
    );
    one_error(
        &with(d, "peers", "[\"10.0.0.2:8730\", \"10.0.0.2:8730\"]"),
        "listed twice",
    );
    one_error(
        &with(d, "peers", "[\"0.0.0.0:8730\"]"),
        "cannot be connected",
    );
    one_error(&with(d, "peers", "[\"peer-b:8730\"]"), "not IP:port");
    let two = with(d, "peers", "[\"10.0.0.2:8730\", \"10.0.0.3:8730\"]");
    assert_eq!(built(&two).peers.len(), 2);
}

#[test]
fn choices_list_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (at, message) = errors(&with(d, "direction", "\"both-ways\""))
        .pop()
        .unwrap();
    assert_eq!(at, "\"both-ways\"");
    assert!(message.contains("both, push, pull"), "{message}");
    one_error(&with(d, "conflict", "\"keep-both\""), "already keeps both");
    one_error(&with(d, "conflict", "\"local-wins\""), "same winner");
    one_error(
        &with(d, "conflict", "\"coin-flip\""),
        "allowed: newest-wins",
    );
}

#[test]
fn exclude_patterns_are_compiled_and_each_mistake_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = with(dir.path(), "exclude", "[\"*.tmp\", \"!keep\", \"a//b\"]");
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].0, "\"!keep\"");
    assert!(errors[0].1.contains("negation"), "{}", errors[0].1);
    assert_eq!(errors[1].0, "\"a//b\"");
}

#[test]
fn delay_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(built(&with(d, "delay", "\"0s\"")).delay, Duration::ZERO);
    assert_eq!(
        one_error(&with(d, "delay", "\"10m\""), "longer than"),
        "\"10m\""
    );
    // A bare number is a parse error of the whole file (common's `Duration`).
    assert!(toml::from_str::<File>(&with(d, "delay", "\"100\"")).is_err());
}

// Input: no `delete_retention`, "0s", "30d", "10m". Output: a year by default, none (for
// ever) for "0s", 30 days, and "10m" refused at its value for being under an hour.
#[test]
fn delete_retention_is_a_year_by_default_for_ever_at_zero_and_at_least_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let year = Duration::from_secs(31_557_600);
    assert_eq!(built(&minimal(d, "")).delete_retention, Some(year));
    assert_eq!(
        built(&with(d, "delete_retention", "\"0s\"")).delete_retention,
        None
    );
    assert_eq!(
        built(&with(d, "delete_retention", "\"30d\"")).delete_retention,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        one_error(&with(d, "delete_retention", "\"10m\""), "shorter than 1h"),
        "\"10m\""
    );
}

// Input: no `owners`, then `owners = false`. Output: on by default (rsync -a as root), off
// when asked.
#[test]
fn owners_are_synced_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(built(&minimal(d, "")).owners);
    assert!(!built(&with(d, "owners", "false")).owners);
}

#[test]
fn bad_names_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = minimal(dir.path(), "").replace("[sync.web]", "[sync.\"../web\"]");
    one_error(&text, "cannot name a sync set");
    let unknown = minimal(dir.path(), "mode = \"rsync\"\n");
    assert!(toml::from_str::<File>(&unknown).is_err());
}

#[test]
fn listen_may_not_be_a_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let at = one_error(
        &with(dir.path(), "listen", "\"0.0.0.0:8730\""),
        "peers name this node",
    );
    assert!(at.contains("0.0.0.0:8730"), "{at}");
}

#[test]
fn sets_may_not_share_ports_peers_or_directories() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    let other = tempfile::tempdir().unwrap();
    let set = |name: &str, path: &Path, listen: &str, peer: &str| {
        format!(
            "[sync.{name}]\npath = '{}'\nlisten = \"{listen}\"\npeers = [\"{peer}\"]\n\
             shared_secret = \"s\"\n",
            path.display()
        )
    };
    let text = set("a", dir.path(), "10.0.0.1:8730", "10.0.0.2:8730")
        + &set("b", &inner, "10.0.0.1:8730", "10.0.0.2:8730")
        + &set("c", other.path(), "10.0.0.1:8731", "10.0.0.2:8731");
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].1.contains("sync set `a`"), "{}", errors[0].1);
    assert!(errors[0].0.contains("10.0.0.1:8730"));
    assert!(errors[1].1.contains("also a peer"), "{}", errors[1].1);
    assert!(errors[2].1.contains("inside"), "{}", errors[2].1);

    let same = set("a", dir.path(), "10.0.0.1:8730", "10.0.0.2:8730")
        + &set("b", dir.path(), "10.0.0.1:8731", "10.0.0.2:8731");
    assert!(one_error(&same, "the same directory").contains(&dir.path().display().to_string()));
    let around = set("a", &inner, "10.0.0.1:8730", "10.0.0.2:8730")
        + &set("b", dir.path(), "10.0.0.1:8731", "10.0.0.2:8731");
    one_error(&around, "around");
}

/// `tls = { cert, key, ca }` with these paths.
fn tls_line(cert: &Path, key: &Path, ca: &Path) -> String {
    format!(
        "tls = {{ cert = '{}', key = '{}', ca = '{}' }}\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

// Input: a node certificate signed by the CA, its key and the CA. Output: the files are
// loaded; a config read again from the same files is equal, and not once a file changed.
#[test]
fn tls_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls_certs::Pki::new();
    let node = pki.issue("a");
    let text = minimal(dir.path(), &tls_line(&node.cert, &node.key, &pki.ca.cert));
    let set = built(&text);
    let tls = set.tls.as_ref().unwrap();
    assert_eq!(
        tls.files(),
        &TlsFiles {
            cert: node.cert.clone(),
            key: node.key.clone(),
            ca: pki.ca.cert.clone(),
        }
    );
    assert_eq!(built(&text), set);
    std::fs::copy(&pki.issue("b").cert, &node.cert).unwrap();
    std::fs::copy(pki.dir().join("b.key"), &node.key).unwrap();
    assert_ne!(built(&text), set, "the same paths, other contents");
    assert!(built(&minimal(dir.path(), "")).tls.is_none());
}

// Input: each file missing in turn. Output: one error, at that file's key, naming the file.
#[test]
fn missing_tls_files_are_reported_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls_certs::Pki::new();
    let node = pki.issue("a");
    let missing = pki.dir().join("missing.pem");
    for (cert, key, ca, what) in [
        (&missing, &node.key, &pki.ca.cert, "TLS certificate"),
        (&node.cert, &missing, &pki.ca.cert, "TLS key"),
        (&node.cert, &node.key, &missing, "TLS CA bundle"),
    ] {
        let text = minimal(dir.path(), &tls_line(cert, key, ca));
        let at = one_error(
            &text,
            &format!("{what} {}: cannot read it", missing.display()),
        );
        assert_eq!(at, format!("'{}'", missing.display()));
    }
}

// Input: files that are not PEM of the right kind, and a key of another certificate.
// Output: an error at the key of the file, saying what is wrong with it.
#[test]
fn unusable_tls_files_are_reported_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls_certs::Pki::new();
    let a = pki.issue("a");
    let b = pki.issue("b");
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();

    let text = minimal(dir.path(), &tls_line(&junk, &a.key, &pki.ca.cert));
    let at = one_error(&text, "holds no PEM certificate");
    assert!(at.contains("junk.pem"), "{at}");
    let text = minimal(dir.path(), &tls_line(&a.cert, &junk, &pki.ca.cert));
    assert!(one_error(&text, "no usable PEM private key").contains("junk.pem"));
    let text = minimal(dir.path(), &tls_line(&a.cert, &a.key, &junk));
    assert!(one_error(&text, "TLS CA bundle").contains("junk.pem"));
    // A certificate where the key belongs.
    let text = minimal(dir.path(), &tls_line(&a.cert, &a.cert, &pki.ca.cert));
    one_error(&text, "no usable PEM private key");

    let text = minimal(dir.path(), &tls_line(&a.cert, &b.key, &pki.ca.cert));
    let at = one_error(&text, "does not go with the certificate");
    assert_eq!(at, format!("'{}'", b.key.display()));
}

// Input: this node's own certificate as its peers will check it. Output: a CA certificate
// used as a node's, or one without this node's address when a peer dials it, is refused at
// `cert` with how to make a good one; one the own `ca` does not vouch for passes.
#[test]
fn own_certificate_is_checked_as_the_peers_will() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls_certs::Pki::new();
    let ca_as_node = tls_line(&pki.ca.cert, &pki.ca.key, &pki.ca.cert);
    one_error(
        &minimal(dir.path(), &ca_as_node),
        "basicConstraints=critical,CA:FALSE",
    );

    // 10.0.0.2 is dialed by its peer 10.0.0.1, which checks the name; 10.0.0.1 dials only.
    let unnamed = pki.issue_with("unnamed", None);
    let line = tls_line(&unnamed.cert, &unnamed.key, &pki.ca.cert);
    let dialed = |line: &str| {
        minimal(dir.path(), line)
            .replace("10.0.0.1:8730", "10.0.0.9:8730")
            .replace("10.0.0.2:8730", "10.0.0.1:8730")
            .replace("10.0.0.9:8730", "10.0.0.2:8730")
    };
    built(&minimal(dir.path(), &line));
    one_error(&dialed(&line), "subjectAltName=IP:10.0.0.2");
    let named = pki.issue_with("named", Some("IP:10.0.0.2"));
    built(&dialed(&tls_line(&named.cert, &named.key, &pki.ca.cert)));

    let other = tls_certs::Pki::new();
    let foreign = tls_line(&unnamed.cert, &unnamed.key, &other.ca.cert);
    built(&dialed(&foreign));
}
