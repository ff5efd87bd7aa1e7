//! The upload method shape: the caller streams items, the handler answers once.

use grid::{Error, Receiver, RemoteError};
use grid_tests::storage::Entry;
use grid_tests::{within, Cluster};
use serde::{Deserialize, Serialize};

/// What an upload answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    batch: String,
    count: u32,
    bytes: u64,
}

#[grid::service(id = 21)]
pub trait Ingest {
    /// Stores the entries streamed, answering how many and their total size; an entry
    /// named "bad" fails the upload.
    #[grid(stream, max_window = "64KiB")]
    async fn put_many(&self, batch: String, input: Receiver<Entry>)
        -> Result<Summary, RemoteError>;
}

struct Store;

impl Ingest for Store {
    async fn put_many(
        &self,
        batch: String,
        mut input: Receiver<Entry>,
    ) -> Result<Summary, RemoteError> {
        let (mut count, mut bytes) = (0, 0);
        while let Some(entry) = input.recv().await {
            let entry = entry?;
            if entry.name == "bad" {
                return Err(RemoteError::new(format!("entry {count} of {batch} is bad")));
            }
            count += 1;
            bytes += entry.name.len() as u64;
        }
        Ok(Summary {
            batch,
            count,
            bytes,
        })
    }
}

async fn served() -> (Cluster, IngestClient) {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    c.managers[1]
        .register(IngestServer::new(Store))
        .expect("register");
    c.connected().await;
    let client = IngestClient::new(c.managers[0].connection("beta").expect("conn"));
    (c, client)
}

fn entry(i: u32) -> Entry {
    Entry {
        name: format!("file-{i:03}"),
    }
}

#[tokio::test]
async fn an_upload_streams_through_its_window_and_is_answered_once() {
    within(async {
        let (c, client) = served().await;
        let (mut items, answer) = client.put_many("b1".into()).await.expect("open");
        for i in 0..100 {
            items.send(&entry(i)).await.expect("send");
        }
        items.finish().await.expect("finish");
        let summary = answer.await.expect("answer");
        assert_eq!(
            summary,
            Summary {
                batch: "b1".into(),
                count: 100,
                bytes: 800
            }
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_failed_upload_answers_with_the_handlers_error() {
    within(async {
        let (c, client) = served().await;
        let (mut items, answer) = client.put_many("b2".into()).await.expect("open");
        items.send(&entry(0)).await.expect("send");
        items
            .send(&Entry { name: "bad".into() })
            .await
            .expect("send");
        assert_eq!(
            answer.await,
            Err(Error::Remote(RemoteError::new("entry 1 of b2 is bad")))
        );
        // The stream is over: the sender says so.
        assert!(items.send(&entry(2)).await.is_err());
        drop(items);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_upload_abandoned_without_finish_is_never_answered_as_complete() {
    within(async {
        let (c, client) = served().await;
        let (mut items, answer) = client.put_many("b3".into()).await.expect("open");
        items.send(&entry(0)).await.expect("send");
        drop(items);
        // The handler's input ends with Cancelled, never with a clean end.
        assert_eq!(answer.await, Err(Error::Cancelled));
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_upload_whose_connection_is_lost_is_answered_with_disconnected() {
    within(async {
        // Streams kept for the peer would resume (tests/tests/resume.rs): not kept here.
        let pair =
            grid_tests::ProxiedPair::start(|b| b.resume_grace(std::time::Duration::ZERO)).await;
        pair.acceptor
            .register(IngestServer::new(Store))
            .expect("register");
        pair.connected().await;
        let (to_acceptor, _) = pair.connections();
        let client = IngestClient::new(to_acceptor);
        let (mut items, answer) = client.put_many("b4".into()).await.expect("open");
        items.send(&entry(0)).await.expect("send");
        pair.proxy.cut();
        assert_eq!(answer.await, Err(grid_tests::LOST));
        assert!(items.send(&entry(1)).await.is_err());
        drop(items);
        pair.finish().await;
    })
    .await
}
