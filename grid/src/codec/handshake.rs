//! Payloads of the connection handshake ([`Op::Connect`](super::Op::Connect) and
//! [`Op::ConnectResponse`](super::Op::ConnectResponse)), MessagePack maps keyed by field
//! name so other languages and later versions can read them, and the decisions both sides
//! make on them ([`judge_connect`], [`judge_response`]): no I/O, no clock read (the time is
//! passed in), so the dialer, the acceptor and the fuzz target share them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// How long, in milliseconds, this side keeps the open streams of a lost socket for
    /// the same peer instance to come back (absent or 0: it does not). Streams resume only
    /// when both sides keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_grace_ms: Option<u64>,
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

/// The smallest maximum message size a side may announce: the control messages every side
/// sends (pings and pongs, stream acks, credit, the errors that end a call or stream) fit
/// in it. A side refuses a peer that announces less (PROTOCOL.md §1).
pub const MIN_MESSAGE_SIZE: u64 = 512;

/// The version a session with a peer that announced `terms` speaks, if this side accepts
/// them: a version it speaks ([`agree_version`]) and a maximum message size of at least
/// [`MIN_MESSAGE_SIZE`]. `Err`: the reason to refuse with.
pub fn agree_terms(terms: &Terms) -> Result<u32, String> {
    let version = agree_version(terms.version)?;
    match terms.max_message_size {
        Some(size) if size < MIN_MESSAGE_SIZE => Err(format!(
            "the peer announces a maximum message size of {size} bytes; at least \
             {MIN_MESSAGE_SIZE} are needed for the control messages to fit"
        )),
        _ => Ok(version),
    }
}

/// Why a handshake failed, as the side that judged the other's message sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The other side, or this one, refuses the connection, saying why (the peer was
    /// told, or told us).
    Refused(String),
    /// The message breaks the protocol (a field that cannot be read).
    Broken(String),
}

/// The close reason, and the dialer's error, when the acceptor refuses `host`'s Connect
/// for `reason`: `"<host> refused: <reason>"` (PROTOCOL.md §1.4).
pub fn refusal(host: &str, reason: &str) -> String {
    format!("{host} refused: {reason}")
}

/// The acceptor's checks of a Connect that need no state of its own (whether the host is
/// a known peer that dials this node, and its token, are the acceptor's to check first):
/// its terms ([`agree_terms`]), the clock skew against this node's wall clock `now_ms`, and
/// the instance id. `Ok`: the dialer's instance. `Err`: the reason to refuse with.
pub fn judge_connect(
    req: &ConnectRequest,
    now_ms: i64,
    max_skew: Duration,
) -> Result<Uuid, String> {
    agree_terms(&req.terms)?;
    let skew_ms = now_ms.abs_diff(req.clock_ms);
    if u128::from(skew_ms) > max_skew.as_millis() {
        return Err(format!(
            "clock skew of {:.1}s exceeds the allowed {:.1}s; synchronise the clocks (NTP)",
            skew_ms as f64 / 1000.0,
            max_skew.as_secs_f64()
        ));
    }
    Uuid::parse_str(&req.instance).map_err(|e| format!("bad instance id: {e}"))
}

/// The dialer's checks of the ConnectResponse from the peer it dialed as `expected` at
/// `url`: accepted, by that peer, with an instance id, on terms this side accepts
/// ([`agree_terms`]).
/// `Ok`: the acceptor's instance and the terms it announced.
pub fn judge_response(
    resp: &ConnectResponse,
    expected: &str,
    url: &str,
) -> Result<(Uuid, Terms), Verdict> {
    if !resp.accepted {
        return Err(Verdict::Refused(resp.reason.clone()));
    }
    if resp.host != expected {
        return Err(Verdict::Refused(format!(
            "reached {:?} at {url} but expected {expected:?}",
            resp.host
        )));
    }
    let instance = Uuid::parse_str(&resp.instance)
        .map_err(|e| Verdict::Broken(format!("bad instance id in ConnectResponse: {e}")))?;
    agree_terms(&resp.terms).map_err(Verdict::Refused)?;
    Ok((instance, resp.terms))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ConnectRequest {
        ConnectRequest {
            host: "a".into(),
            instance: Uuid::from_u128(7).to_string(),
            clock_ms: 1_000_000,
            token: "t".into(),
            terms: Terms {
                version: Some(PROTOCOL_VERSION),
                ..Terms::default()
            },
        }
    }

    #[test]
    fn a_connect_is_refused_for_its_version_its_clock_or_its_instance_id() {
        let skew = Duration::from_secs(5);
        assert_eq!(
            judge_connect(&request(), 1_004_000, skew),
            Ok(Uuid::from_u128(7))
        );
        let old = ConnectRequest {
            terms: Terms::default(),
            ..request()
        };
        let why = judge_connect(&old, 1_000_000, skew).expect_err("version 1");
        assert!(
            why.contains("version 1") && why.contains("version 2"),
            "{why}"
        );
        let why = judge_connect(&request(), 1_006_000, skew).expect_err("6 s of skew");
        assert!(why.contains("clock skew of 6.0s"), "{why}");
        let tiny = ConnectRequest {
            terms: Terms {
                max_message_size: Some(MIN_MESSAGE_SIZE - 1),
                ..request().terms
            },
            ..request()
        };
        let why = judge_connect(&tiny, 1_000_000, skew).expect_err("511 bytes");
        assert!(why.contains("511 bytes") && why.contains("512"), "{why}");
        let least = ConnectRequest {
            terms: Terms {
                max_message_size: Some(MIN_MESSAGE_SIZE),
                ..request().terms
            },
            ..request()
        };
        assert!(judge_connect(&least, 1_000_000, skew).is_ok());
        let bad = ConnectRequest {
            instance: "x".into(),
            ..request()
        };
        assert!(judge_connect(&bad, 1_000_000, skew)
            .expect_err("a bad instance id")
            .contains("instance"));
    }

    #[test]
    fn a_response_is_judged_by_who_answered_and_what() {
        let ok = ConnectResponse {
            accepted: true,
            host: "b".into(),
            instance: Uuid::from_u128(9).to_string(),
            terms: Terms {
                version: Some(PROTOCOL_VERSION),
                ..Terms::default()
            },
            ..ConnectResponse::default()
        };
        assert_eq!(
            judge_response(&ok, "b", "ws://b").map(|(i, _)| i),
            Ok(Uuid::from_u128(9))
        );
        let refused = ConnectResponse {
            accepted: false,
            reason: refusal("a", "token refused: no"),
            ..ok.clone()
        };
        assert_eq!(
            judge_response(&refused, "b", "ws://b"),
            Err(Verdict::Refused("a refused: token refused: no".into()))
        );
        match judge_response(&ok, "c", "ws://c") {
            Err(Verdict::Refused(why)) => assert!(why.contains("expected \"c\""), "{why}"),
            other => panic!("{other:?}"),
        }
        let broken = ConnectResponse {
            instance: "?".into(),
            ..ok.clone()
        };
        assert!(matches!(
            judge_response(&broken, "b", "ws://b"),
            Err(Verdict::Broken(_))
        ));
        let tiny = ConnectResponse {
            terms: Terms {
                max_message_size: Some(100),
                ..ok.terms
            },
            ..ok.clone()
        };
        assert!(matches!(
            judge_response(&tiny, "b", "ws://b"),
            Err(Verdict::Refused(why)) if why.contains("100 bytes")
        ));
        let old = ConnectResponse {
            terms: Terms::default(),
            ..ok
        };
        assert!(matches!(
            judge_response(&old, "b", "ws://b"),
            Err(Verdict::Refused(_))
        ));
    }
}
