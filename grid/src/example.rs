//! An example service, compiled only for the documentation (and the tests), to show what
//! `#[grid::service]` generates for each method shape: see [`StorageClient`] for the
//! caller's methods and their return types, [`StorageServer`] for serving an
//! implementation, and [`StorageService`] for the handler ids.
//!
//! ```text
//! #[grid::service(id = 1)]
//! pub trait Storage {
//!     async fn disk_info(&self, disk: String) -> Result<DiskInfo, RemoteError>;
//!     #[grid(stream)]
//!     async fn walk(&self, dir: String, out: Sender<Entry>) -> Result<(), RemoteError>;
//!     #[grid(stream, max_window = "1MiB")]
//!     async fn put_many(&self, batch: String, input: Receiver<Entry>) -> Result<u64, RemoteError>;
//!     #[grid(stream)]
//!     async fn resize(&self, disk: String, input: Receiver<u64>, out: Sender<u64>) -> Result<(), RemoteError>;
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::{Receiver, RemoteError, Sender};

/// What [`Storage::disk_info`] answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Free bytes.
    pub free: u64,
    /// Total bytes.
    pub total: u64,
}

/// A directory entry, streamed by [`Storage::walk`] and uploaded by [`Storage::put_many`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Its path.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A storage node's service: one method of each shape. (Inside grid the macro is told
/// `crate = "crate"`; your code writes `#[grid::service(id = 1)]`.)
#[grid_macros::service(id = 1, crate = "crate")]
pub trait Storage {
    /// A single call: one request, one answer.
    async fn disk_info(&self, disk: String) -> Result<DiskInfo, RemoteError>;

    /// A handler stream: the handler sends items until it returns.
    #[grid(stream)]
    async fn walk(&self, dir: String, out: Sender<Entry>) -> Result<(), RemoteError>;

    /// An upload: the caller streams items, the handler answers once (here: how many bytes
    /// it stored).
    #[grid(stream, max_window = "1MiB")]
    async fn put_many(&self, batch: String, input: Receiver<Entry>) -> Result<u64, RemoteError>;

    /// A two-way stream: items both ways, each bounded by its window.
    #[grid(stream)]
    async fn resize(
        &self,
        disk: String,
        input: Receiver<u64>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError>;
}
