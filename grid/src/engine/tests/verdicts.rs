//! Executed or not, under random orders of events: A calls B while frames travel (held on
//! the way, delivered later or lost), B answers, B drains and closes once drained, or the
//! link is cut. Every call ends, and its verdict is true to what B's handlers saw: an
//! answer only from a handler that ran, `NotExecuted` only for a call whose handler never
//! ran, and `MayHaveExecuted` (a call lost with the link) only after a cut, never after a
//! graceful close.

use std::collections::HashSet;
use std::task::Poll;

use bytes::Bytes;
use proptest::prelude::*;

use super::calls::answer_of;
use super::{Net, Watch};
use crate::error::{Error, Execution};

#[derive(Debug, Clone)]
enum Step {
    Call,
    Drain,
    /// One turn of a writer: its frames start on their way.
    SendAB,
    SendBA,
    /// The frames on their way arrive.
    DeliverAB,
    DeliverBA,
    /// B's handlers answer.
    Answer,
    /// B's driver closes the socket if its drain is over (what B wrote arrives first).
    CloseIfDrained,
    /// The link dies: what is on its way is lost.
    Cut,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Call),
        1 => Just(Step::Drain),
        3 => Just(Step::SendAB),
        3 => Just(Step::SendBA),
        3 => Just(Step::DeliverAB),
        3 => Just(Step::DeliverBA),
        3 => Just(Step::Answer),
        2 => Just(Step::CloseIfDrained),
        1 => Just(Step::Cut),
    ]
}

/// Two engines and the frames on their way between them.
struct Link {
    net: Net,
    ab: Vec<Bytes>,
    ba: Vec<Bytes>,
    /// Whether the link died (a cut) or was closed after a drain; how.
    closed: Option<&'static str>,
    /// What B's handlers saw: the payload of every call they ran.
    ran: HashSet<Bytes>,
}

impl Link {
    fn answer_all(&mut self) {
        let started: Vec<_> = self.net.b.started.drain(..).collect();
        for start in started {
            let echo = start.payload.into_bytes();
            self.ran.insert(echo.clone().unwrap_or_default());
            self.net.b.e.answer(start.key, Ok(echo));
        }
    }

    fn close(&mut self, how: &'static str) {
        self.ab.clear();
        self.ba.clear();
        self.net.a.e.close(Error::LOST);
        self.net.b.e.close(Error::LOST);
        self.net.a.wake();
        self.net.b.wake();
        self.closed = Some(how);
    }

    fn apply(&mut self, s: &Step, n: usize, calls: &mut Vec<(crate::engine::Key, Bytes)>) {
        let now = self.net.now;
        match s {
            Step::Call => {
                let payload = Bytes::from(n.to_string());
                let mut o = self.net.outgoing(7, b"", 60);
                o.payload = Some(payload.clone());
                match self.net.a.e.open_call(now, o) {
                    Ok(key) => calls.push((key, payload)),
                    // Refused here: nothing was sent.
                    Err(e) => assert_eq!(e.execution(), Execution::NotExecuted, "{e}"),
                }
            }
            Step::Drain => self.net.b.e.drain(now, "b is leaving"),
            Step::SendAB if self.closed.is_none() => {
                let frames = self.net.a.transmit_some(now, 1);
                self.ab.extend(frames);
            }
            Step::SendBA if self.closed.is_none() => {
                let frames = self.net.b.transmit_some(now, 1);
                self.ba.extend(frames);
            }
            Step::DeliverAB => {
                let frames = std::mem::take(&mut self.ab);
                self.net.b.receive(now, frames);
            }
            Step::DeliverBA => {
                let frames = std::mem::take(&mut self.ba);
                self.net.a.receive(now, frames);
            }
            Step::Answer => self.answer_all(),
            Step::CloseIfDrained if self.closed.is_none() => {
                let w = Watch::new();
                if self.net.b.e.leaving().is_some() && self.net.b.e.poll_drained(&w.waker) {
                    // B's writer writes what it has, then its close frame; what A sends
                    // meanwhile finds the socket closed.
                    let mut frames = std::mem::take(&mut self.ba);
                    frames.extend(self.net.b.transmit(now));
                    self.net.a.receive(now, frames);
                    self.close("drained");
                }
            }
            Step::Cut if self.closed.is_none() => self.close("cut"),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_verdict_is_true_to_what_the_handler_side_saw(
        steps in prop::collection::vec(step(), 1..80)
    ) {
        let mut link = Link {
            net: Net::new(),
            ab: Vec::new(),
            ba: Vec::new(),
            closed: None,
            ran: HashSet::new(),
        };
        let mut calls = Vec::new();
        for (n, s) in steps.iter().enumerate() {
            link.apply(s, n, &mut calls);
            prop_assert!(link.net.a.violation.is_none() && link.net.b.violation.is_none());
        }
        // Wind down: everything on its way arrives, B answers all it started.
        if link.closed.is_none() {
            for _ in 0..3 {
                link.apply(&Step::DeliverAB, 0, &mut calls);
                link.apply(&Step::DeliverBA, 0, &mut calls);
                link.net.pump();
                link.answer_all();
            }
            link.net.pump();
        }
        for (key, payload) in calls {
            match answer_of(&mut link.net, key) {
                Poll::Ready(Ok(echo)) => {
                    prop_assert_eq!(echo.as_ref(), Some(&payload));
                    prop_assert!(link.ran.contains(&payload), "answered, but never ran");
                }
                Poll::Ready(Err(e)) => match e.execution() {
                    Execution::NotExecuted => {
                        prop_assert!(!link.ran.contains(&payload), "not executed, but it ran: {e}");
                    }
                    Execution::MayHaveExecuted => prop_assert_eq!(
                        link.closed,
                        Some("cut"),
                        "lost, but the link was not cut: {}",
                        e
                    ),
                },
                Poll::Pending => prop_assert!(false, "call {key:?} never ended"),
            }
        }
    }
}
