//! The status page as a person sees it: a small cluster runs, one node serves its page
//! (`Manager::status_router`), a real headless browser (Chromium) loads it; the rendered
//! DOM has every peer's row with its state, a round-trip chart per peer, and the handlers'
//! counts; a screenshot is taken; one peer stopped shows in its row at the next load. The
//! same data comes as JSON from the page's `/json` address and, without the charts, from
//! the built-in service.
//!
//! Chromium is found as `chromium` (Debian's package, which `.ci/run` installs),
//! `chromium-browser` or `google-chrome`, or at `$GRID_CHROMIUM`. Where none is installed
//! the browser half says so and passes, unless `$GRID_REQUIRE_CHROMIUM` is set, as CI sets
//! it: there a missing browser fails the test.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use grid::builtin::NodeClient;
use grid::{HandlerId, State};
use grid_tests::{finish_all, shut_down, wait_state, within_secs, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ECHO: HandlerId = HandlerId::new(1);

/// `GET path` on `addr`: the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_owned())
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRID_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs the browser headless on `url` with `args` (off the runtime's threads); its stdout.
async fn browse(browser: &PathBuf, url: &str, args: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("grid-status-chromium-{}", std::process::id()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run the browser");
    assert!(
        out.status.success(),
        "the browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` of `peer` in the rendered page.
fn row<'a>(dom: &'a str, peer: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr class=\"peer\" data-peer=\"{peer}\""))
        .unwrap_or_else(|| panic!("no row for {peer} in:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_peer_and_a_stopped_one_at_the_next_load() {
    within_secs(60, async {
        let c = Cluster::start(&["alpha", "beta", "gamma"], |b| b).await;
        let (alpha, beta, gamma) = (&c.managers[0], &c.managers[1], &c.managers[2]);
        alpha
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        c.connected().await;
        let to_alpha = beta.connection("alpha").expect("conn");
        for _ in 0..5 {
            to_alpha.request(ECHO, Bytes::new()).await.expect("call");
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let page = alpha.status_router("/status");
        let server = tokio::spawn(async move { axum::serve(listener, page).await });

        // The JSON: both peers up, with sampled round trips; the handler's calls.
        let (code, body) = get(addr, "/status/json").await;
        assert_eq!(code, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["node"], "alpha");
        for (i, peer) in ["beta", "gamma"].iter().enumerate() {
            let p = &json["peers"][i];
            assert_eq!((&p["peer"], &p["state"]), (&(*peer).into(), &"connected".into()));
            let sampled = p["rtt_history"].as_array().expect("history");
            assert!(!sampled.is_empty(), "sampled when mounted: {p}");
        }
        let echo = json["handlers"]
            .as_array()
            .expect("handlers")
            .iter()
            .find(|h| h["id"] == 1)
            .expect("the echo handler");
        assert_eq!((&echo["name"], &echo["calls"]), (&"#1".into(), &5.into()));
        assert!(echo["p99_ms"].as_f64().is_some(), "{echo}");

        // The built-in service gives the same peers, without the charts.
        let remote = NodeClient::new(&to_alpha).status().await.expect("status");
        let peers: Vec<_> = remote.peers.iter().map(|p| (p.peer.as_str(), p.state.as_str())).collect();
        assert_eq!(peers, [("beta", "connected"), ("gamma", "connected")]);
        assert!(remote.peers.iter().all(|p| p.rtt_history.is_empty()));

        let (code, html) = get(addr, "/status").await;
        assert_eq!(code, 200);
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"), "{html}");

        match chromium() {
            Some(browser) => {
                let url = format!("http://{addr}/status");
                let dom = browse(&browser, &url, &["--dump-dom"]).await;
                for peer in ["beta", "gamma"] {
                    assert!(row(&dom, peer).contains("data-state=\"connected\""), "{dom}");
                    assert!(
                        dom.contains(&format!("<svg class=\"rtt-chart\" data-peer=\"{peer}\"")),
                        "{peer}'s chart missing: {dom}"
                    );
                }
                assert!(dom.contains("<tr class=\"handler\" data-handler=\"#1\">"), "{dom}");
                let shot = std::env::temp_dir()
                    .join(format!("grid-status-{}.png", std::process::id()));
                let arg = format!("--screenshot={}", shot.display());
                browse(&browser, &url, &[&arg, "--window-size=1280,800"]).await;
                let png = std::fs::read(&shot).expect("the screenshot");
                assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{} bytes", png.len());
                let _ = std::fs::remove_file(&shot);

                // gamma stops: its row says so at the next load.
                shut_down(gamma).await;
                let to_gamma = alpha.connection("gamma").expect("conn");
                wait_state(&to_gamma, |s| s != State::Connected).await;
                let dom = browse(&browser, &url, &["--dump-dom"]).await;
                let gone = row(&dom, "gamma");
                assert!(!gone.contains("data-state=\"connected\""), "{gone}");
                assert!(row(&dom, "beta").contains("data-state=\"connected\""));
            }
            None if std::env::var_os("GRID_REQUIRE_CHROMIUM").is_some() => {
                panic!("no Chromium found (chromium, chromium-browser, google-chrome or $GRID_CHROMIUM)")
            }
            None => {
                eprintln!("status_page: no Chromium installed; the browser half was not run");
                shut_down(gamma).await;
            }
        }
        server.abort();
        let _ = server.await;
        finish_all(&[alpha, beta]).await;
    })
    .await
}
