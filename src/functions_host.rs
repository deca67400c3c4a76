//! What every custom handler of this crate (`handler`, `install-notifications`) needs from the
//! Functions host's process: the port to listen on and the signals to stop on.

use std::future::Future;

use crate::config::DEFAULT_LOCAL_PORT;

/// The port settings the host sets, newest name first.
pub const PORT_SETTINGS: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"];

#[derive(Debug, thiserror::Error)]
#[error("{name} is {value:?}: expected a TCP port number (0-65535)")]
pub struct PortError {
    name: &'static str,
    value: String,
}

/// The flag's port, else the host's (FUNCTIONS_CUSTOMHANDLER_PORT, FUNCTIONS_HTTPWORKER_PORT),
/// else 8080 for local runs.
pub fn listen_port(flag: Option<u16>) -> Result<u16, PortError> {
    if let Some(port) = flag {
        return Ok(port);
    }
    for name in PORT_SETTINGS {
        if let Some(value) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
            return value.trim().parse().map_err(|_| PortError { name, value });
        }
    }
    Ok(DEFAULT_LOCAL_PORT)
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when it
/// is first polled, so a signal that arrives right after "listening" is not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}
