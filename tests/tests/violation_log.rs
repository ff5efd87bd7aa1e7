//! A protocol violation is logged once, as a warning that says what was wrong, and a
//! refused handshake as this node's own refusal. This binary holds one test, so that its
//! subscriber can be the global one from the start.

use std::sync::{Arc, Mutex};

use grid::codec::{Message, Op};
use grid_tests::raw::{self, close_frame, send};
use grid_tests::{dialer_first, shut_down, wait_state, within};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Every event's level and fields, as text.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Level, String)>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Events {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = String::new();
        event.record(&mut Text(&mut text));
        let level = *event.metadata().level();
        self.0.lock().expect("lock").push((level, text));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn a_protocol_violation_is_logged_once_with_its_reason_and_a_refusal_as_our_own() {
    let events = Events::default();
    tracing::subscriber::set_global_default(events.clone()).expect("the only subscriber");
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::handshaken(&url).await;
        // A handshake message on a live connection.
        send(&mut ws, &Message::new(Op::ConnectResponse)).await;
        let close = close_frame(&mut ws).await.expect("a close frame");
        let (d, _) = dialer_first();
        let conn = m.connection(d).expect("conn");
        wait_state(&conn, |s| s != grid::State::Connected).await;
        // A handshake this node refuses: logged as its refusal, with the reason it sent.
        let answer = raw::hello(&url, "stranger", raw::now_ms()).await;
        assert!(!answer.accepted);
        shut_down(&m).await;
        let refusals: Vec<(Level, String)> = events
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, text)| text.contains("refused an incoming connection"))
            .cloned()
            .collect();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        let (level, text) = &refusals[0];
        assert_eq!(*level, Level::WARN);
        assert!(
            text.contains(&format!("stranger refused: {}", answer.reason))
                && !text.contains("by the remote"),
            "{text}"
        );
        let logged: Vec<(Level, String)> = events
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, text)| text.contains(&close.reason))
            .cloned()
            .collect();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].0, Level::WARN, "{logged:?}");
    })
    .await
}
