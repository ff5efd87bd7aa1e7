//! Typed stream items read in place over real sockets (`Receiver::recv_with`): decoded as
//! a view whose fields borrow from the received bytes, on the caller's side and on a
//! handler's input, in order (short items staged, long ones sent whole or in chunks
//! between them), with decode errors that leave the stream going, a handler's error
//! reported after its items, and an end that calls nothing.

use std::borrow::Cow;

use grid::{Error, Lent, Receiver, RemoteError, Sender};
use grid_tests::{within, Cluster};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub tags: Vec<String>,
}

/// A view of [`Entry`] that borrows its strings and leaves `size` out. (A `Cow` borrows
/// only as a field of its own marked `#[serde(borrow)]`; in a `Vec`, take `&str`.)
#[derive(Deserialize, Debug)]
struct EntryView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    tags: Vec<&'a str>,
}

/// Every 500th name is long: 3 KiB (sent on its own, not staged) or 70 KiB (in chunks,
/// joined when it is read), between short ones.
fn entry(i: u64) -> Entry {
    let pad = match i % 1000 {
        250 => 3 << 10,
        750 => 70 << 10,
        _ => 0,
    };
    Entry {
        name: format!("file-{i}{}", "x".repeat(pad)),
        size: i,
        tags: (0..i % 3).map(|t| format!("tag-{t}")).collect(),
    }
}

#[grid::service(id = 41)]
pub trait Files {
    /// Sends `entry(0..n)`; for `n` = 13, one entry and then an error.
    #[grid(stream)]
    async fn walk(&self, n: u64, out: Sender<Entry>) -> Result<(), RemoteError>;

    /// Reads the entries sent in place, answering their names' total length and the
    /// number of their tags.
    #[grid(stream)]
    async fn tally(&self, batch: String, input: Receiver<Entry>)
        -> Result<(u64, u64), RemoteError>;
}

struct Store;

/// Reads `item` as a view, checking that its strings are where the item lies.
fn view(item: Lent<'_>) -> Result<(String, usize), Error> {
    let lies = item.bytes().as_ptr_range();
    let v: EntryView<'_> = item.decode()?;
    assert!(
        matches!(&v.name, Cow::Borrowed(name) if lies.contains(&name.as_ptr())),
        "the name is read in place"
    );
    for tag in &v.tags {
        assert!(lies.contains(&tag.as_ptr()), "so is every tag");
    }
    Ok((v.name.into_owned(), v.tags.len()))
}

impl Files for Store {
    async fn walk(&self, n: u64, mut out: Sender<Entry>) -> Result<(), RemoteError> {
        if n == 13 {
            out.send(&entry(0)).await?;
            return Err(RemoteError::new("13 is unlucky"));
        }
        for i in 0..n {
            out.send(&entry(i)).await?;
        }
        Ok(())
    }

    async fn tally(
        &self,
        _batch: String,
        mut input: Receiver<Entry>,
    ) -> Result<(u64, u64), RemoteError> {
        let (mut names, mut tags) = (0, 0);
        while let Some(read) = input.recv_with(view).await {
            let (name, n) = read??;
            names += name.len() as u64;
            tags += n as u64;
        }
        Ok((names, tags))
    }
}

async fn served() -> (Cluster, FilesClient) {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    c.managers[1]
        .register(FilesServer::new(Store))
        .expect("register");
    c.connected().await;
    let client = FilesClient::new(c.managers[0].connection("beta").expect("conn"));
    (c, client)
}

#[tokio::test]
async fn a_caller_reads_items_in_place_in_order_and_the_end_calls_nothing() {
    within(async {
        let (c, client) = served().await;
        // Enough to span many frames and credit returns.
        let n = 3000;
        let mut items = client.walk(n).await.expect("open");
        for i in 0..n {
            let read = items.recv_with(view).await.expect("an item");
            let want = entry(i);
            assert_eq!(
                read.expect("received").expect("decoded"),
                (want.name, want.tags.len()),
                "item {i}"
            );
        }
        let mut called = false;
        assert!(
            items.recv_with(|_| called = true).await.is_none(),
            "the end"
        );
        assert!(!called, "nothing to read at the end");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_item_that_does_not_decode_as_the_view_is_an_error_and_the_stream_goes_on() {
    within(async {
        let (c, client) = served().await;
        let mut items = client.walk(2).await.expect("open");
        let wrong = items
            .recv_with(|item| item.decode::<(u8, u8)>())
            .await
            .expect("an item")
            .expect("received");
        assert!(matches!(wrong, Err(Error::Codec(_))), "{wrong:?}");
        let next = items.recv_with(|item| item.decode::<Entry>()).await;
        assert_eq!(
            next.expect("an item").expect("received").expect("decoded"),
            entry(1)
        );
        assert!(items.recv().await.is_none());
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_handler_reads_its_input_in_place() {
    within(async {
        let (c, client) = served().await;
        let (mut input, answer) = client.tally("b".into()).await.expect("open");
        let entries: Vec<Entry> = (0..500).map(entry).collect();
        for e in &entries {
            input.send(e).await.expect("send");
        }
        input.finish().await.expect("finish");
        let names = entries.iter().map(|e| e.name.len() as u64).sum();
        let tags = entries.iter().map(|e| e.tags.len() as u64).sum();
        assert_eq!(answer.await.expect("answer"), (names, tags));
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_stream_that_fails_lends_its_items_then_reports_the_error_and_ends() {
    within(async {
        let (c, client) = served().await;
        let mut items = client.walk(13).await.expect("open");
        let first = items.recv_with(view).await.expect("an item");
        assert_eq!(first.expect("received").expect("decoded").0, "file-0");
        let mut called = false;
        let failed = items.recv_with(|_| called = true).await.expect("the error");
        assert!(
            matches!(&failed, Err(Error::Remote(e)) if e.message.contains("unlucky")),
            "{failed:?}"
        );
        assert!(!called, "no item to lend");
        assert!(items.recv_with(|_| ()).await.is_none(), "then the end");
        c.finish().await;
    })
    .await
}
