//! A span per call on both sides, with its handler, peer and mux id. This binary holds
//! one test, so that its subscriber can be the global one from the start.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use grid::HandlerId;
use grid_tests::{within, Cluster};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const ECHO: HandlerId = HandlerId::new(1);

/// Records every span's name and fields.
type Recorded = Vec<(String, Vec<(String, String)>, &'static Metadata<'static>)>;

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Recorded>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().expect("lock");
        spans.push((attrs.metadata().name().to_owned(), fields, attrs.metadata()));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.0.lock().expect("lock");
        if let Some((_, fields, _)) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, id: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, _: &Id) {
        ENTERED.with(|e| e.borrow_mut().pop());
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let top = ENTERED.with(|e| e.borrow().last().copied());
        let spans = self.0.lock().expect("lock");
        match top.and_then(|id| spans.get(id as usize - 1).map(|s| (id, s.2))) {
            Some((id, meta)) => tracing_core::span::Current::new(Id::from_u64(id), meta),
            None => tracing_core::span::Current::none(),
        }
    }
}

impl Spans {
    fn find(&self, name: &str) -> Vec<Vec<(String, String)>> {
        let spans = self.0.lock().expect("lock");
        spans
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, f, _)| f.clone())
            .collect()
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn every_call_has_a_span_on_both_sides_with_handler_peer_and_mux() {
    // The only test of this binary: the subscriber is global, set before any span exists.
    let spans = Spans::default();
    tracing::subscriber::set_global_default(spans.clone()).expect("first subscriber");
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        conn.request(ECHO, Bytes::from_static(b"traced"))
            .await
            .expect("call");
        let calls = spans.find("grid.call");
        let call = calls.last().expect("a grid.call span");
        assert_eq!(field(call, "peer"), Some("beta"));
        assert_eq!(field(call, "handler"), Some("#1"));
        let mux = field(call, "mux").expect("mux recorded").to_owned();
        let handled = spans.find("grid.handle");
        let handle = handled
            .iter()
            .find(|f| field(f, "mux") == Some(&mux))
            .expect("a grid.handle span with the same mux");
        assert_eq!(field(handle, "peer"), Some("alpha"));
        assert_eq!(field(handle, "handler"), Some("#1"));
        c.finish().await;
    })
    .await
}
