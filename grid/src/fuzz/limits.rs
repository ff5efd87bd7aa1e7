//! What an input describes: each side's settings, which side, and which mux id an
//! injected message carries.

use std::time::Duration;

use crate::codec::handshake::Terms;

/// One side's settings, as its manager's builder takes them. [`Pair::new`](super::Pair::new)
/// makes them valid the way `ManagerBuilder::build` requires.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest payload one message may carry (512 bytes to 1 GiB).
    pub max_message_size: usize,
    /// Calls and streams served at once for the peer (at least 1).
    pub max_concurrent: usize,
    /// Request bytes held at once for the peer (at least the maximum message size).
    pub max_request_bytes: usize,
    /// Bytes of chunked payloads held half received (at least the maximum message size).
    pub reassembly_window: usize,
    /// Answer bytes waiting for the socket beyond which no new handler starts.
    pub max_send_buffer: usize,
    /// Calls and streams the peer may cancel before they started, per ping interval.
    pub max_early_cancels: usize,
    /// The connection's ping interval (non-zero).
    pub ping_interval: Duration,
    /// The streams' ping interval (non-zero).
    pub stream_ping_interval: Duration,
}

impl Limits {
    pub(super) fn valid(mut self) -> Self {
        self.max_message_size = self
            .max_message_size
            .clamp(crate::engine::MIN_MESSAGE_SIZE, 1 << 30);
        self.max_concurrent = self.max_concurrent.clamp(1, u32::MAX as usize);
        self.max_request_bytes = self.max_request_bytes.max(self.max_message_size);
        self.reassembly_window = self.reassembly_window.max(self.max_message_size);
        self.ping_interval = self.ping_interval.max(Duration::from_millis(1));
        self.stream_ping_interval = self.stream_ping_interval.max(Duration::from_millis(1));
        self
    }

    /// The limits of a grid peer that announced `terms` (defaults for what it left out).
    pub(super) fn announced_by(terms: &Terms) -> Self {
        let size = |v: Option<u64>, default: usize| {
            v.and_then(|v| usize::try_from(v).ok()).unwrap_or(default)
        };
        let defaults = crate::core::Config::default();
        Limits {
            max_message_size: size(terms.max_message_size, defaults.max_message_size),
            max_concurrent: size(
                terms.max_concurrent.map(u64::from),
                defaults.max_concurrent_calls,
            ),
            max_request_bytes: size(terms.max_request_bytes, defaults.max_request_bytes),
            reassembly_window: size(terms.reassembly_window, defaults.reassembly_window),
            max_send_buffer: defaults.max_send_buffer,
            max_early_cancels: defaults.max_early_cancels,
            ping_interval: defaults.ping_interval,
            stream_ping_interval: defaults.stream_ping_interval,
        }
        .valid()
    }

    /// The manager's configuration with these limits.
    pub(super) fn core(&self) -> crate::core::Config {
        crate::core::Config {
            ping_interval: self.ping_interval,
            stream_ping_interval: self.stream_ping_interval,
            max_message_size: self.max_message_size,
            max_concurrent_calls: self.max_concurrent,
            max_send_buffer: self.max_send_buffer,
            reassembly_window: self.reassembly_window,
            max_request_bytes: self.max_request_bytes,
            max_early_cancels: self.max_early_cancels,
            ..crate::core::Config::default()
        }
    }
}

/// One engine of a [`Pair`](super::Pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The first engine.
    A,
    /// The second engine.
    B,
}

impl Peer {
    pub(super) fn other(self) -> Peer {
        match self {
            Peer::A => Peer::B,
            Peer::B => Peer::A,
        }
    }
}

/// The mux id of a message injected into an engine.
#[derive(Clone, Copy, Debug)]
pub enum Mux {
    /// This value.
    Raw(u64),
    /// The id of a call or stream the receiving engine made (the `n`th it remembers).
    Made(u8),
    /// The id of a call or stream the receiving engine serves or served (the `n`th).
    Served(u8),
}
