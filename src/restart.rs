//! Restarting one of the appliance's own servers (the admin server, the NRPE agent, a volume, a
//! sync set) on a reload that changed its section. The old one has let go of its address first,
//! so that the new one can bind it; when the new one cannot start (its address is held by
//! another process, say), the previous section starts again rather than leave it gone until a
//! restart.

use std::fmt::Display;

/// Starts `config` with `start`, else `previous` again; `None` when neither runs. `what` and
/// `section` name the server and its section in the error logged on the way back
/// (`"the admin server"`, `"[admin]"`).
pub(crate) async fn start_or_restore<C, T, E, Fut>(
    what: &str,
    section: &str,
    config: C,
    previous: Option<C>,
    start: impl Fn(C) -> Fut,
) -> Option<T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let error = match start(config).await {
        Ok(started) => return Some(started),
        Err(error) => error,
    };
    let Some(previous) = previous else {
        tracing::error!(%error, "cannot start {what} with the new {section}; it is not running");
        return None;
    };
    match start(previous).await {
        Ok(restored) => {
            tracing::error!(%error, "cannot start {what} with the new {section}; it keeps serving with the previous one");
            Some(restored)
        }
        Err(again) => {
            tracing::error!(%error, %again, "cannot start {what} with the new {section}, nor again with the previous one; it is not running");
            None
        }
    }
}
