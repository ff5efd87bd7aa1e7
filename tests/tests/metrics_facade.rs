//! grid's figures published through the `metrics` facade (feature `metrics`), into a
//! recorder of the application's: here one that keeps every value it is given.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use grid::HandlerId;
use grid_tests::{within, Cluster};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

const ECHO: HandlerId = HandlerId::new(1);

type Values = Arc<Mutex<BTreeMap<String, f64>>>;

/// Keeps the last value of every series, as `name{k=v,...}` (labels in the given order),
/// and says when one changed.
#[derive(Clone, Default)]
struct Capture(Values, Arc<tokio::sync::Notify>);

struct Series(Values, String, Arc<tokio::sync::Notify>);

impl Series {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        f(self
            .0
            .lock()
            .expect("lock")
            .entry(self.1.clone())
            .or_default());
        self.2.notify_waiters();
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl HistogramFn for Series {
    fn record(&self, _value: f64) {}
}

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::new(Series(self.0.clone(), name, self.1.clone()))
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.0.lock().expect("lock").get(series).copied()
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

async fn served(publish: Option<Duration>) -> Cluster {
    let c = Cluster::start(&["alpha", "beta"], move |b| match publish {
        Some(every) => b.publish_metrics_every(every),
        None => b,
    })
    .await;
    c.managers[1]
        .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
        .expect("register");
    c.connected().await;
    let beta = c.managers[0].connection("beta").expect("conn");
    for _ in 0..3 {
        beta.request(ECHO, Bytes::from_static(b"x"))
            .await
            .expect("call");
    }
    c
}

#[tokio::test]
async fn publish_sends_every_figure_to_the_installed_recorder() {
    within(async {
        let c = served(None).await;
        let capture = Capture::default();
        let stats = c.managers[1].stats();
        metrics::with_local_recorder(&capture, || stats.publish());
        let handler = "local=beta,handler=0x00000001";
        assert_eq!(
            capture.get(&format!("grid_handler_calls_total{{{handler}}}")),
            Some(3.0)
        );
        assert_eq!(
            capture.get(&format!("grid_handler_duration_seconds_count{{{handler}}}")),
            Some(3.0)
        );
        assert_eq!(
            capture.get(&format!(
                "grid_handler_duration_seconds_bucket{{{handler},le=+Inf}}"
            )),
            Some(3.0)
        );
        assert_eq!(
            capture.get("grid_connected{local=beta,peer=alpha}"),
            Some(1.0)
        );
        let received = capture
            .get("grid_messages_in_total{local=beta,peer=alpha}")
            .expect("messages in");
        assert!(received >= 3.0, "{received}");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_manager_can_publish_on_its_own_until_shutdown() {
    within(async {
        let capture = Capture::default();
        metrics::set_global_recorder(capture.clone()).expect("the only global recorder");
        let c = served(Some(Duration::from_millis(10))).await;
        let series = "grid_handler_calls_total{local=beta,handler=0x00000001}";
        loop {
            let changed = capture.1.notified();
            if capture.get(series) == Some(3.0) {
                break;
            }
            changed.await;
        }
        // Shutdown stops the publishing task (checked by `finish`: no task left).
        c.finish().await;
    })
    .await
}
