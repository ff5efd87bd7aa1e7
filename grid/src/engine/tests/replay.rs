//! What a resumable stream's sender keeps (`engine/replay.rs`): every message until the
//! peer acknowledges it, within the window; and a stream cut anywhere and resumed
//! (`engine/resume.rs`) delivers every message once, in order.

use super::fixture::{At, Fixture};
use crate::engine::Side;

const MSG: &[u8] = &[7; 100];

/// A's kept messages and their payload bytes.
fn kept(f: &mut Fixture) -> (usize, usize) {
    let a = f.a;
    let s = f.net.a.e.stream_mut(Side::Caller, a).expect("stream");
    s.header
        .out
        .replay
        .as_deref()
        .map_or((0, 0), |r| (r.len(), r.held()))
}

#[test]
fn a_senders_replay_stays_within_the_window_and_empties_as_the_peer_acknowledges() {
    let window = 4096;
    let mut f = Fixture::with_replay(At::Open, window);
    // A sends until its credit runs out; B reads nothing.
    let mut sent = 0;
    while f.a_send(MSG).is_ok() {
        sent += 1;
        f.net.pump();
    }
    let (n, bytes) = kept(&mut f);
    assert_eq!(n, sent, "everything sent is kept until acknowledged");
    // (Encodings: each message's payload and a few bytes of header.)
    let bound = |window: usize| window * 5 / 4 + 2 * MSG.len();
    assert!(
        bytes <= bound(window as usize),
        "{bytes} kept for a window of {window}"
    );
    // B reads it all: the credit it returns acknowledges what arrived.
    let mut read = 0;
    while let Some(Ok(_)) = f.b_recv() {
        read += 1;
        f.net.pump();
    }
    assert_eq!(read, sent);
    let (n, bytes) = kept(&mut f);
    assert!(
        bytes <= bound(window as usize / 8),
        "{n} messages ({bytes} bytes) still kept after all were read"
    );
    // Many more, read as they come: what is kept stays bounded.
    for _ in 0..500 {
        if f.a_send(MSG).is_ok() {
            f.net.pump();
        }
        let _ = f.b_recv();
        f.net.pump();
        let (_, bytes) = kept(&mut f);
        assert!(bytes <= bound(window as usize), "{bytes} kept");
    }
    f.wind_down_and_check("replay");
}

/// The payload that numbers message `i`, `size` bytes long (at least 4).
fn numbered(i: u32, size: usize) -> &'static [u8] {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(size.max(4), i as u8);
    Box::leak(v.into_boxed_slice())
}

/// A sends `n` numbered messages and B sends `n`; of the frames on their way when the
/// link dies, only the first `delivered` of each direction arrive; both engines keep
/// their streams, resume on a new "socket", and both sides then read every message once,
/// in order.
fn cut_and_resume(n: u32, size: impl Fn(u32) -> usize, delivered: usize) {
    let mut f = Fixture::with_replay(At::Open, 1 << 20);
    let now = f.net.now;
    for i in 0..n {
        f.a_send(numbered(i, size(i))).expect("A has credit");
        f.b_send(numbered(i, size(i))).expect("B has credit");
    }
    let ab = f.net.a.transmit_some(now, usize::MAX);
    let ba = f.net.b.transmit_some(now, usize::MAX);
    f.net
        .b
        .receive(now, ab.into_iter().take(delivered).collect());
    f.net
        .a
        .receive(now, ba.into_iter().take(delivered).collect());
    // The link dies; a new one comes up.
    let lost = crate::error::Error::LOST;
    assert_eq!(f.net.a.e.suspend(&lost), 1, "A keeps its stream");
    assert_eq!(f.net.b.e.suspend(&lost), 1, "B keeps its stream");
    // Sent while there is no socket: kept, sent after the resume.
    f.a_send(numbered(n, size(n))).expect("A has credit");
    f.net.a.e.begin_resume(now);
    f.net.b.e.begin_resume(now);
    f.net.a.wake();
    f.net.b.wake();
    // More after the resume, then everything is read.
    f.b_send(numbered(n, size(n))).expect("B has credit");
    for i in n + 1..n + 5 {
        f.a_send(numbered(i, size(i))).expect("A has credit");
        f.b_send(numbered(i, size(i))).expect("B has credit");
    }
    f.net.pump();
    let mut got_b = Vec::new();
    let mut got_a = Vec::new();
    for _ in 0..(n + 5) {
        if let Some(Ok(m)) = f.b_recv() {
            got_b.push(u32::from_be_bytes(m[..4].try_into().expect("4 bytes")));
        }
        if let Some(Ok(m)) = f.a_recv() {
            got_a.push(u32::from_be_bytes(m[..4].try_into().expect("4 bytes")));
        }
        f.net.pump();
    }
    let all: Vec<u32> = (0..n + 5).collect();
    assert_eq!(
        got_b, all,
        "B read A's messages once each, in order (cut after {delivered} frames)"
    );
    assert_eq!(
        got_a, all,
        "A read B's messages once each, in order (cut after {delivered} frames)"
    );
    f.net.assert_no_violation("resumed");
}

#[test]
fn a_stream_cut_anywhere_and_resumed_delivers_every_message_once_in_order() {
    for delivered in 0..6 {
        cut_and_resume(300, |_| 4, delivered);
    }
    // Large messages (sent in chunks) among small ones: a cut may fall inside one.
    for delivered in 0..12 {
        cut_and_resume(
            12,
            |i| {
                if i % 3 == 1 {
                    150_000
                } else {
                    100 + i as usize
                }
            },
            delivered,
        );
    }
}

#[test]
fn a_resumed_stream_counts_its_callers_silence_from_the_resume() {
    let mut f = Fixture::with_replay(At::Open, 64 * 1024);
    let lost = crate::error::Error::LOST;
    assert_eq!(f.net.a.e.suspend(&lost), 1);
    assert_eq!(f.net.b.e.suspend(&lost), 1);
    // Away for a long while: the handler side heard nothing from the caller meanwhile.
    f.net.advance(std::time::Duration::from_secs(3600));
    let now = f.net.now;
    f.net.b.e.begin_resume(now);
    let b = f.b_key();
    let s = f.net.b.e.stream_mut(Side::Handler, b).expect("kept");
    match s.role {
        crate::engine::state::Role::Handler { last_heard, .. } => assert_eq!(
            last_heard, now,
            "the time without a socket does not count as the caller's silence"
        ),
        _ => panic!("a handler stream"),
    }
}

/// A Resume message from the peer carrying `payload`.
fn resume_frame(payload: &[u8]) -> bytes::Bytes {
    let mut m = crate::codec::Message::new(crate::codec::Op::Resume);
    m.payload = Some(bytes::Bytes::copy_from_slice(payload));
    super::merged_frame(&m)
}

#[test]
fn a_resume_out_of_place_or_malformed_breaks_the_protocol() {
    // On a live connection that is not resuming.
    let mut f = Fixture::with_replay(At::Open, 64 * 1024);
    let now = f.net.now;
    f.net.a.receive(now, vec![resume_frame(&[0x90])]);
    f.net
        .a
        .assert_violation("Resume out of place", "a Resume on a live connection");
    // On a resumed connection, a payload that is not a list of streams.
    for bad in [&[0x91, 0x01][..], &[0xc0], &[0x91, 0x94, 0xc3]] {
        let mut f = Fixture::with_replay(At::Open, 64 * 1024);
        let now = f.net.now;
        f.net.a.e.suspend(&crate::error::Error::LOST);
        f.net.a.e.begin_resume(now);
        f.net.a.receive(now, vec![resume_frame(bad)]);
        f.net.a.assert_violation("bad Resume", "a malformed Resume");
    }
}

#[test]
fn a_kept_stream_whose_deadline_passes_without_a_socket_ends_and_the_peer_fails_it() {
    let mut f = Fixture::with_replay(At::Open, 64 * 1024);
    let lost = crate::error::Error::LOST;
    assert_eq!(f.net.a.e.suspend(&lost), 1);
    assert_eq!(f.net.b.e.suspend(&lost), 1);
    // The stream's deadline (600 s, the fixture's) passes while there is no socket: only
    // the caller's side keeps deadlines running here (B's driver was not told the time).
    f.net.now += std::time::Duration::from_secs(601);
    let now = f.net.now;
    f.net
        .a
        .e
        .handle_timeout(now)
        .expect("no silence check while suspended");
    f.net.a.wake();
    assert_eq!(
        f.a_recv(),
        Some(Err(crate::error::Error::DeadlineExceeded)),
        "the caller's stream ended at its deadline"
    );
    f.net.a.e.begin_resume(now);
    f.net.b.e.begin_resume(now);
    f.net.pump();
    // A no longer lists it: B's end fails as lost.
    assert_eq!(f.b_recv(), Some(Err(lost)));
    f.net.assert_no_violation("a deadline without a socket");
}

mod interleaved {
    //! Random interleavings of both sides' sends and reads, writer turns, deliveries and
    //! cuts (frames on their way lost, both sides suspended, then resumed on a new socket,
    //! possibly cut again before the resume completes): each side reads exactly what the
    //! other sent, once, in order.

    use proptest::prelude::*;

    use super::{numbered, At, Fixture};

    #[derive(Debug, Clone)]
    enum Step {
        ASend(u8),
        BSend(u8),
        ARead(u8),
        BRead(u8),
        TurnAB,
        TurnBA,
        DeliverAB,
        DeliverBA,
        Cut,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u8..20).prop_map(Step::ASend),
            3 => (1u8..20).prop_map(Step::BSend),
            3 => (1u8..30).prop_map(Step::ARead),
            3 => (1u8..30).prop_map(Step::BRead),
            3 => Just(Step::TurnAB),
            3 => Just(Step::TurnBA),
            2 => Just(Step::DeliverAB),
            2 => Just(Step::DeliverBA),
            1 => Just(Step::Cut),
        ]
    }

    /// What the fixture's receivers say when nothing is there yet.
    fn pending() -> crate::error::Error {
        crate::error::Error::Protocol("pending".into())
    }

    fn number(m: &bytes::Bytes) -> u32 {
        u32::from_be_bytes(m[..4].try_into().expect("4 bytes"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn every_message_arrives_once_in_order_through_cuts_and_resumes(
            steps in prop::collection::vec(step(), 1..120),
            big in any::<bool>(),
        ) {
            let size = |i: u32| if big && i % 7 == 3 { 90_000 } else { 20 + (i % 50) as usize };
            let mut f = Fixture::with_replay(At::Open, 256 * 1024);
            let (mut a_sent, mut b_sent) = (0u32, 0u32);
            let (mut a_got, mut b_got) = (Vec::new(), Vec::new());
            let (mut ab, mut ba): (Vec<bytes::Bytes>, Vec<bytes::Bytes>) = (Vec::new(), Vec::new());
            for s in steps {
                let now = f.net.now;
                match s {
                    Step::ASend(n) => {
                        for _ in 0..n {
                            if f.a_send(numbered(a_sent, size(a_sent))).is_err() { break; }
                            a_sent += 1;
                        }
                    }
                    Step::BSend(n) => {
                        for _ in 0..n {
                            if f.b_send(numbered(b_sent, size(b_sent))).is_err() { break; }
                            b_sent += 1;
                        }
                    }
                    Step::ARead(n) => {
                        for _ in 0..n {
                            match f.a_recv() {
                                Some(Ok(m)) => a_got.push(number(&m)),
                                Some(Err(e)) if e == pending() => break,
                                other => prop_assert!(false, "A's stream ended: {other:?}"),
                            }
                        }
                    }
                    Step::BRead(n) => {
                        for _ in 0..n {
                            match f.b_recv() {
                                Some(Ok(m)) => b_got.push(number(&m)),
                                Some(Err(e)) if e == pending() => break,
                                other => prop_assert!(false, "B's stream ended: {other:?}"),
                            }
                        }
                    }
                    Step::TurnAB => ab.extend(f.net.a.transmit_some(now, 1)),
                    Step::TurnBA => ba.extend(f.net.b.transmit_some(now, 1)),
                    Step::DeliverAB => {
                        let frames = std::mem::take(&mut ab);
                        f.net.b.receive(now, frames);
                    }
                    Step::DeliverBA => {
                        let frames = std::mem::take(&mut ba);
                        f.net.a.receive(now, frames);
                    }
                    Step::Cut => {
                        ab.clear();
                        ba.clear();
                        let lost = crate::error::Error::LOST;
                        prop_assert_eq!(f.net.a.e.suspend(&lost), 1);
                        prop_assert_eq!(f.net.b.e.suspend(&lost), 1);
                        f.net.a.e.begin_resume(now);
                        f.net.b.e.begin_resume(now);
                        f.net.a.wake();
                        f.net.b.wake();
                    }
                }
                f.net.assert_no_violation("interleaved");
            }
            // Wind down: everything on its way arrives, both sides read all.
            let now = f.net.now;
            f.net.b.receive(now, ab);
            f.net.a.receive(now, ba);
            for _ in 0..(a_sent + b_sent + 10) {
                f.net.pump();
                if let Some(Ok(m)) = f.a_recv() { a_got.push(number(&m)); }
                if let Some(Ok(m)) = f.b_recv() { b_got.push(number(&m)); }
            }
            f.net.assert_no_violation("wound down");
            prop_assert_eq!(b_got, (0..a_sent).collect::<Vec<_>>(), "B read A's messages");
            prop_assert_eq!(a_got, (0..b_sent).collect::<Vec<_>>(), "A read B's messages");
        }
    }
}
