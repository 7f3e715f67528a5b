//! Test certificates, made at test time with the `openssl` command (no private key is kept in
//! the tree): a CA, node certificates it signs, and self-signed ones. Every node certificate
//! names 127.0.0.1 (subjectAltName IP) unless asked not to, and is not a CA.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A scratch directory with a test CA in it.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    /// The CA's certificate: a node's `ca`.
    pub(crate) ca: Issued,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Issued {
            cert: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
        };
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=fulcrum test CA",
                "-keyout",
                path(&ca.key),
                "-out",
                path(&ca.cert),
            ],
        );
        Self { dir, ca }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A node certificate for `name`, signed by the CA, naming 127.0.0.1.
    pub(crate) fn issue(&self, name: &str) -> Issued {
        self.issue_with(name, Some("IP:127.0.0.1"))
    }

    /// A node certificate signed by the CA with the subjectAltName `san` (none: no name).
    pub(crate) fn issue_with(&self, name: &str, san: Option<&str>) -> Issued {
        let issued = self.paths(name);
        let csr = self.dir().join(format!("{name}.csr"));
        openssl(
            self.dir(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                path(&issued.key),
                "-out",
                path(&csr),
            ],
        );
        let ext = self.dir().join(format!("{name}.ext"));
        let mut text = "basicConstraints=critical,CA:FALSE\n".to_owned();
        if let Some(san) = san {
            text.push_str(&format!("subjectAltName={san}\n"));
        }
        std::fs::write(&ext, text).unwrap();
        openssl(
            self.dir(),
            &[
                "x509",
                "-req",
                "-in",
                path(&csr),
                "-CA",
                path(&self.ca.cert),
                "-CAkey",
                path(&self.ca.key),
                "-set_serial",
                &format!(
                    "{}",
                    1000 + name.len() * 7 + usize::from(name.as_bytes()[0])
                ),
                "-days",
                "2",
                "-extfile",
                path(&ext),
                "-out",
                path(&issued.cert),
            ],
        );
        issued
    }

    /// A self-signed node certificate for `name`, naming 127.0.0.1: its own `ca`, or one of a
    /// bundle of the peers' certificates.
    pub(crate) fn self_signed(&self, name: &str) -> Issued {
        let issued = self.paths(name);
        openssl(
            self.dir(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-keyout",
                path(&issued.key),
                "-out",
                path(&issued.cert),
            ],
        );
        issued
    }

    /// A file in the scratch directory holding the certificates of `certs`, one after another.
    pub(crate) fn bundle(&self, name: &str, certs: &[&Path]) -> PathBuf {
        let mut text = Vec::new();
        for cert in certs {
            text.extend(std::fs::read(cert).unwrap());
        }
        let bundle = self.dir().join(name);
        std::fs::write(&bundle, text).unwrap();
        bundle
    }

    fn paths(&self, name: &str) -> Issued {
        Issued {
            cert: self.dir().join(format!("{name}.pem")),
            key: self.dir().join(format!("{name}.key")),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command, to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
