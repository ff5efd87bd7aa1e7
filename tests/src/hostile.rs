//! A node under attack: a raw peer misbehaves on its connection while a friendly grid peer
//! keeps calling the node, and the test bounds what the attack costs the node.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use grid::{Connection, HandlerId, Manager, ManagerBuilder};

use crate::raw::{handshake_as, RawSocket};
use crate::{alloc, builder, connected, listener, shut_down, within};

/// The friend's calls to the node answer with their payload.
pub const ECHO: HandlerId = HandlerId::new(0x7e);

/// The node, its friend, and where the attacker connects.
pub struct Attacked {
    /// The node under attack.
    pub node: Manager,
    /// A well-behaved peer of the node.
    pub friend: Manager,
    /// The node's URL.
    pub url: String,
    /// The name the attacker presents (a peer the node accepts connections from).
    pub attacker: String,
}

impl Attacked {
    /// Starts the node (customised by `configure`) and its friend, connected.
    pub async fn start(configure: impl Fn(ManagerBuilder) -> ManagerBuilder) -> Attacked {
        let attacker = (0..)
            .map(|i| format!("attacker-{i}"))
            .find(|name| !grid::dials("node", name))
            .unwrap_or_default();
        let (nl, url) = listener().await;
        let (fl, furl) = listener().await;
        let node = configure(builder("node"))
            .peer("friend", furl)
            .peer(&attacker, "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build node");
        let friend = builder("friend")
            .peer("node", url.clone())
            .build()
            .expect("build friend");
        for m in [&node, &friend] {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        tokio::spawn(node.clone().serve(nl));
        tokio::spawn(friend.clone().serve(fl));
        within(friend.connection("node").expect("conn").wait_for_connect())
            .await
            .expect("connected");
        Attacked {
            node,
            friend,
            url,
            attacker,
        }
    }

    /// A raw peer that passed the handshake as the attacker, announcing the default limits.
    pub async fn attacker(&self) -> RawSocket {
        handshake_as(&self.url, &self.attacker, None, None).await
    }

    /// The node's connection to the attacker.
    pub fn attacker_conn(&self) -> Connection {
        self.node.connection(&self.attacker).expect("conn")
    }

    /// Starts the friend calling the node, one call after another, until [`Calls::stop`].
    pub fn keep_calling(&self) -> Calls {
        let conn = self.friend.connection("node").expect("conn");
        let calls = Calls {
            ok: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
        };
        let (ok, failed, stop) = (calls.ok.clone(), calls.failed.clone(), calls.stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let p = Bytes::from(i.to_be_bytes().to_vec());
                match conn.request(ECHO, p.clone()).await {
                    Ok(Some(answer)) if answer == p => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        });
        calls
    }

    /// Leak checks and shutdown of both managers.
    pub async fn finish(self) {
        connected(&self.friend).await;
        crate::assert_idle(&self.friend).await;
        shut_down(&self.friend).await;
        shut_down(&self.node).await;
    }
}

/// A friend's calls running beside an attack.
pub struct Calls {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Calls {
    /// Waits until at least `n` more calls succeeded: the node still serves its friend.
    pub async fn served(&self, n: usize) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        within(async {
            while self.ok.load(Ordering::SeqCst) < target {
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    /// Stops the calls and asserts that none failed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        assert_eq!(failed, 0, "the friend's calls failed during the attack");
    }
}

/// What an attack may cost: the node's live heap growth and running tasks stay within the
/// bounds given, measured from a baseline.
pub struct Budget {
    heap: usize,
    tasks: usize,
}

impl Budget {
    /// Takes the baseline now (build everything the attacker sends before this).
    pub fn measure(node: &Manager) -> Budget {
        alloc::reset_peak();
        Budget {
            heap: alloc::live(),
            tasks: node.running_tasks(),
        }
    }

    /// Waits until the node runs at most `tasks` more tasks than at the baseline (tasks
    /// that were stopped end as soon as the runtime drops them).
    pub async fn tasks_settle(&self, node: &Manager, tasks: usize) {
        within(async {
            while node.running_tasks() > self.tasks + tasks {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    /// Asserts the peak live heap since the baseline grew by at most `heap` bytes, and that
    /// the node runs at most `tasks` more tasks now.
    pub fn check(&self, node: &Manager, heap: usize, tasks: usize, what: &str) {
        let grown = alloc::peak().saturating_sub(self.heap);
        eprintln!(
            "{what}: heap grew by up to {:.1} MiB, {} tasks running",
            grown as f64 / 1048576.0,
            node.running_tasks()
        );
        assert!(
            grown <= heap,
            "{what}: the heap grew by up to {:.1} MiB (bound {:.1} MiB)",
            grown as f64 / 1048576.0,
            heap as f64 / 1048576.0
        );
        let running = node.running_tasks();
        assert!(
            running <= self.tasks + tasks,
            "{what}: {running} tasks running (baseline {})",
            self.tasks
        );
    }
}
