//! `fulcrum-bench load` (being written).

/// Options of `fulcrum-bench load`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("fulcrum-bench load is not built yet")
}
