//! grid's own service, `grid.Node`, registered on every node unless turned off
//! ([`ManagerBuilder::node_service`](crate::ManagerBuilder::node_service)): what the node
//! serves ([`NodeClient::services`]), a round trip through the whole call path
//! ([`NodeClient::ping`]), and its status ([`NodeClient::status`]). It is served like any other service: through the same handler
//! table, the interceptors see its calls (a [`ManagerBuilder::service_interceptor`]
//! for [`NodeService`] guards it alone), and its counters are in the stats. Its handler
//! ids (service id [`SERVICE_ID`]) are reserved.
//!
//! [`ManagerBuilder::service_interceptor`]: crate::ManagerBuilder::service_interceptor

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::core::Core;
use crate::describe::{CallShape, Listing, MethodInfo, BUILTIN_SERVICE_ID};
use crate::error::{RemoteError, Result};
use crate::handler::HandlerId;
use crate::status::NodeStatus;
use crate::typed::__private::encode_response;
use crate::typed::{decode, encode, Registrations, Service, Target};

/// The built-in service's id: handler ids `0xFFFF_0000` and up are its own.
pub const SERVICE_ID: u16 = BUILTIN_SERVICE_ID;
/// `services`: everything the node serves, as a [`Listing`].
pub const SERVICES: HandlerId = HandlerId::new(0xFFFF_0001);
/// `ping`: answers at once (a round trip through the caller's and the handler's paths).
pub const PING: HandlerId = HandlerId::new(0xFFFF_0002);
/// `status`: the node's peers and handlers, as a [`NodeStatus`].
pub const STATUS: HandlerId = HandlerId::new(0xFFFF_0003);

/// The built-in service's description (its name and methods, as a typed service's).
#[derive(Clone, Copy, Debug)]
pub struct NodeService;

impl Service for NodeService {
    const NAME: &'static str = "grid.Node";
    const SERVICE_ID: u16 = SERVICE_ID;
    const METHODS: &'static [MethodInfo] = &[
        MethodInfo {
            name: "services",
            id: SERVICES,
            shape: CallShape::Single,
            request: "()",
            input: None,
            output: None,
            answer: Some("grid::describe::Listing"),
        },
        MethodInfo {
            name: "ping",
            id: PING,
            shape: CallShape::Single,
            request: "()",
            input: None,
            output: None,
            answer: Some("()"),
        },
        MethodInfo {
            name: "status",
            id: STATUS,
            shape: CallShape::Single,
            request: "()",
            input: None,
            output: None,
            answer: Some("grid::status::NodeStatus"),
        },
    ];
}

/// What the node's status is now (`None` once the manager is gone).
pub(crate) type StatusFn = Arc<dyn Fn() -> Option<NodeStatus> + Send + Sync>;

/// Registers the built-in service on `core`'s handler table, answering `status` with
/// `status`. Its handlers hold the core weakly: the table lives in the core.
pub(crate) fn register(core: &Arc<Core>, status: StatusFn) -> Result<()> {
    let weak: Weak<Core> = Arc::downgrade(core);
    let regs = Registrations::of::<NodeService>()
        .single(SERVICES, move |_, _| {
            let core = weak.upgrade();
            async move {
                let core = core.ok_or_else(|| RemoteError::new("the node is shutting down"))?;
                encode_response(&Listing {
                    node: core.local.to_string(),
                    handlers: core.handlers.describe(),
                })
            }
        })
        .single(PING, |_, _| async { encode_response(&()) })
        .single(STATUS, move |_, _| {
            let now = status();
            async move {
                let now = now.ok_or_else(|| RemoteError::new("the node is shutting down"))?;
                encode_response(&now)
            }
        });
    regs.add_to(&core.handlers, None, true)
}

/// Calls a node's built-in service, on a connection or a subroute of one. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeClient {
    target: Target,
    deadline: Option<Duration>,
}

impl NodeClient {
    /// A client for the built-in service of the node at the other end of `target`.
    pub fn new(target: impl Into<Target>) -> Self {
        Self {
            target: target.into(),
            deadline: None,
        }
    }

    /// A copy of this client whose calls use `deadline`.
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            target: self.target.clone(),
            deadline: Some(deadline),
        }
    }

    async fn call(&self, id: HandlerId) -> Result<Option<bytes::Bytes>> {
        let mut call = self.target.request(id, encode(&())?);
        if let Some(d) = self.deadline {
            call = call.deadline(d);
        }
        call.await
    }

    /// Everything the node serves.
    ///
    /// # Errors
    /// As any call; [`Error::UnknownHandler`](crate::Error::UnknownHandler) if the node turned its
    /// built-in service off.
    pub async fn services(&self) -> Result<Listing> {
        let answer = self.call(SERVICES).await?;
        decode(answer.as_deref())
    }

    /// The node's peers and handlers, as it sees them now (without round-trip history).
    ///
    /// # Errors
    /// As [`NodeClient::services`].
    pub async fn status(&self) -> Result<NodeStatus> {
        let answer = self.call(STATUS).await?;
        decode(answer.as_deref())
    }

    /// A call that the node answers at once: how long it takes is the round trip through
    /// the link and both nodes' call paths.
    ///
    /// # Errors
    /// As [`NodeClient::services`].
    pub async fn ping(&self) -> Result<()> {
        self.call(PING).await.map(drop)
    }
}
