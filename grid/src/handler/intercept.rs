//! Interceptors: code a node runs around every call and stream it serves, to refuse some
//! (per-peer authorization, rate limits) and to learn how each ended (audit logs, metrics).
//!
//! With none installed nothing of this runs: serving a call checks one empty list.

use std::sync::Arc;
use std::time::Duration;

use super::CallContext;
use crate::codec::HandlerId;
use crate::error::RemoteError;

/// Runs around every call and stream this node serves (install with
/// `ManagerBuilder::interceptor`, or `service_interceptor` for one service's methods).
///
/// `before` runs when the call arrives, before its handler starts, and may refuse it;
/// `after` runs once the handler ended, however it ended, with how long it ran. Both run
/// on the connection's tasks: keep them short and do not block.
///
/// ```
/// use std::time::Duration;
/// use grid::{CallContext, Interceptor, Outcome, RemoteError};
///
/// /// Only the nodes named `admin-*` may call this node.
/// struct AdminsOnly;
///
/// impl Interceptor for AdminsOnly {
///     fn before(&self, call: &CallContext) -> Result<(), RemoteError> {
///         if call.caller().starts_with("admin-") {
///             Ok(())
///         } else {
///             Err(RemoteError::new(format!("{} may not call this node", call.caller())))
///         }
///     }
///
///     fn after(&self, call: &CallContext, outcome: &Outcome, took: Duration) {
///         tracing::info!(caller = call.caller(), handler = %call.handler(), ?outcome, ?took, "served");
///     }
/// }
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Before the handler starts. `Err` refuses the call or stream: the caller gets the
    /// error (`Error::Remote`) and the handler never runs (and `after` is not called).
    fn before(&self, call: &CallContext) -> Result<(), RemoteError> {
        let _ = call;
        Ok(())
    }

    /// After the handler ended: how, and how long after it started.
    fn after(&self, call: &CallContext, outcome: &Outcome, took: Duration) {
        let _ = (call, outcome, took);
    }
}

/// How a served call or stream ended, as an [`Interceptor`] learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok` (its answer, or its stream's end, went to the caller).
    Ok,
    /// The handler returned this error, or panicked, or its answer was too large: the
    /// caller got the error.
    Failed(RemoteError),
    /// The call ended before its handler did: the caller cancelled it, its deadline passed,
    /// or the connection was lost. The handler was stopped.
    Cancelled,
}

/// The interceptors of a manager, each for every handler or for one service's.
#[derive(Clone, Default)]
pub(crate) struct Interceptors(Vec<(Option<u16>, Arc<dyn Interceptor>)>);

impl Interceptors {
    /// Adds one, for the service `service` only, or for every handler.
    pub(crate) fn add(&mut self, service: Option<u16>, i: Arc<dyn Interceptor>) {
        self.0.push((service, i));
    }

    /// Runs the `before`s that apply to the call; the first refusal wins. `None` when no
    /// interceptor applies (nothing to call afterwards). Without interceptors this is one
    /// inlined check.
    #[inline]
    pub(crate) fn before(&self, call: &CallContext) -> Result<Option<Box<Watch>>, RemoteError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        self.run_before(call)
    }

    #[cold]
    fn run_before(&self, call: &CallContext) -> Result<Option<Box<Watch>>, RemoteError> {
        let applying: Vec<Arc<dyn Interceptor>> = self
            .0
            .iter()
            .filter(|(service, _)| service.is_none_or(|s| applies(s, call.handler())))
            .map(|(_, i)| i.clone())
            .collect();
        if applying.is_empty() {
            return Ok(None);
        }
        for i in &applying {
            i.before(call)?;
        }
        Ok(Some(Box::new(Watch {
            applying: applying.into(),
            call: call.clone(),
        })))
    }
}

fn applies(service: u16, handler: HandlerId) -> bool {
    (handler.get() >> 16) as u16 == service
}

/// A served call that interceptors watch: the call's `Serving` guard reports its end to
/// them ([`Watch::report`]), however it ends.
pub(crate) struct Watch {
    applying: Arc<[Arc<dyn Interceptor>]>,
    call: CallContext,
}

impl Watch {
    /// Tells the interceptors how the call ended and how long it took.
    pub(crate) fn report(&self, outcome: &Outcome, took: Duration) {
        for i in self.applying.iter() {
            i.after(&self.call, outcome, took);
        }
    }
}
