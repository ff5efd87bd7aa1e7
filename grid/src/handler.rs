//! Handler registration: the table of single-call handlers and the context a handler sees.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::codec::subroute_hash;
pub use crate::codec::HandlerId;
use crate::error::{Error, RemoteError, Result};

/// What a call's handler knows about the call.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub(crate) caller: Arc<str>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) handler: HandlerId,
    pub(crate) mux_id: u64,
}

impl CallContext {
    /// The name of the node that made the call.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// When the caller stops waiting. Calls made from inside the handler inherit it.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it passed), `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The subroute the call was made on, if any.
    pub fn subroute(&self) -> Option<&str> {
        self.subroute.as_deref()
    }

    /// The handler id that was called.
    pub fn handler(&self) -> HandlerId {
        self.handler
    }

    /// The caller's id for this call on the connection (useful in logs).
    pub fn mux_id(&self) -> u64 {
        self.mux_id
    }
}

tokio::task_local! {
    /// The deadline of the call being handled by the current task, inherited by calls the
    /// handler makes.
    pub(crate) static CURRENT_DEADLINE: Option<Instant>;
}

/// The boxed future a single-call handler returns.
pub type SingleFuture = Pin<Box<dyn Future<Output = Result<Option<Bytes>, RemoteError>> + Send>>;

pub(crate) type SingleFn = Arc<dyn Fn(CallContext, Option<Bytes>) -> SingleFuture + Send + Sync>;

/// Wraps a user closure into the boxed form stored in the table.
pub(crate) fn single_fn<F, Fut, R>(f: F) -> SingleFn
where
    F: Fn(CallContext, Option<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
    R: Into<Option<Bytes>>,
{
    Arc::new(move |ctx, payload| {
        let fut = f(ctx, payload);
        Box::pin(async move { fut.await.map(Into::into) })
    })
}

#[derive(Clone)]
pub(crate) struct SingleEntry {
    pub(crate) call: SingleFn,
    pub(crate) subroute: Option<Arc<str>>,
}

/// All handlers registered on a manager, keyed by id and subroute hash.
#[derive(Default)]
pub(crate) struct Handlers {
    single: RwLock<HashMap<(HandlerId, Option<u64>), SingleEntry>>,
}

impl Handlers {
    pub(crate) fn add_single(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        call: SingleFn,
    ) -> Result<()> {
        if id.get() == 0 {
            return Err(Error::Config("handler id 0 is reserved".into()));
        }
        let key = (id, subroute.map(subroute_hash));
        let mut table = self.single.write().unwrap_or_else(|e| e.into_inner());
        if table.contains_key(&key) {
            return Err(Error::HandlerAlreadyExists {
                handler: id,
                subroute: subroute.map(str::to_owned),
            });
        }
        table.insert(
            key,
            SingleEntry {
                call,
                subroute: subroute.map(Arc::from),
            },
        );
        Ok(())
    }

    pub(crate) fn single(&self, id: HandlerId, subroute: Option<u64>) -> Option<SingleEntry> {
        let table = self.single.read().unwrap_or_else(|e| e.into_inner());
        table.get(&(id, subroute)).cloned()
    }
}
