//! Two builds of one service over real sockets: the newer one's record has a field the
//! older one lacks (an `Option`, with no `#[serde(default)]`). Each direction is tried for
//! every method kind (single call, handler stream, two-way stream, upload): a receiver
//! ignores the field it does not know and reads the field it misses as `None`
//! (PROTOCOL.md §8: typed values are MessagePack maps keyed by field name).

use futures::StreamExt;
use grid::{Receiver, RemoteError, Sender};
use grid_tests::{within, Cluster};

/// The service, for a build whose `Record`, `answer` (what it replies for a record it
/// read) and `label` (how it names a record it read) are in scope: the same methods, and so
/// the same handler ids, in both builds.
macro_rules! catalog {
    ($server:ident) => {
        #[grid::service(id = 40)]
        pub trait Catalog {
            async fn describe(&self, r: Record) -> Result<Record, RemoteError>;

            #[grid(stream)]
            async fn list(&self, first: Record, out: Sender<Record>) -> Result<(), RemoteError>;

            #[grid(stream)]
            async fn echo(
                &self,
                first: Record,
                input: Receiver<Record>,
                out: Sender<Record>,
            ) -> Result<(), RemoteError>;

            #[grid(stream)]
            async fn gather(
                &self,
                first: Record,
                input: Receiver<Record>,
            ) -> Result<Record, RemoteError>;
        }

        pub struct $server;

        impl Catalog for $server {
            async fn describe(&self, r: Record) -> Result<Record, RemoteError> {
                Ok(answer(&r, 0))
            }

            async fn list(
                &self,
                first: Record,
                mut out: Sender<Record>,
            ) -> Result<(), RemoteError> {
                for i in 0..3 {
                    out.send(&answer(&first, i)).await?;
                }
                Ok(())
            }

            async fn echo(
                &self,
                first: Record,
                mut input: Receiver<Record>,
                mut out: Sender<Record>,
            ) -> Result<(), RemoteError> {
                out.send(&answer(&first, 0)).await?;
                while let Some(r) = input.recv().await {
                    out.send(&answer(&r?, 0)).await?;
                }
                Ok(())
            }

            async fn gather(
                &self,
                first: Record,
                mut input: Receiver<Record>,
            ) -> Result<Record, RemoteError> {
                let mut labels = vec![label(&first)];
                while let Some(r) = input.recv().await {
                    labels.push(label(&r?));
                }
                let mut all = first;
                all.name = labels.join(",");
                all.size = labels.len() as u64;
                Ok(answer(&all, 0))
            }
        }
    };
}

/// The older build.
mod v1 {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct Record {
        pub name: String,
        pub size: u64,
    }

    /// What this build answers for a record: what it read of it (`extra` added to its size).
    pub fn answer(r: &Record, extra: u64) -> Record {
        Record {
            name: format!("v1 read {}", r.name),
            size: r.size + 1 + extra,
        }
    }

    fn label(r: &Record) -> String {
        r.name.clone()
    }

    catalog!(Old);
}

/// The newer build: `Record` gained `tags`.
mod v2 {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct Record {
        pub name: String,
        pub size: u64,
        pub tags: Option<Vec<String>>,
    }

    /// What this build answers for a record: what it read of it, tagged.
    pub fn answer(r: &Record, extra: u64) -> Record {
        Record {
            name: format!("v2 read {} tags={:?}", r.name, r.tags),
            size: r.size + 1 + extra,
            tags: Some(vec!["from-v2".into()]),
        }
    }

    fn label(r: &Record) -> String {
        format!("{}{:?}", r.name, r.tags)
    }

    pub fn record(name: &str, size: u64) -> Record {
        Record {
            name: name.into(),
            size,
            tags: Some(vec!["new".into(), "field".into()]),
        }
    }

    catalog!(New);
}

/// A record as the newer build reads one the older build sent: no tags.
fn untagged(name: &str, size: u64) -> v2::Record {
    v2::Record {
        name: name.into(),
        size,
        tags: None,
    }
}

#[tokio::test]
async fn a_newer_caller_and_an_older_handler_understand_each_other() {
    within(async {
        let c = Cluster::start(&["old", "new"], |b| b).await;
        c.managers[0]
            .register(v1::CatalogServer::new(v1::Old))
            .expect("register v1");
        c.connected().await;
        let client = v2::CatalogClient::new(c.managers[1].connection("old").expect("conn"));

        // Single call: the old handler read what it knows and ignored the tags; the new
        // caller reads the answer's missing tags as None.
        let got = client.describe(v2::record("a", 1)).await.expect("describe");
        assert_eq!(got, untagged("v1 read a", 2));

        // Handler stream: the opening record goes one way, the items the other.
        let items: Vec<v2::Record> = client
            .list(v2::record("b", 10))
            .await
            .expect("open list")
            .map(|r| r.expect("item"))
            .collect()
            .await;
        let want: Vec<_> = (0..3).map(|i| untagged("v1 read b", 11 + i)).collect();
        assert_eq!(items, want);

        // Two-way stream: items both ways.
        let (mut input, mut output) = client.echo(v2::record("c", 0)).await.expect("echo");
        input.send(&v2::record("d", 5)).await.expect("send");
        input.send(&v2::record("e", 6)).await.expect("send");
        input.finish().await.expect("finish");
        let answers: Vec<v2::Record> = output.by_ref().map(|r| r.expect("item")).collect().await;
        assert_eq!(
            answers,
            vec![
                untagged("v1 read c", 1),
                untagged("v1 read d", 6),
                untagged("v1 read e", 7)
            ]
        );

        // Upload: items to the handler, one answer back.
        let (mut input, answer) = client.gather(v2::record("f", 0)).await.expect("gather");
        input.send(&v2::record("g", 0)).await.expect("send");
        input.finish().await.expect("finish");
        assert_eq!(answer.await.expect("answer"), untagged("v1 read f,g", 3));
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_older_caller_and_a_newer_handler_understand_each_other() {
    within(async {
        let c = Cluster::start(&["old", "new"], |b| b).await;
        c.managers[1]
            .register(v2::CatalogServer::new(v2::New))
            .expect("register v2");
        c.connected().await;
        let client = v1::CatalogClient::new(c.managers[0].connection("new").expect("conn"));
        let record = |name: &str, size| v1::Record {
            name: name.into(),
            size,
        };
        // What the old caller reads of the new handler's tagged answers.
        let read = |name: &str, size| v1::Record {
            name: format!("v2 read {name} tags=None"),
            size,
        };

        // Single call: the new handler read the missing tags as None; the old caller
        // ignored the tags of the answer.
        let got = client.describe(record("a", 1)).await.expect("describe");
        assert_eq!(got, read("a", 2));

        let items: Vec<v1::Record> = client
            .list(record("b", 10))
            .await
            .expect("open list")
            .map(|r| r.expect("item"))
            .collect()
            .await;
        assert_eq!(items, (0..3).map(|i| read("b", 11 + i)).collect::<Vec<_>>());

        let (mut input, mut output) = client.echo(record("c", 0)).await.expect("echo");
        input.send(&record("d", 5)).await.expect("send");
        input.send(&record("e", 6)).await.expect("send");
        input.finish().await.expect("finish");
        let answers: Vec<v1::Record> = output.by_ref().map(|r| r.expect("item")).collect().await;
        assert_eq!(answers, vec![read("c", 1), read("d", 6), read("e", 7)]);

        let (mut input, answer) = client.gather(record("f", 0)).await.expect("gather");
        input.send(&record("g", 0)).await.expect("send");
        input.finish().await.expect("finish");
        assert_eq!(answer.await.expect("answer"), read("fNone,gNone", 3));
        c.finish().await;
    })
    .await
}
