//! Per-call state on both sides of a connection, free of sockets and tasks.
//!
//! A *mux* is one call (or, later, one stream) on a connection, named by the mux id the
//! caller chose. The caller keeps a [`CallTables`] entry with the channel its answer goes
//! to; the handler side keeps one with the handle that cancels the handler. Invariants:
//! - once a session's tables are closed (its socket died or the manager shut down), no entry
//!   can be added, and every entry that was there got its error (callers) or was aborted
//!   (handlers): nothing waits on a dead socket;
//! - an entry is removed exactly once, by whoever finishes the call first (answer,
//!   deadline, drop, disconnect); the loser finds nothing and does nothing.

mod assembly;
mod calls;
mod outbox;
mod outcome;
mod stream_ends;
mod streams;

pub(crate) use assembly::Assembler;
pub(crate) use calls::CallTables;
pub(crate) use outbox::{encode_with, Arena, BulkItem, Outbox, Outgoing, CHUNK};
pub(crate) use outcome::{payload_error, response_outcome};
pub(crate) use stream_ends::{CancelOnDrop, Credit, Unread};
pub use stream_ends::{Permit, StreamReceiver, StreamSender};
pub(crate) use streams::{Ack, CallerStream, HandlerStream, Inbound, StreamTables};
