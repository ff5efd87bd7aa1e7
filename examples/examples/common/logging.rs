//! Logging for the examples: grid logs through `tracing`; this prints it on stderr,
//! filtered by `RUST_LOG` (default `warn`: refusals and lost connections). For connects
//! and reconnects too: `RUST_LOG=grid=info`; for every call: `RUST_LOG=grid=debug`.

/// Installs the subscriber (once, at the start of `main`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
