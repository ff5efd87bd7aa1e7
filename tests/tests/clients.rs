//! Clients over real sockets: a process that is not a node of the cluster (a tool such as
//! `grid-cli`) dials a node that admits it by name, whichever way the names would decide
//! the dialing; it calls the node and the node can call it back; a node that does not
//! admit it, or a wrong token, refuses it with a reason the tool can show.

use bytes::Bytes;
use grid::builtin::NodeClient;
use grid::{Error, HandlerId, Manager, State};
use grid_tests::{builder, finish_all, listener, shut_down, wait_state, within};

const ECHO: HandlerId = HandlerId::new(5);

/// A client name that the node, were it a peer, would dial (not the other way round).
fn tool_name() -> String {
    (0..)
        .map(|i| format!("tool-{i}"))
        .find(|t| grid::dials("node", t))
        .expect("some name")
}

async fn node(
    configure: impl Fn(grid::ManagerBuilder) -> grid::ManagerBuilder,
) -> (Manager, String) {
    let (l, url) = listener().await;
    let node = configure(builder("node")).build().expect("node");
    node.register_single(ECHO, |ctx, p: Option<Bytes>| async move {
        Ok(Bytes::from(format!(
            "{} from {}",
            String::from_utf8_lossy(&p.unwrap_or_default()),
            ctx.caller()
        )))
    })
    .expect("register");
    tokio::spawn(node.clone().serve(l));
    (node, url)
}

fn tool(name: &str, url: &str, token: &str) -> Manager {
    Manager::builder()
        .local(name)
        .peer("node", url)
        .token(token)
        .as_client()
        .build()
        .expect("tool")
}

#[tokio::test]
async fn a_node_serves_a_client_it_admits_and_can_call_it_back() {
    within(async {
        let name = tool_name();
        let (node, url) = node(|b| b.client(name.clone())).await;
        let tool = tool(&name, &url, grid_tests::TOKEN);
        tool.register_single(ECHO, |_, _| async { Ok(Bytes::from_static(b"tool here")) })
            .expect("register");
        let to_node = tool.connection("node").expect("conn");
        within(to_node.wait_for_connect()).await.expect("connect");
        assert!(to_node.is_dialer(), "the client dials");
        let back = node.connection(&name).expect("the client's connection");
        assert!(!back.is_dialer(), "a node never dials a client");
        wait_state(&back, |s| s == State::Connected).await;

        let answer = to_node.request(ECHO, Bytes::from_static(b"hi")).await;
        assert_eq!(
            answer.expect("call").as_deref(),
            Some(format!("hi from {name}").as_bytes())
        );
        let listing = NodeClient::new(&to_node).services().await.expect("list");
        assert_eq!(listing.node, "node");
        let answer = back.request(ECHO, Bytes::new()).await.expect("call back");
        assert_eq!(answer.as_deref(), Some(&b"tool here"[..]));

        finish_all(&[&tool, &node]).await;
    })
    .await
}

#[tokio::test]
async fn a_node_refuses_a_client_it_does_not_admit_or_whose_token_is_wrong() {
    within(async {
        let name = tool_name();
        let (node, url) = node(|b| b.client(name.clone())).await;

        // Not admitted: another name.
        let stranger = tool("stranger", &url, grid_tests::TOKEN);
        let c = stranger.connection("node").expect("conn");
        wait_state(&c, |s| s == State::ConnectionError).await;
        match c.last_error() {
            Some(Error::Rejected(why)) => {
                assert!(why.contains("unknown host \"stranger\""), "{why}");
                assert!(why.contains("ManagerBuilder::client"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        shut_down(&stranger).await;

        // Admitted, but with a wrong token.
        let wrong = tool(&name, &url, "not the secret");
        let c = wrong.connection("node").expect("conn");
        wait_state(&c, |s| s == State::ConnectionError).await;
        match c.last_error() {
            Some(Error::Rejected(why)) => assert!(why.contains("token refused"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        shut_down(&wrong).await;
        finish_all(&[&node]).await;
    })
    .await
}

#[tokio::test]
async fn client_settings_that_cannot_work_are_refused_at_build() {
    within(async {
        for (clients, why) in [
            (vec!["node"], "a name of its own"),
            (vec![""], "a name of its own"),
            (vec!["peer"], "listed twice"),
            (vec!["t", "t"], "listed twice"),
        ] {
            let mut b = builder("node").peer("peer", "ws://127.0.0.1:1/grid/v1");
            for c in clients {
                b = b.client(c);
            }
            match b.build() {
                Err(Error::Config(msg)) => assert!(msg.contains(why), "{msg}"),
                other => panic!("expected a config error, got {other:?}"),
            }
        }
    })
    .await
}
