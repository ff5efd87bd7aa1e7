//! `grid-cli`, run as a person runs it, against a node serving on a real socket: every
//! subcommand, JSON round trips of nested types, `None` and enums, and the errors a person
//! makes (an unknown method, JSON that does not fit, a wrong token, a name the node does
//! not admit).

use std::io::Write;
use std::process::{Command, Stdio};

use grid::{Manager, Receiver, RemoteError, Sender};
use grid_tests::{assert_idle, listener, shut_down, within, TOKEN};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Link { target: String },
    Blob(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub size: Option<u64>,
    pub kind: Kind,
    pub tags: Vec<String>,
    pub dims: (u32, u32),
}

#[grid::service(id = 50)]
pub trait Inventory {
    async fn echo(&self, item: Item) -> Result<Item, RemoteError>;

    async fn lookup(&self, name: String) -> Result<Option<Item>, RemoteError>;

    #[grid(stream)]
    async fn list(&self, n: u32, out: Sender<Item>) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn sum(
        &self,
        start: u64,
        input: Receiver<u64>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn count(&self, label: String, input: Receiver<Item>) -> Result<u64, RemoteError>;
}

struct Shelf;

fn item(i: u32) -> Item {
    Item {
        name: format!("item-{i}"),
        size: (i % 2 == 0).then_some(u64::from(i) * 10),
        kind: if i == 0 {
            Kind::Dir
        } else {
            Kind::Blob(i.into())
        },
        tags: vec![format!("t{i}")],
        dims: (i, i + 1),
    }
}

impl Inventory for Shelf {
    async fn echo(&self, item: Item) -> Result<Item, RemoteError> {
        Ok(item)
    }

    async fn lookup(&self, name: String) -> Result<Option<Item>, RemoteError> {
        Ok((name == "item-1").then(|| item(1)))
    }

    async fn list(&self, n: u32, mut out: Sender<Item>) -> Result<(), RemoteError> {
        for i in 0..n {
            out.send(&item(i)).await?;
        }
        Ok(())
    }

    async fn sum(
        &self,
        start: u64,
        input: Receiver<u64>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError> {
        grid_tests::storage::running_sum(start, input, out).await
    }

    async fn count(&self, label: String, mut input: Receiver<Item>) -> Result<u64, RemoteError> {
        let mut n = 0;
        while let Some(item) = input.recv().await {
            let item = item?;
            if item.tags.contains(&label) {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A node named `shelf` admitting the client `grid-cli`, and its `NAME=URL`.
async fn node() -> (Manager, String) {
    let (l, url) = listener().await;
    let m = grid_tests::builder("shelf")
        .client("grid-cli")
        .build()
        .expect("node");
    m.register(InventoryServer::new(Shelf)).expect("register");
    tokio::spawn(m.clone().serve(l));
    (m, format!("shelf={url}"))
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs `grid-cli ARGS` with `stdin` (off the runtime's threads: it blocks).
async fn cli(args: &[&str], stdin: &str) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_grid-cli"))
            .args(&args)
            .env("GRID_TOKEN", TOKEN)
            .env_remove("GRID_CLI_NAME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn grid-cli");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        let out = child.wait_with_output().expect("run grid-cli");
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

/// Runs it and expects success; its stdout's lines.
async fn ok(args: &[&str], stdin: &str) -> Vec<String> {
    let r = cli(args, stdin).await;
    assert_eq!(r.code, 0, "grid-cli {args:?} failed: {}{}", r.out, r.err);
    r.out.lines().map(str::to_owned).collect()
}

/// Runs it and expects failure with `code`; its stderr.
async fn fails(args: &[&str], code: i32) -> String {
    let r = cli(args, "").await;
    assert_eq!(r.code, code, "grid-cli {args:?}: {}{}", r.out, r.err);
    r.err
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON output")
}

/// The node served every run and was left with nothing in flight; then it shuts down
/// with no task left.
async fn finish(m: Manager) {
    assert_idle(&m).await;
    shut_down(&m).await;
}

#[tokio::test]
async fn list_call_and_ping_work_with_nested_types_none_and_enums() {
    within(async {
        let (m, node) = node().await;
        let listed = ok(&["list", &node], "").await.join("\n");
        for line in [
            "Inventory.echo",
            "single         Item -> Item",
            "single         String -> Option<Item>",
            "handler_stream u32 -> stream of Item",
            "two_way        u64, stream of u64 -> stream of u64",
            "upload         String, stream of Item -> u64",
            "grid.Node.ping",
        ] {
            assert!(listed.contains(line), "{line:?} missing from:\n{listed}");
        }

        for value in [
            r#"{"name":"a","size":7,"kind":"File","tags":["x","y"],"dims":[1,2]}"#,
            r#"{"name":"b","size":null,"kind":{"Link":{"target":"/t"}},"tags":[],"dims":[0,0]}"#,
            r#"{"name":"c","size":0,"kind":{"Blob":18446744073709551615},"tags":["z"],"dims":[4294967295,3]}"#,
        ] {
            let out = ok(&["call", &node, "Inventory.echo", value], "").await;
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(json(&out[0]), json(value));
        }
        assert_eq!(
            ok(&["call", &node, "Inventory.lookup", "\"nothing\""], "").await,
            ["null"]
        );
        let found = ok(&["call", &node, "Inventory.lookup", "\"item-1\""], "").await;
        assert_eq!(json(&found[0])["kind"], json(r#"{"Blob":1}"#));

        let status = ok(&["status", &node], "").await.join("\n");
        assert!(status.starts_with("shelf (instance "), "{status}");
        assert!(status.contains("  grid-cli         connected"), "{status}");
        assert!(status.contains("Inventory.echo               calls 3 "), "{status}");

        let pings = ok(&["ping", &node, "2"], "").await;
        assert_eq!(pings.len(), 3, "{pings:?}");
        assert!(pings[0].starts_with("ping 1: ") && pings[2].starts_with("2 round trips to shelf"));
        finish(m).await;
    })
    .await
}

#[tokio::test]
async fn streams_print_items_as_json_lines_and_read_input_from_stdin() {
    within(async {
        let (m, node) = node().await;
        let items = ok(&["stream", &node, "Inventory.list", "3"], "").await;
        let expected: Vec<serde_json::Value> = (0..3)
            .map(|i| serde_json::to_value(item(i)).expect("to JSON"))
            .collect();
        assert_eq!(items.iter().map(|l| json(l)).collect::<Vec<_>>(), expected);

        let sums = ok(&["stream", &node, "Inventory.sum", "10"], "1\n2\n\n3\n").await;
        assert_eq!(sums, ["11", "13", "16"]);

        let tagged = r#"{"name":"q","size":null,"kind":"Dir","tags":["keep"],"dims":[1,1]}"#;
        let other = r#"{"name":"r","size":1,"kind":"File","tags":[],"dims":[2,2]}"#;
        let input = format!("{tagged}\n{other}\n{tagged}\n");
        let counted = ok(&["stream", &node, "Inventory.count", "\"keep\""], &input).await;
        assert_eq!(counted, ["2"]);
        finish(m).await;
    })
    .await
}

#[tokio::test]
async fn mistakes_get_errors_a_person_can_act_on() {
    within(async {
        let (m, node) = node().await;
        let err = fails(&["call", &node, "Inventory.ecko", "null"], 1).await;
        assert!(
            err.contains("has no method Inventory.ecko; did you mean Inventory.echo?"),
            "{err}"
        );

        let err = fails(&["call", &node, "Inventory.echo", "\"just a name\""], 1).await;
        assert!(err.contains("could not read the request as Item"), "{err}");

        let err = fails(&["call", &node, "Inventory.echo", "{name: 1}"], 1).await;
        assert!(err.contains("not JSON"), "{err}");

        let err = fails(&["call", &node, "Inventory.list", "3"], 1).await;
        assert!(
            err.contains("is a handler_stream method: use `grid-cli stream`"),
            "{err}"
        );

        let err = fails(&["stream", &node, "Inventory.sum", "0"], 0).await;
        assert!(err.is_empty(), "no input, no output, no error: {err}");

        let err = fails(&["--token", "wrong", "ping", &node], 1).await;
        assert!(err.contains("token refused"), "{err}");

        let err = fails(&["--as", "intruder", "ping", &node], 1).await;
        assert!(err.contains("unknown host \"intruder\""), "{err}");

        let err = fails(&["ping", "shelf"], 2).await;
        assert!(err.contains("NODE is NAME=URL"), "{err}");

        let unreachable = "shelf=ws://127.0.0.1:1/grid/v1";
        let err = fails(&["--connect", "0.5", "ping", unreachable], 1).await;
        assert!(err.contains("could not connect to shelf"), "{err}");
        finish(m).await;
    })
    .await
}

#[tokio::test]
async fn a_wss_node_is_reached_with_its_ca_file_and_refused_without_it() {
    within(async {
        let pki = grid_tests::tls::pki();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let m = grid_tests::builder("shelf")
            .client("grid-cli")
            .tls_server(pki.server.clone())
            .build()
            .expect("node");
        m.register(InventoryServer::new(Shelf)).expect("register");
        tokio::spawn(m.clone().serve(l));
        let node = format!("shelf=wss://localhost:{port}/grid/v1");
        let ca = std::env::temp_dir().join(format!("grid-cli-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, &pki.cert_pem).expect("write the CA file");
        let ca_arg = ca.display().to_string();

        let got = ok(
            &[
                "--ca",
                &ca_arg,
                "call",
                &node,
                "Inventory.lookup",
                "\"item-1\"",
            ],
            "",
        )
        .await;
        assert_eq!(json(&got[0])["name"], "item-1");

        // The system's roots do not know this certificate.
        let err = fails(&["--connect", "2", "ping", &node], 1).await;
        let refused = err.contains("could not connect to shelf");
        assert!(
            refused || err.contains("no usable root certificates"),
            "{err}"
        );
        assert!(err.to_lowercase().contains("certificate"), "{err}");

        let err = fails(&["--ca", "/nonexistent.pem", "ping", &node], 1).await;
        assert!(err.contains("--ca /nonexistent.pem"), "{err}");
        let _ = std::fs::remove_file(&ca);
        finish(m).await;
    })
    .await
}

#[tokio::test]
async fn a_node_without_its_builtin_service_says_so() {
    within(async {
        let (l, url) = listener().await;
        let m = grid_tests::builder("shelf")
            .client("grid-cli")
            .node_service(false)
            .build()
            .expect("node");
        m.register(InventoryServer::new(Shelf)).expect("register");
        tokio::spawn(m.clone().serve(l));
        let node = format!("shelf={url}");
        for sub in [
            &["list", &node][..],
            &["call", &node, "Inventory.echo", "null"],
        ] {
            let err = fails(sub, 1).await;
            assert!(
                err.contains("does not serve grid's built-in service"),
                "{err}"
            );
        }
        let err = fails(&["ping", &node], 1).await;
        assert!(err.contains("no handler"), "{err}");
        finish(m).await;
    })
    .await
}
