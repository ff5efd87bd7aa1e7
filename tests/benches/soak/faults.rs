//! The faults the proxies inject on the links while the load runs.

use std::sync::Arc;

use grid_tests::proxy::Fault;
use tokio::time::sleep;

use crate::payload::Rng;
use crate::world::{stopped, World};

/// Injects a random fault on one link every 1-3 s until the run stops, then leaves the link
/// healthy.
pub(crate) async fn faults(w: Arc<World>, link: usize, mut r: Rng) {
    let l = &w.links[link];
    loop {
        tokio::select! {
            () = sleep(r.millis(1000, 3000)) => {}
            () = stopped(w.stop.subscribe()) => break,
        }
        let fault = match r.below(5) {
            0 => Some(Fault::Cut),
            1 => Some(Fault::Stall(r.millis(200, 2000))),
            2 => Some(Fault::Reset),
            3 => Some(Fault::Throttle {
                bytes_per_sec: (64 * 1024) << r.below(6),
                time: r.millis(2000, 5000),
            }),
            _ => None,
        };
        let name = match fault {
            Some(Fault::Cut) => "cut",
            Some(Fault::Reset) => "reset",
            Some(Fault::Stall(_)) => "stall",
            Some(Fault::Throttle { .. }) => "throttle",
            None => "none",
        };
        w.tally.faults.add(name);
        let Some(fault) = fault else { continue };
        let started = w.elapsed();
        w.log_fault(format!("[{started:6.1} s] {}: {fault}", l.name));
        w.active.lock().expect("active")[link] = Some(format!("{fault}, from {started:.1} s"));
        tokio::select! {
            () = l.proxy.inject(fault) => {}
            () = stopped(w.stop.subscribe()) => break,
        }
        w.active.lock().expect("active")[link] = None;
    }
    l.proxy.thaw();
    l.proxy.throttle(None);
}
