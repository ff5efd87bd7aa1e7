//! The built-in `grid.Node` service over real sockets: a node lists what it serves (typed
//! methods with their shapes and type names, untyped handlers, subroutes, the built-in
//! itself), answers pings, can turn the service off, and guards it with the interceptors
//! like any other service; its handler ids are reserved.

use std::collections::HashMap;

use bytes::Bytes;
use grid::builtin::{NodeClient, NodeService, PING, SERVICES, STATUS};
use grid::{
    CallShape, Error, HandlerId, HandlerInfo, Receiver, RemoteError, Sender, Service, StreamCall,
    StreamHandler,
};
use grid_tests::handlers::DenyAll;
use grid_tests::{builder, within, Cluster};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Query {
    pub prefix: String,
}

#[derive(Serialize, Deserialize)]
pub struct Item {
    pub name: String,
}

/// One method of each shape, with types that print with generics and references.
#[grid::service(id = 40)]
pub trait Catalog {
    async fn find(&self, req: Query) -> Result<Option<Vec<String>>, RemoteError>;

    #[grid(stream)]
    async fn scan(&self, from: u64, out: Sender<Item>) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn sync(
        &self,
        start: (u32, String),
        input: Receiver<Item>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn load(&self, name: String, input: Receiver<Vec<u8>>) -> Result<u64, RemoteError>;
}

struct Books;

impl Catalog for Books {
    async fn find(&self, _req: Query) -> Result<Option<Vec<String>>, RemoteError> {
        Ok(None)
    }

    async fn scan(&self, _from: u64, _out: Sender<Item>) -> Result<(), RemoteError> {
        Ok(())
    }

    async fn sync(
        &self,
        _start: (u32, String),
        _input: Receiver<Item>,
        _out: Sender<u64>,
    ) -> Result<(), RemoteError> {
        Ok(())
    }

    async fn load(&self, _name: String, _input: Receiver<Vec<u8>>) -> Result<u64, RemoteError> {
        Ok(0)
    }
}

fn typed(
    id: HandlerId,
    subroute: Option<&str>,
    method: &str,
    shape: CallShape,
    types: [Option<&str>; 4],
) -> HandlerInfo {
    let [request, input, output, answer] = types.map(|t| t.map(str::to_owned));
    HandlerInfo {
        id: id.get(),
        subroute: subroute.map(str::to_owned),
        service: Some("Catalog".into()),
        method: Some(method.into()),
        shape,
        request,
        input,
        output,
        answer,
    }
}

fn untyped(id: u32, shape: CallShape) -> HandlerInfo {
    HandlerInfo {
        id,
        subroute: None,
        service: None,
        method: None,
        shape,
        request: None,
        input: None,
        output: None,
        answer: None,
    }
}

#[tokio::test]
async fn a_node_lists_what_it_serves_with_shapes_and_type_names() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let beta = &c.managers[1];
        beta.register(CatalogServer::new(Books)).expect("register");
        beta.register_on("shelf-2", CatalogServer::new(Books))
            .expect("register on a subroute");
        beta.register_single(HandlerId::new(7), |_, _| async { Ok(Bytes::new()) })
            .expect("single");
        beta.register_stream(
            HandlerId::new(8),
            StreamHandler::new(|_: StreamCall| async { Ok(()) }),
        )
        .expect("stream");
        c.connected().await;

        let node = NodeClient::new(c.managers[0].connection("beta").expect("conn"));
        node.ping().await.expect("ping");
        let listing = node.services().await.expect("services");
        assert_eq!(listing.node, "beta");

        let s = CatalogService::FIND;
        let mut expected = vec![untyped(7, CallShape::Single), untyped(8, CallShape::Stream)];
        for subroute in [None, Some("shelf-2")] {
            expected.extend([
                typed(
                    s,
                    subroute,
                    "find",
                    CallShape::Single,
                    [Some("Query"), None, None, Some("Option<Vec<String>>")],
                ),
                typed(
                    CatalogService::SCAN,
                    subroute,
                    "scan",
                    CallShape::HandlerStream,
                    [Some("u64"), None, Some("Item"), None],
                ),
                typed(
                    CatalogService::SYNC,
                    subroute,
                    "sync",
                    CallShape::TwoWay,
                    [Some("(u32, String)"), Some("Item"), Some("u64"), None],
                ),
                typed(
                    CatalogService::LOAD,
                    subroute,
                    "load",
                    CallShape::Upload,
                    [Some("String"), Some("Vec<u8>"), None, Some("u64")],
                ),
            ]);
        }
        for (id, method, answer) in [
            (SERVICES, "services", "grid::describe::Listing"),
            (PING, "ping", "()"),
            (STATUS, "status", "grid::status::NodeStatus"),
        ] {
            expected.push(HandlerInfo {
                id: id.get(),
                subroute: None,
                service: Some("grid.Node".into()),
                method: Some(method.into()),
                shape: CallShape::Single,
                request: Some("()".into()),
                input: None,
                output: None,
                answer: Some(answer.into()),
            });
        }
        expected.sort_by(|a, b| (a.id, &a.subroute).cmp(&(b.id, &b.subroute)));
        assert_eq!(listing.handlers, expected);

        // The listing says what the macro generated.
        for m in <CatalogService as Service>::METHODS {
            let listed = listing
                .handlers
                .iter()
                .find(|h| h.id == m.id.get() && h.subroute.is_none())
                .expect("listed");
            assert_eq!(listed.method.as_deref(), Some(m.name));
            assert_eq!(listed.shape, m.shape);
        }
        assert_eq!(
            expected
                .iter()
                .map(HandlerInfo::display_name)
                .filter(|n| n.starts_with("Catalog.find") || n.starts_with('#'))
                .collect::<Vec<_>>(),
            ["#7", "#8", "Catalog.find", "Catalog.find@shelf-2"]
        );

        // Its calls count like any handler's.
        let stats = beta.stats();
        let counted: HashMap<_, _> = stats
            .handlers
            .iter()
            .filter(|h| h.service == Some("grid.Node"))
            .map(|h| (h.method.expect("named"), h.calls))
            .collect();
        assert_eq!(
            counted,
            HashMap::from([("services", 1), ("ping", 1), ("status", 0)])
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn the_node_service_can_be_turned_off_or_guarded_by_an_interceptor() {
    within(async {
        // beta serves no built-in service; gamma guards it (and only it).
        let c = Cluster::start_each(&["alpha", "beta", "gamma"], |name, b| match name {
            "beta" => b.node_service(false),
            "gamma" => b.service_interceptor::<NodeService>(DenyAll),
            _ => b,
        })
        .await;
        c.connected().await;
        let alpha = &c.managers[0];
        let beta = NodeClient::new(alpha.connection("beta").expect("conn"));
        assert!(
            matches!(beta.services().await, Err(Error::UnknownHandler { .. })),
            "beta turned it off"
        );
        assert!(matches!(
            beta.ping().await,
            Err(Error::UnknownHandler { .. })
        ));
        let gamma = NodeClient::new(alpha.connection("gamma").expect("conn"));
        match gamma.services().await {
            Err(Error::Remote(e)) => assert!(e.message.contains("alpha may not call"), "{e}"),
            other => panic!("expected the interceptor's refusal, got {other:?}"),
        }
        // alpha serves it as usual.
        let alpha_from_gamma = NodeClient::new(c.managers[2].connection("alpha").expect("conn"));
        assert_eq!(
            alpha_from_gamma.services().await.expect("alpha's").node,
            "alpha"
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn the_builtin_services_ids_are_reserved() {
    within(async {
        let m = builder("solo").build().expect("build");
        for id in [0xFFFF_0001, 0xFFFF_0003, 0xFFFF_FFFF] {
            match m.register_single(HandlerId::new(id), |_, _| async { Ok(Bytes::new()) }) {
                Err(Error::Config(msg)) => assert!(msg.contains("reserved"), "{msg}"),
                other => panic!("{id:#x}: expected a config error, got {other:?}"),
            }
        }
        // The id below them is anyone's.
        m.register_single(HandlerId::new(0xFFFE_FFFF), |_, _| async {
            Ok(Bytes::new())
        })
        .expect("not reserved");
        grid_tests::shut_down(&m).await;
    })
    .await
}
