//! A typed service with every kind of method, used by the typed tests and as the trybuild
//! pass case's model.

use grid::{Receiver, RemoteError, Sender};
use serde::{Deserialize, Serialize};

/// A request naming a disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskInfoReq {
    /// The disk.
    pub disk: String,
}

/// What `disk_info` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The disk.
    pub disk: String,
    /// Free bytes.
    pub free: u64,
    /// Who asked (from the call context).
    pub caller: String,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
}

/// Storage: one method of each kind.
#[grid::service(id = 1)]
pub trait Storage {
    /// Information about a disk.
    async fn disk_info(&self, req: DiskInfoReq) -> Result<DiskInfo, RemoteError>;

    /// Fails on purpose.
    async fn broken(&self, req: String) -> Result<u32, RemoteError>;

    /// Waits until cancelled.
    #[grid(deadline_ms = 60000)]
    async fn hang(&self, req: ()) -> Result<(), RemoteError>;

    /// Lists `n` entries.
    #[grid(stream, max_window = "1KiB")]
    async fn walk_dir(&self, n: u32, out: Sender<Entry>) -> Result<(), RemoteError>;

    /// Sums what the caller sends, answering the running total after each number.
    #[grid(stream, id = 77)]
    async fn running_sum(
        &self,
        start: u64,
        input: Receiver<u64>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError>;
}

/// Answers the running total of what the caller sends, starting at `start`, after each
/// number: a two-way stream's handler, shared by the tests' services.
pub async fn running_sum(
    start: u64,
    mut input: Receiver<u64>,
    mut out: Sender<u64>,
) -> Result<(), RemoteError> {
    let mut total = start;
    while let Some(n) = input.recv().await {
        total += n?;
        out.send(&total).await?;
    }
    Ok(())
}
