//! Payloads of the connection handshake ([`Op::Connect`](super::Op::Connect) and
//! [`Op::ConnectResponse`](super::Op::ConnectResponse)), MessagePack maps keyed by field
//! name so other languages and later versions can read them.

use serde::{Deserialize, Serialize};

/// Sent by the dialer right after the WebSocket upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// The dialer's node name, as the acceptor knows it in its peer list.
    pub host: String,
    /// The dialer's instance id; a new value means the dialer restarted.
    pub instance: String,
    /// The dialer's wall clock, milliseconds since the Unix epoch.
    pub clock_ms: i64,
    /// The dialer's auth token (also sent as the upgrade's bearer token).
    pub token: String,
    /// What the dialer speaks, accepts and asks for (fields of the same map).
    #[serde(flatten)]
    pub terms: Terms,
}

/// The acceptor's answer to a [`ConnectRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectResponse {
    /// Whether the connection is accepted.
    pub accepted: bool,
    /// Why it was rejected (empty when accepted).
    pub reason: String,
    /// The acceptor's node name.
    pub host: String,
    /// The acceptor's instance id.
    pub instance: String,
    /// The acceptor's wall clock, milliseconds since the Unix epoch.
    pub clock_ms: i64,
    /// What the acceptor speaks, accepts and asks for (fields of the same map).
    #[serde(flatten)]
    pub terms: Terms,
}

/// The optional fields both handshake messages carry: what one side speaks, accepts from
/// the other side and asks for. An absent field means the default given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The protocol version this side speaks (absent: 1). The session uses the lower of
    /// the two sides' versions; a side refuses a peer whose version it cannot speak (grid
    /// speaks 2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The largest payload this side accepts in one message (absent: 16 MiB). Both sides
    /// then send at most the smaller of the two sides' values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    /// Whether this side asks for checksums (absent: true). Messages after the handshake
    /// carry checksums, both ways, when either side asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<bool>,
    /// The most calls and streams this side serves at once for the other side (absent:
    /// 1024). The other side refuses, with a Busy error, calls beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// The most bytes of chunked payloads this side holds half received at once (absent:
    /// 4 × 16 MiB). The other side starts no chunked payload that would take the payloads
    /// it is still sending in chunks beyond this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassembly_window: Option<u64>,
    /// The most bytes of request payloads (single calls' requests and streams' initial
    /// payloads) this side holds at once for the other side's calls in flight (absent:
    /// 64 MiB). The other side waits before sending a call beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// The most credit, in bytes, this side grants one stream direction at once (absent:
    /// 16 MiB). More credit from it is its violation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_window: Option<u64>,
}

impl Terms {
    /// Whether a session uses checksums: when either side asks (`ours`, and the side that
    /// announced these terms, whose absent answer means yes).
    pub fn agree_checksums(&self, ours: bool) -> bool {
        ours || self.checksums.unwrap_or(true)
    }
}

/// The protocol version this implementation speaks: 2 (stream windows count bytes).
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest version this implementation speaks (version 1 counted stream credit in
/// messages; nothing speaking it was ever deployed).
pub const OLDEST_VERSION: u32 = 2;

/// The version a session with a peer that announced `peer` speaks: the lower of the two
/// sides' versions (an absent one is 1). `Err` names both versions when this side cannot
/// speak it.
pub fn agree_version(peer: Option<u32>) -> Result<u32, String> {
    match peer.unwrap_or(1) {
        v if v < OLDEST_VERSION => Err(format!(
            "the peer speaks protocol version {v}, this node speaks version {PROTOCOL_VERSION} \
             (stream windows in bytes); upgrade the peer"
        )),
        v => Ok(v.min(PROTOCOL_VERSION)),
    }
}

/// Encodes a handshake payload.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Decodes a handshake payload.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("bad handshake payload: {e}"))
}
