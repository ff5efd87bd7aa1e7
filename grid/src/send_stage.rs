//! A stream handler's messages, encoded in its own task and queued in batches.
//!
//! Sending one message at a time takes the engine's lock once per message, and on a busy
//! stream of small messages that lock, and the bookkeeping around it, is most of what a
//! message costs its sender. So while a stream handler's task is being polled, its output
//! sender encodes small messages into this thread's stage instead ([`Staged`], under a
//! [`Lease`] of the stream's credit and send-buffer room), and the stage is queued in one
//! step (`StreamView::send_staged`, `engine/stream_send.rs`):
//! - when it holds a good part of a frame, or has used its lease up;
//! - before anything else that sender does (a large message, `finish`, `credit`, ...);
//! - and at the latest when the handler's poll returns ([`Staging`]): a message never waits
//!   in the stage past the moment its task yields. (Until then the writer, woken by the
//!   task, could not run on this thread anyway.)
//!
//! Invariants:
//! - The stage holds messages only while a stream handler's task is polled on this thread,
//!   and only that handler's own output's: outside such a poll it is empty.
//! - Staged messages are numbered and charged exactly as if each had been sent on its own
//!   at the same moment: only the stream's one sender numbers its messages and spends its
//!   credit, so the lease it took stays true until the stage is queued.
//! - Any other sender, and the handler's sender used from another task, sends one message
//!   at a time as before.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::engine::{InPlace, Key, Lease, Side, Staged, WriterVisit, ENCODE_EARLY};
use crate::error::Error;
use crate::session::Session;

/// This thread's stage.
#[derive(Default)]
struct Stage {
    /// The stream handler being polled on this thread (its session's address and its key),
    /// the one whose output may stage.
    polling: Option<(usize, Key)>,
    /// The lease the staged messages are under; taken by the first one.
    lease: Option<Lease>,
    staged: Staged,
}

thread_local! {
    static STAGE: RefCell<Stage> = RefCell::new(Stage::default());
}

fn id(session: &Arc<Session>, key: Key) -> (usize, Key) {
    (Arc::as_ptr(session) as usize, key)
}

/// After a message was staged: `Some` when the stage was queued and a frame's worth now
/// waits for the writer, queued after that visit of the writer's (the sender then waits
/// for its next one, `Engine::poll_writer_back`).
pub(crate) type FrameWaiting = Option<WriterVisit>;

/// Stages `payload` if this sender may: it is the output of the stream handler being
/// polled on this thread, the payload is small, and the stream has credit and room.
/// Returns None if the message was not staged (send it on its own).
pub(crate) fn stage(session: &Arc<Session>, key: Key, payload: &[u8]) -> Option<FrameWaiting> {
    STAGE
        .try_with(|cell| {
            let mut stage = cell.try_borrow_mut().ok()?;
            if stage.polling != Some(id(session, key)) {
                return None;
            }
            if payload.len() > ENCODE_EARLY {
                // Sent whole, in chunks: after what is staged.
                queue(session, key, &mut stage);
                return None;
            }
            let Stage { lease, staged, .. } = &mut *stage;
            if !staged.push(leased(lease, session, key)?, payload) {
                // The lease is used up: queue what it covered; this message goes on its own.
                let _ = queue(session, key, &mut stage);
                return None;
            }
            Some(queue_if_full(session, key, &mut stage))
        })
        .ok()
        .flatten()
}

/// The stage's lease, taken first if there is none; `None` without credit or room.
#[inline]
fn leased<'a>(lease: &'a mut Option<Lease>, session: &Session, key: Key) -> Option<&'a mut Lease> {
    if lease.is_none() {
        *lease = session.with(|e| e.stream(Side::Handler, key).lease());
    }
    lease.as_mut()
}

/// After a message was staged: once the stage is full it is queued and the next lease
/// taken, in one step. Whether a frame's worth now waits for the writer.
#[inline]
fn queue_if_full(session: &Session, key: Key, stage: &mut Stage) -> FrameWaiting {
    let Stage { lease, staged, .. } = stage;
    if !lease.as_ref().is_some_and(|l| staged.full(l)) {
        return None;
    }
    lease.take();
    session.with(|e| {
        let mut stream = e.stream(Side::Handler, key);
        stream.send_staged(staged);
        *lease = stream.lease();
        e.take_frame_waiting()
    })
}

/// What [`stage_with`] did with a message.
pub(crate) enum StagedWith<F> {
    /// Staged; whether the stage was queued and filled a frame's worth for the writer.
    Staged(FrameWaiting),
    /// Encoded, but to be sent on its own (empty, or too large to stage): its payload.
    Whole(Bytes),
    /// Not encoded (this sender does not stage now, or has no lease left): the encoder,
    /// to encode into a buffer of its own.
    NotHere(F),
    /// The encoding failed; nothing was staged.
    Failed(Error),
}

/// [`stage`] for a message whose payload `encode` writes straight into the stage.
pub(crate) fn stage_with<F>(session: &Arc<Session>, key: Key, encode: F) -> StagedWith<F>
where
    F: FnOnce(&mut Vec<u8>) -> Result<(), Error>,
{
    let mut encode = Some(encode);
    let staged = STAGE.try_with(|cell| {
        let mut stage = cell.try_borrow_mut().ok()?;
        if stage.polling != Some(id(session, key)) {
            return None;
        }
        let Stage { lease, staged, .. } = &mut *stage;
        match staged.push_with(leased(lease, session, key)?, encode.take()?) {
            InPlace::Staged => {}
            InPlace::Failed(e) => return Some(StagedWith::Failed(e)),
            InPlace::Whole(payload) => {
                // Sent on its own, after what is staged.
                queue(session, key, &mut stage);
                return Some(StagedWith::Whole(payload));
            }
            InPlace::NoRoom(f) => {
                // The lease is used up: queue what it covered; this message goes on its own.
                encode = Some(f);
                queue(session, key, &mut stage);
                return None;
            }
        }
        Some(StagedWith::Staged(queue_if_full(session, key, &mut stage)))
    });
    match (staged.ok().flatten(), encode) {
        (Some(done), _) => done,
        (None, Some(encode)) => StagedWith::NotHere(encode),
        // Only `push_with` takes the encoder, and it gives it back unless it reports.
        (None, None) => StagedWith::Failed(Error::Codec("a message was lost while staging".into())),
    }
}

/// Whether this sender is the output of the stream handler being polled on this thread
/// (its small messages are staged).
pub(crate) fn stages(session: &Arc<Session>, side: Side, key: Key) -> bool {
    side == Side::Handler
        && STAGE
            .try_with(|cell| {
                cell.try_borrow()
                    .is_ok_and(|s| s.polling == Some(id(session, key)))
            })
            .unwrap_or(false)
}

/// Queues the stage if it holds this sender's messages: before anything else the sender
/// does, so that nothing overtakes them.
pub(crate) fn flush(session: &Arc<Session>, side: Side, key: Key) {
    if side != Side::Handler {
        return;
    }
    let _ = STAGE.try_with(|cell| {
        if let Ok(mut stage) = cell.try_borrow_mut() {
            if stage.polling == Some(id(session, key)) {
                queue(session, key, &mut stage);
            }
        }
    });
}

/// Ends the lease, if one was taken, queueing what is staged under it (one step on the
/// engine); whether a frame's worth now waits for the writer.
fn queue(session: &Session, key: Key, stage: &mut Stage) -> FrameWaiting {
    stage.lease.take()?;
    let staged = &mut stage.staged;
    session.with(|e| {
        e.stream(Side::Handler, key).send_staged(staged);
        e.take_frame_waiting()
    })
}

/// A stream handler's future, polled with its output allowed to stage, and its stage
/// queued whenever a poll returns.
pub(crate) struct Staging<F> {
    inner: F,
    session: Arc<Session>,
    key: Key,
}

impl<F> Staging<F> {
    pub(crate) fn new(inner: F, session: Arc<Session>, key: Key) -> Self {
        Self {
            inner,
            session,
            key,
        }
    }
}

/// Ends a poll that could stage: the stage is queued and the thread's stage freed, also if
/// the poll unwinds.
struct PollEnd<'a> {
    session: &'a Arc<Session>,
    key: Key,
}

impl Drop for PollEnd<'_> {
    fn drop(&mut self) {
        let _ = STAGE.try_with(|cell| {
            if let Ok(mut stage) = cell.try_borrow_mut() {
                queue(self.session, self.key, &mut stage);
                stage.polling = None;
            }
        });
    }
}

impl<F: Future + Unpin> Future for Staging<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // The thread's stage is this poll's, unless another handler's poll holds it (one
        // polled within another, which a task never is): this one then sends one message
        // at a time.
        let mine = STAGE
            .try_with(|cell| {
                let mut stage = cell.try_borrow_mut().ok()?;
                stage.polling.is_none().then(|| {
                    stage.polling = Some(id(&this.session, this.key));
                })
            })
            .ok()
            .flatten()
            .is_some();
        let _end = mine.then_some(PollEnd {
            session: &this.session,
            key: this.key,
        });
        Pin::new(&mut this.inner).poll(cx)
    }
}
