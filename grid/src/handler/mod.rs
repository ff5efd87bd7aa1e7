//! Handler registration: the tables of single-call and stream handlers, and what a handler
//! sees of its call.

mod context;
mod intercept;
mod stats;
mod stream;

pub use context::CallContext;
pub(crate) use context::{Caller, FireOnDrop};
pub use intercept::{Interceptor, Outcome};
pub(crate) use intercept::{Interceptors, Watch};
pub(crate) use stats::{HandlerCounters, Names, Serving};
pub use stats::{HandlerStats, LATENCY_BOUNDS};
pub use stream::{StreamCall, StreamFuture, StreamHandler};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::codec::subroute_hash;
pub use crate::codec::HandlerId;
use crate::describe::{CallShape, HandlerInfo};
use crate::error::{Error, RemoteError, Result};

tokio::task_local! {
    /// The call being handled by the current task: its deadline is inherited by calls the
    /// handler makes, and [`CallContext::current`] reads it.
    pub(crate) static CURRENT_CALL: CallContext;
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

/// A handler to register: a single-call handler or a stream handler.
pub(crate) enum Handler {
    Single(SingleFn),
    Stream(StreamHandler),
}

#[derive(Clone)]
pub(crate) struct SingleEntry {
    pub(crate) call: SingleFn,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) counters: Arc<HandlerCounters>,
}

#[derive(Clone)]
pub(crate) struct StreamEntry {
    pub(crate) handler: StreamHandler,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) counters: Arc<HandlerCounters>,
}

#[derive(Clone)]
enum Entry {
    Single(SingleEntry),
    Stream(StreamEntry),
}

/// All handlers registered on a manager, keyed by id and subroute hash. Single and stream
/// handlers share one id space.
#[derive(Default)]
pub(crate) struct Handlers {
    table: RwLock<HashMap<(HandlerId, Option<u64>), Entry>>,
}

impl Handlers {
    fn add(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        entry: impl FnOnce(Option<Arc<str>>, Arc<HandlerCounters>) -> Entry,
    ) -> Result<()> {
        check_id(id, false)?;
        let key = (id, subroute.map(subroute_hash));
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.contains_key(&key) {
            return Err(Error::HandlerAlreadyExists {
                handler: id,
                subroute: subroute.map(str::to_owned),
            });
        }
        let subroute: Option<Arc<str>> = subroute.map(Arc::from);
        let counters = Arc::new(HandlerCounters::new(id, subroute.clone(), Names::default()));
        table.insert(key, entry(subroute, counters));
        Ok(())
    }

    /// Adds several handlers under one subroute: all of them, or none if any id is taken.
    /// Only grid's own services (`builtin`) may use the ids reserved for them.
    pub(crate) fn add_all(
        &self,
        subroute: Option<&str>,
        items: Vec<(HandlerId, Handler)>,
        names: impl Fn(HandlerId) -> Names,
        builtin: bool,
    ) -> Result<()> {
        let hash = subroute.map(subroute_hash);
        let name: Option<Arc<str>> = subroute.map(Arc::from);
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        for (id, _) in &items {
            check_id(*id, builtin)?;
            if table.contains_key(&(*id, hash)) || !seen.insert(*id) {
                return Err(Error::HandlerAlreadyExists {
                    handler: *id,
                    subroute: subroute.map(str::to_owned),
                });
            }
        }
        for (id, kind) in items {
            let subroute = name.clone();
            let counters = Arc::new(HandlerCounters::new(id, subroute.clone(), names(id)));
            let entry = match kind {
                Handler::Single(call) => Entry::Single(SingleEntry {
                    call,
                    subroute,
                    counters,
                }),
                Handler::Stream(handler) => Entry::Stream(StreamEntry {
                    handler,
                    subroute,
                    counters,
                }),
            };
            table.insert((id, hash), entry);
        }
        Ok(())
    }

    pub(crate) fn add_single(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        call: SingleFn,
    ) -> Result<()> {
        self.add(id, subroute, |subroute, counters| {
            Entry::Single(SingleEntry {
                call,
                subroute,
                counters,
            })
        })
    }

    pub(crate) fn add_stream(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        handler: StreamHandler,
    ) -> Result<()> {
        self.add(id, subroute, |subroute, counters| {
            Entry::Stream(StreamEntry {
                handler,
                subroute,
                counters,
            })
        })
    }

    pub(crate) fn single(&self, id: HandlerId, subroute: Option<u64>) -> Option<SingleEntry> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        match table.get(&(id, subroute)) {
            Some(Entry::Single(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Every handler's counters, ordered by handler id and subroute.
    pub(crate) fn stats(&self) -> Vec<HandlerStats> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<HandlerStats> = table
            .values()
            .map(|e| match e {
                Entry::Single(s) => s.counters.snapshot(),
                Entry::Stream(s) => s.counters.snapshot(),
            })
            .collect();
        all.sort_by(|a, b| (a.handler, &a.subroute).cmp(&(b.handler, &b.subroute)));
        all
    }

    /// Every handler, described, ordered by handler id and subroute.
    pub(crate) fn describe(&self) -> Vec<HandlerInfo> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<HandlerInfo> = table
            .values()
            .map(|e| {
                let (counters, subroute, untyped) = match e {
                    Entry::Single(s) => (&s.counters, &s.subroute, CallShape::Single),
                    Entry::Stream(s) => (&s.counters, &s.subroute, CallShape::Stream),
                };
                let names = counters.names();
                let info = names.method;
                let owned = |t: Option<&str>| t.filter(|t| !t.is_empty()).map(str::to_owned);
                HandlerInfo {
                    id: counters.handler().get(),
                    subroute: subroute.as_deref().map(str::to_owned),
                    service: names.service.map(str::to_owned),
                    method: info.map(|m| m.name.to_owned()),
                    shape: info.map_or(untyped, |m| m.shape),
                    request: owned(info.map(|m| m.request)),
                    input: owned(info.and_then(|m| m.input)),
                    output: owned(info.and_then(|m| m.output)),
                    answer: owned(info.and_then(|m| m.answer)),
                }
            })
            .collect();
        all.sort_by(|a, b| (a.id, &a.subroute).cmp(&(b.id, &b.subroute)));
        all
    }

    pub(crate) fn stream(&self, id: HandlerId, subroute: Option<u64>) -> Option<StreamEntry> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        match table.get(&(id, subroute)) {
            Some(Entry::Stream(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Refuses id 0 (never a handler) and, unless `builtin`, the ids of grid's own services
/// ([`crate::describe::BUILTIN_SERVICE_ID`]).
fn check_id(id: HandlerId, builtin: bool) -> Result<()> {
    if id.get() == 0 {
        return Err(Error::Config("handler id 0 is reserved".into()));
    }
    if !builtin && id.get() >> 16 == u32::from(crate::describe::BUILTIN_SERVICE_ID) {
        return Err(Error::Config(format!(
            "handler id {id} is reserved: service id {} is grid's built-in service's; pick another service id",
            crate::describe::BUILTIN_SERVICE_ID
        )));
    }
    Ok(())
}
