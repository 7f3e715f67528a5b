//! Seed 004's site for the soak run: the lab's topology on the `fulcrum` binary under test,
//! with this crate's origins served in-process, each bound inside its node's namespace, as
//! `tests/support/seed004.rs` builds it for the tests.

use std::any::Any;
use std::path::Path;

use anyhow::Context;
use fulcrum_lab::netns::Netns;
use fulcrum_lab::seed004::{Options, OriginSpec, Seed004};
use tokio::runtime::Runtime;

use crate::origin::{self, OriginOptions};

/// Each L7 node's upload directory is a tmpfs of this size, so that the full-disk fault can
/// fill B's; the uploads of a 10-minute run take a few MiB of it.
const UPLOADS_TMPFS: &str = "64m";

/// The running site, and the runtime its origins serve on. Field order is drop order: the site
/// (origins first) before the runtime their tasks run on.
pub(crate) struct Site {
    pub(crate) site: Seed004,
    _runtime: Runtime,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.site.fmt(f)
    }
}

impl Site {
    /// Builds the site and waits until it has settled. The lab panics on a failed step (it is a
    /// test harness); the panic, with the logs, becomes this error.
    pub(crate) fn start(fulcrum: &Path) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("soak-origin")
            .enable_all()
            .build()
            .context("cannot start the origins' runtime")?;
        let handle = runtime.handle().clone();
        let start_origin = move |ns: &Netns, spec: &OriginSpec| -> Box<dyn Any + Send> {
            let options = OriginOptions {
                name: spec.name.to_owned(),
                files: Some(spec.files.clone()),
                ..OriginOptions::default()
            };
            // Bound on a thread inside the namespace; the accept loop then runs on the
            // runtime's workers, its connections belonging to the listener's namespace.
            let origin = ns
                .enter(|| handle.block_on(origin::start(spec.listen, options)))
                .unwrap_or_else(|error| panic!("origin {} on {}: {error}", spec.name, spec.listen));
            Box::new(origin)
        };
        let site = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Seed004::start(Options {
                fulcrum,
                origins: &start_origin,
                uploads_tmpfs: Some(UPLOADS_TMPFS),
            })
        }))
        .map_err(|panic| anyhow::anyhow!("seed 004 did not start: {}", panic_text(&panic)))?;
        Ok(Self {
            site,
            _runtime: runtime,
        })
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
