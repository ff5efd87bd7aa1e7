//! Where the peer list comes from when it changes at runtime: a [`PeerSource`] answers with
//! the whole list, again whenever it may have changed, and
//! [`Manager::follow_peers`](super::Manager::follow_peers) makes the manager's peers match
//! each answer. Three sources come with grid: a fixed list ([`StaticPeers`]), a file
//! re-read when it changes ([`FilePeers`]), and a DNS name re-resolved on an interval
//! ([`DnsPeers`]: a Kubernetes headless service, or any registry that answers in DNS).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::peers::Member;

/// A source of membership: each answer is the whole peer list, as it stands then.
///
/// ```
/// use grid::{Member, PeerSource};
///
/// /// A registry client that answers when the membership changes.
/// struct Registry(tokio::sync::mpsc::Receiver<Vec<Member>>);
///
/// impl PeerSource for Registry {
///     async fn next(&mut self) -> Result<Vec<Member>, String> {
///         match self.0.recv().await {
///             Some(members) => Ok(members),
///             None => std::future::pending().await, // no more changes
///         }
///     }
/// }
/// ```
pub trait PeerSource: Send + 'static {
    /// Waits for the next answer: the first at once, later ones when the list may have
    /// changed (answering the same list again is harmless). `Err` carries why the source
    /// failed this time; the manager logs it and keeps its list.
    ///
    /// # Cancel safety
    /// The manager drops this future only when it shuts down.
    fn next(&mut self) -> impl Future<Output = Result<Vec<Member>, String>> + Send;
}

/// A fixed list of peers, answered once: what [`ManagerBuilder::peer`](super::ManagerBuilder::peer)
/// gives, as a source.
#[derive(Clone, Debug, Default)]
pub struct StaticPeers {
    members: Option<Vec<Member>>,
}

impl StaticPeers {
    /// The list `members`.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Self {
            members: Some(members.into_iter().collect()),
        }
    }
}

impl PeerSource for StaticPeers {
    async fn next(&mut self) -> Result<Vec<Member>, String> {
        match self.members.take() {
            Some(members) => Ok(members),
            None => std::future::pending().await,
        }
    }
}

/// A file listing the peers, re-read when it changes (checked every second by default).
/// One peer per line, its name then its URL, separated by spaces; blank lines and lines
/// starting with `#` are skipped:
///
/// ```text
/// # the storage cluster
/// node-1 ws://10.0.0.1:9000/grid/v1
/// node-2 ws://10.0.0.2:9000/grid/v1
/// ```
///
/// A file that cannot be read, or has a malformed line, is an error (the manager keeps its
/// list); the next change is read again. Write the file whole and rename it into place, so
/// that it is never read half written.
#[derive(Clone, Debug)]
pub struct FilePeers {
    path: PathBuf,
    every: Duration,
    /// The contents last answered (`None`: nothing answered yet, or the last read failed).
    last: Option<Vec<u8>>,
    first: bool,
}

impl FilePeers {
    /// The peers listed in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            every: Duration::from_secs(1),
            last: None,
            first: true,
        }
    }

    /// How often the file is checked for a change (default 1 s).
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// Parses a peer list in the file's format.
    ///
    /// # Errors
    /// The first malformed line, with its number.
    pub fn parse(text: &str) -> Result<Vec<Member>, String> {
        let mut members = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some(url), None) => members.push(Member::new(name, url)),
                _ => {
                    return Err(format!(
                        "line {}: expected a peer's name and URL, got {line:?}",
                        i + 1
                    ))
                }
            }
        }
        Ok(members)
    }
}

impl PeerSource for FilePeers {
    async fn next(&mut self) -> Result<Vec<Member>, String> {
        loop {
            if !std::mem::take(&mut self.first) {
                tokio::time::sleep(self.every).await;
            }
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || read_bounded(&path))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            let bytes = match read {
                Ok(bytes) if self.last.as_ref() == Some(&bytes) => continue,
                Ok(bytes) => bytes,
                Err(e) => {
                    self.last = None;
                    return Err(format!("{}: {e}", self.path.display()));
                }
            };
            let parsed = std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(Self::parse)
                .map_err(|e| format!("{}: {e}", self.path.display()));
            // A malformed file is reported once, not at every check.
            self.last = Some(bytes);
            return parsed;
        }
    }
}

/// The largest peer file read (a list of thousands of peers is well below it).
const MAX_FILE: u64 = 4 << 20;

/// Reads a file of at most [`MAX_FILE`] bytes.
fn read_bounded(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!(
            "larger than {} MiB: is it the right file?",
            MAX_FILE >> 20
        )));
    }
    Ok(bytes)
}

/// Resolves a host name to socket addresses (the [`DnsPeers`] lookup; tests substitute
/// their own).
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host` resolves to, each with `port`.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The peers a DNS name resolves to, re-resolved on an interval (every 5 s by default):
/// every address `a` is a peer named `a` (`10.0.0.7:9000`, `[fd00::7]:9000`) at
/// `ws://a/grid/v1`. So each node must be named by the address its peers resolve for it:
/// `.local("10.0.0.7:9000")` (in Kubernetes, the pod IP and the port, with a headless
/// service whose name resolves to every ready pod).
///
/// A failed lookup is an error (the manager keeps its list); an answer with no address is
/// taken as it is, an empty cluster.
#[derive(Clone, Debug)]
pub struct DnsPeers<R = SystemResolver> {
    host: String,
    port: u16,
    every: Duration,
    scheme: &'static str,
    route: String,
    resolver: R,
    first: bool,
}

impl DnsPeers {
    /// The peers `host` resolves to, serving grid on `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            every: Duration::from_secs(5),
            scheme: "ws",
            route: "/grid/v1".into(),
            resolver: SystemResolver,
            first: true,
        }
    }
}

impl<R: Resolve> DnsPeers<R> {
    /// How often the name is resolved again (default 5 s).
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// Dials the peers over TLS (`wss://`; needs [`ManagerBuilder::tls_client`](super::ManagerBuilder::tls_client)).
    #[must_use]
    pub fn tls(mut self) -> Self {
        self.scheme = "wss";
        self
    }

    /// The route path peers serve grid on (default `/grid/v1`).
    #[must_use]
    pub fn route(mut self, path: impl Into<String>) -> Self {
        self.route = path.into();
        self
    }

    /// Resolves with `resolver` instead of the system's.
    pub fn resolver<S: Resolve>(self, resolver: S) -> DnsPeers<S> {
        DnsPeers {
            host: self.host,
            port: self.port,
            every: self.every,
            scheme: self.scheme,
            route: self.route,
            resolver,
            first: self.first,
        }
    }
}

impl<R: Resolve> PeerSource for DnsPeers<R> {
    async fn next(&mut self) -> Result<Vec<Member>, String> {
        if !std::mem::take(&mut self.first) {
            tokio::time::sleep(self.every).await;
        }
        let mut addrs = self
            .resolver
            .resolve(&self.host, self.port)
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?;
        addrs.sort();
        addrs.dedup();
        Ok(addrs
            .into_iter()
            .map(|a| {
                Member::new(
                    a.to_string(),
                    format!("{}://{a}{}", self.scheme, self.route),
                )
            })
            .collect())
    }
}
