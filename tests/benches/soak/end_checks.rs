//! The checks at the end of the run, once the faults and the load have stopped: each one
//! records what it finds wrong through [`World::fatal`].

use std::future::IntoFuture;
use std::time::Duration;

use grid::Error;
use grid_tests::alloc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use crate::load::{run_stream, Ended};
use crate::payload::{describe, payload};
use crate::world::World;
use crate::{ECHO, MIB, NODES, PING, SLACK};

/// Every connection comes back, and works both ways on every link.
pub(crate) async fn reconnect(w: &World) {
    for m in &w.managers {
        for c in m.connections() {
            if timeout(Duration::from_secs(15), c.wait_for_connect())
                .await
                .is_err()
            {
                w.fatal(format!(
                    "{} -> {} did not reconnect within 15 s of the faults stopping",
                    m.local(),
                    c.remote()
                ));
            }
        }
    }
    let mut final_checks = 0;
    for from in 0..NODES.len() {
        for to in (0..NODES.len()).filter(|to| *to != from) {
            final_checks += final_check(w, from, to).await;
        }
    }
    println!(
        "[{:6.1} s] reconnected; {final_checks} chunked calls and streams after the faults succeeded",
        w.elapsed()
    );
}

/// After the faults: a chunked echo and a stream from `from` to `to` must succeed. A call
/// may still meet a socket that was being replaced as the faults stopped (it then fails with
/// `Disconnected`) and is tried again, for up to 10 s. Returns how many succeeded.
async fn final_check(w: &World, from: usize, to: usize) -> usize {
    let conn = w.connection(from, to);
    let route = format!("{} -> {}", NODES[from], NODES[to]);
    let give_up = Instant::now() + Duration::from_secs(10);
    let body = payload(from as u64 * 10 + to as u64, 100 * 1024);
    let mut ok = 0;
    loop {
        let call = conn
            .request(ECHO, body.clone())
            .deadline(Duration::from_secs(5))
            .into_future();
        match timeout(Duration::from_secs(5) + SLACK, call).await {
            Ok(Ok(Some(answer))) if answer == body => break ok += 1,
            Ok(Err(Error::Disconnected { .. })) if Instant::now() < give_up => {
                sleep(Duration::from_millis(50)).await;
            }
            Ok(other) => {
                w.fatal(format!(
                    "after the faults, a 100 KiB echo {route} ended with {:?}",
                    other.map(|a| describe(a.as_deref()))
                ));
                break;
            }
            Err(_) => {
                w.fatal(format!("HANG: after the faults, a 100 KiB echo {route}"));
                break;
            }
        }
    }
    loop {
        let run = run_stream(&conn, 7, 50, Duration::from_secs(5), None, &w.tally);
        match timeout(Duration::from_secs(5) + SLACK, run).await {
            Ok(Ended::Complete) => break ok += 1,
            Ok(Ended::Failed(Error::Disconnected { .. }, _)) if Instant::now() < give_up => {
                sleep(Duration::from_millis(50)).await;
            }
            Ok(Ended::Failed(e, _)) => {
                w.fatal(format!("after the faults, a stream {route} failed: {e:?}"));
                break;
            }
            Ok(Ended::Wrong(why)) => {
                w.fatal(format!(
                    "WRONG ANSWER: after the faults, a stream {route}: {why}"
                ));
                break;
            }
            Ok(Ended::GivenUp) => unreachable!("not given up"),
            Err(_) => {
                w.fatal(format!("HANG: after the faults, a stream {route}"));
                break;
            }
        }
    }
    ok
}

/// Nothing left in flight: no call, handler or half-received payload on any connection.
pub(crate) async fn idle(w: &World) {
    for m in &w.managers {
        for c in m.connections() {
            let waited = timeout(Duration::from_secs(10), c.wait_idle()).await;
            let s = c.stats();
            if waited.is_err()
                || (s.in_flight_calls, s.in_flight_handlers, s.assembling_bytes) != (0, 0, 0)
            {
                w.fatal(format!(
                    "LEAK: {} -> {} not idle after the load: {s:?}",
                    m.local(),
                    c.remote()
                ));
            }
        }
    }
}

/// Every manager goes back to the tasks it ran before the load (`tasks_before`, a count per
/// node); returns the counts it settled at.
pub(crate) async fn tasks_settled(w: &World, tasks_before: &[usize]) -> Vec<usize> {
    let mut tasks_after = Vec::new();
    for (m, before) in w.managers.iter().zip(tasks_before) {
        let settled = settles(Duration::from_secs(5), || m.running_tasks() == *before).await;
        tasks_after.push(m.running_tasks());
        if !settled {
            w.fatal(format!(
                "LEAK: {} runs {} tasks after the load, {before} before it",
                m.local(),
                m.running_tasks()
            ));
        }
    }
    tasks_after
}

/// No connection counted a protocol error: the proxy truncates, it never corrupts.
pub(crate) fn no_protocol_errors(w: &World) {
    for m in &w.managers {
        for c in m.connections() {
            let errors = c.stats().protocol_errors;
            if errors != 0 {
                w.fatal(format!(
                    "{} -> {} counted {errors} protocol errors (last error {:?}); the proxy never \
                     corrupts bytes",
                    m.local(),
                    c.remote(),
                    c.last_error()
                ));
            }
        }
    }
}

/// A socket replaced or lost is closed (a replaced one after its close frame, within 1 s):
/// each proxy carries one link.
pub(crate) async fn one_link_each(w: &World) {
    proxies_carry(w, 1, Duration::from_secs(3), "when idle, not 1").await;
}

/// The live heap, once quiet connections let go of their buffers (checked every ping
/// interval), within 2x + 16 MiB of its level after warm-up and within 4 MiB of its level
/// before the load; returns it.
pub(crate) async fn heap_after(w: &World, heap_before: usize, heap_warm: usize) -> usize {
    sleep(PING * 4).await;
    let heap_after = alloc::live();
    let heap_bound = 2 * heap_warm + 16 * 1024 * 1024;
    if heap_after > heap_bound {
        w.fatal(format!(
            "LEAK: live heap {:.1} MiB after the run, over 2 x {:.1} MiB (after warm-up) + 16 MiB",
            heap_after as f64 / MIB,
            heap_warm as f64 / MIB
        ));
    }
    if heap_after > heap_before + 4 * 1024 * 1024 {
        w.fatal(format!(
            "LEAK: live heap {:.1} MiB after the run, over {:.1} MiB before it + 4 MiB",
            heap_after as f64 / MIB,
            heap_before as f64 / MIB
        ));
    }
    heap_after
}

/// Shutdown: no task left, no link left open through the proxies.
pub(crate) async fn shut_down(w: &World, serving: Vec<JoinHandle<grid::Result<()>>>) {
    for m in &w.managers {
        if timeout(Duration::from_secs(10), m.shutdown())
            .await
            .is_err()
        {
            w.fatal(format!("{} did not shut down within 10 s", m.local()));
        }
        if m.running_tasks() != 0 {
            w.fatal(format!(
                "LEAK: {} runs {} tasks after shutdown",
                m.local(),
                m.running_tasks()
            ));
        }
    }
    for s in serving {
        if timeout(Duration::from_secs(5), s).await.is_err() {
            w.fatal("a node's serve task did not end after its shutdown".into());
        }
    }
    proxies_carry(w, 0, Duration::from_secs(5), "after shutdown").await;
}

/// Each proxy comes to carry `open` links within `limit`; a proxy that does not is a leak,
/// found `when`.
async fn proxies_carry(w: &World, open: usize, limit: Duration, when: &str) {
    for l in &w.links {
        if !settles(limit, || l.proxy.open_links() == open).await {
            w.fatal(format!(
                "LEAK: link {} has {} links open through its proxy {when}",
                l.name,
                l.proxy.open_links()
            ));
        }
    }
}

/// Whether `settled` comes true within `limit` (checked every 20 ms).
async fn settles(limit: Duration, settled: impl Fn() -> bool) -> bool {
    timeout(limit, async {
        while !settled() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}
