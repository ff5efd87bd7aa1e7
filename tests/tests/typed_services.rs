//! Typed services from `#[grid::service]` over real sockets: every method kind, errors,
//! deadlines, cancellation, subroutes, compatibility between versions, registration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{CallContext, Error, Receiver, RemoteError, Sender, Service};
use grid_tests::storage::{
    DiskInfo, DiskInfoReq, Entry, Storage, StorageClient, StorageServer, StorageService,
};
use grid_tests::{within, Cluster};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Default)]
struct Disks {
    hung: Arc<AtomicUsize>,
    hang_dropped: Arc<Notify>,
}

impl Storage for Disks {
    async fn disk_info(&self, req: DiskInfoReq) -> Result<DiskInfo, RemoteError> {
        let ctx = CallContext::current().ok_or_else(|| RemoteError::new("no context"))?;
        let caller = match ctx.subroute() {
            Some(s) => format!("{}@{s}", ctx.caller()),
            None => ctx.caller().to_owned(),
        };
        Ok(DiskInfo {
            disk: req.disk,
            free: 42,
            caller,
        })
    }

    async fn broken(&self, req: String) -> Result<u32, RemoteError> {
        Err(RemoteError::new(format!("cannot {req}")))
    }

    async fn hang(&self, _req: ()) -> Result<(), RemoteError> {
        struct OnDrop(Arc<Notify>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let _guard = OnDrop(self.hang_dropped.clone());
        self.hung.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn walk_dir(&self, n: u32, mut out: Sender<Entry>) -> Result<(), RemoteError> {
        for i in 0..n {
            out.send(&Entry {
                name: format!("file-{i}"),
            })
            .await?;
        }
        Ok(())
    }

    async fn running_sum(
        &self,
        start: u64,
        input: Receiver<u64>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError> {
        grid_tests::storage::running_sum(start, input, out).await
    }
}

fn assert_client_traits<T: Clone + Send + Sync + 'static>() {}

async fn served() -> (Cluster, StorageClient, Arc<Disks>) {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    let disks = Arc::new(Disks::default());
    c.managers[1]
        .register(StorageServer::from_arc(disks.clone()))
        .expect("register");
    c.connected().await;
    let client = StorageClient::new(c.managers[0].connection("beta").expect("conn"));
    (c, client, disks)
}

#[tokio::test]
async fn every_method_kind_works_over_the_wire() {
    within(async {
        assert_client_traits::<StorageClient>();
        let (c, client, _) = served().await;
        let info = client
            .disk_info(DiskInfoReq { disk: "sda".into() })
            .await
            .expect("single");
        assert_eq!(
            info,
            DiskInfo {
                disk: "sda".into(),
                free: 42,
                caller: "alpha".into()
            }
        );

        let entries: Vec<String> = client
            .walk_dir(5)
            .await
            .expect("open")
            .map(|e| e.expect("entry").name)
            .collect()
            .await;
        assert_eq!(
            entries,
            (0..5).map(|i| format!("file-{i}")).collect::<Vec<_>>()
        );

        let (mut numbers, mut totals) = client.running_sum(100).await.expect("open two-way");
        for n in [1u64, 2, 3] {
            numbers.send(&n).await.expect("send");
        }
        numbers.finish().await.expect("finish");
        let got: Vec<u64> = totals.by_ref().map(|t| t.expect("total")).collect().await;
        assert_eq!(got, vec![101, 103, 106]);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn remote_errors_deadlines_and_cancellation() {
    within(async {
        let (c, client, disks) = served().await;
        assert_eq!(
            client.broken("fly".into()).await,
            Err(Error::Remote(RemoteError::new("cannot fly")))
        );
        // Per-call deadline (a copy of the client), sent to the handler, which is dropped.
        assert_eq!(
            client
                .with_deadline(Duration::from_millis(200))
                .hang(())
                .await,
            Err(Error::DeadlineExceeded)
        );
        disks.hang_dropped.notified().await;
        // Dropping the call cancels the handler.
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.hang(()).await }
        });
        while disks.hung.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        call.abort();
        disks.hang_dropped.notified().await;
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn services_on_subroutes() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_on("disk-1", StorageServer::new(Disks::default()))
            .expect("register");
        c.managers[1]
            .register_on("disk-2", StorageServer::new(Disks::default()))
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let d2 = StorageClient::new(conn.subroute("disk-2"));
        let info = d2
            .disk_info(DiskInfoReq { disk: "x".into() })
            .await
            .expect("call");
        assert_eq!(info.caller, "alpha@disk-2");
        // Without a subroute, nothing is registered.
        assert!(matches!(
            StorageClient::new(conn)
                .disk_info(DiskInfoReq { disk: "x".into() })
                .await,
            Err(Error::UnknownHandler { .. })
        ));
        c.finish().await;
    })
    .await
}

/// The same service as an older build knew it: one method, and a smaller request.
mod v1 {
    use grid::RemoteError;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct DiskInfoReq {
        pub disk: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct DiskInfo {
        pub disk: String,
        pub free: u64,
        pub caller: String,
    }

    #[grid::service(id = 1)]
    pub trait Storage {
        async fn disk_info(&self, req: DiskInfoReq) -> Result<DiskInfo, RemoteError>;
    }

    pub struct Old;

    impl Storage for Old {
        async fn disk_info(&self, req: DiskInfoReq) -> Result<DiskInfo, RemoteError> {
            Ok(DiskInfo {
                disk: req.disk,
                free: 1,
                caller: "v1".into(),
            })
        }
    }
}

/// A newer request with an optional field the older build does not know.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct DiskInfoReqV3 {
    disk: String,
    #[serde(default)]
    include_smart: Option<bool>,
}

#[tokio::test]
async fn an_older_server_answers_what_it_knows_and_refuses_the_rest() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register(v1::StorageServer::new(v1::Old))
            .expect("register v1");
        c.connected().await;
        let client = StorageClient::new(c.managers[0].connection("beta").expect("conn"));
        // The method both versions have works; the ids match because they come from names.
        assert_eq!(v1::StorageService::DISK_INFO, StorageService::DISK_INFO);
        let info = client
            .disk_info(DiskInfoReq { disk: "sdb".into() })
            .await
            .expect("call");
        assert_eq!(info.caller, "v1");
        // A method the old build lacks is an UnknownHandler, and the connection carries on.
        assert!(matches!(
            client.walk_dir(1).await,
            Err(Error::UnknownHandler { .. })
        ));
        assert!(matches!(
            client.broken("x".into()).await,
            Err(Error::UnknownHandler { .. })
        ));
        assert!(client
            .disk_info(DiskInfoReq { disk: "sdc".into() })
            .await
            .is_ok());
        c.finish().await;
    })
    .await
}

#[test]
fn adding_an_optional_field_does_not_break_older_peers() {
    let new = DiskInfoReqV3 {
        disk: "sda".into(),
        include_smart: Some(true),
    };
    // Old reads new: the unknown field is ignored.
    let old: v1::DiskInfoReq =
        grid::typed::decode(Some(&grid::typed::encode(&new).expect("enc"))).expect("old reads new");
    assert_eq!(old, v1::DiskInfoReq { disk: "sda".into() });
    // New reads old: the missing field is its default.
    let back: DiskInfoReqV3 =
        grid::typed::decode(Some(&grid::typed::encode(&old).expect("enc"))).expect("new reads old");
    assert_eq!(
        back,
        DiskInfoReqV3 {
            disk: "sda".into(),
            include_smart: None
        }
    );
}

/// grid reads typed values with its own decoder, which leaves to `rmp_serde` what it does
/// not read the same way: such values still decode, and errors are `rmp_serde`'s.
#[test]
fn values_the_fast_decoder_leaves_are_decoded_by_rmp_serde() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Unit;
    /// A name read only as a string (grid's decoder offers names as bytes).
    #[derive(Debug, PartialEq)]
    struct OnlyStr(String);
    impl<'de> Deserialize<'de> for OnlyStr {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Name;
            impl serde::de::Visitor<'_> for Name {
                type Value = OnlyStr;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a name")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OnlyStr, E> {
                    Ok(OnlyStr(v.to_owned()))
                }
            }
            d.deserialize_identifier(Name)
        }
    }
    let unit = grid::typed::encode(&Unit).expect("encode");
    assert_eq!(
        grid::typed::decode::<Unit>(Some(&unit)).expect("decoded"),
        Unit
    );
    let hello = grid::typed::encode("hello").expect("encode");
    assert_eq!(
        grid::typed::decode::<OnlyStr>(Some(&hello)).expect("decoded"),
        OnlyStr("hello".into())
    );
    let wrong = grid::typed::decode::<DiskInfo>(Some(&hello)).expect_err("not a DiskInfo");
    assert!(
        matches!(&wrong, Error::Codec(why) if why.contains("DiskInfo")),
        "{wrong}"
    );
}

#[tokio::test]
async fn undecodable_payloads_are_codec_errors_not_panics() {
    within(async {
        let (c, client, _) = served().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        // A request the handler side cannot decode.
        match conn
            .request(
                StorageService::DISK_INFO,
                Bytes::from_static(b"\xc1garbage"),
            )
            .await
        {
            Err(Error::Codec(msg)) => assert!(msg.contains("DiskInfoReq"), "{msg}"),
            other => panic!("expected a codec error, got {other:?}"),
        }
        // An answer the caller cannot decode (a handler returning another type).
        c.managers[1]
            .register_single(grid::HandlerId::new(0x0002_0001), |_, _| async {
                Ok(Bytes::from_static(b"\x07"))
            })
            .expect("register");
        let seven: Result<DiskInfo, Error> = grid::typed::decode(Some(b"\x07"));
        assert!(matches!(seven, Err(Error::Codec(_))));
        assert!(client
            .disk_info(DiskInfoReq { disk: "ok".into() })
            .await
            .is_ok());
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn overlapping_services_are_refused_at_registration_all_or_nothing() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let m = &c.managers[1];
        m.register(v1::StorageServer::new(v1::Old))
            .expect("register v1");
        match m.register(StorageServer::new(Disks::default())) {
            Err(Error::HandlerAlreadyExists { handler, .. }) => {
                assert_eq!(handler, StorageService::DISK_INFO)
            }
            other => panic!("expected HandlerAlreadyExists, got {other:?}"),
        }
        c.connected().await;
        // Nothing of the refused service was registered.
        let client = StorageClient::new(c.managers[0].connection("beta").expect("conn"));
        assert!(matches!(
            client.walk_dir(1).await,
            Err(Error::UnknownHandler { .. })
        ));
        assert_eq!(
            client
                .disk_info(DiskInfoReq { disk: "a".into() })
                .await
                .expect("v1")
                .caller,
            "v1"
        );
        assert_eq!(<StorageService as Service>::METHODS.len(), 5);
        assert_eq!(StorageService::RUNNING_SUM.get(), 0x0001_004d);
        assert_eq!(
            StorageService::DISK_INFO.get(),
            0x0001_8e99,
            "pinned in PROTOCOL.md"
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn dropping_a_typed_stream_cancels_its_handler_and_method_deadlines_apply() {
    within(async {
        let (c, client, disks) = served().await;
        // A handler stream whose caller drops the receiver: the handler's send fails and
        // the mux is freed on both sides (checked by finish()).
        let mut entries = client.walk_dir(1_000_000).await.expect("open");
        assert_eq!(
            entries.recv().await.expect("first").expect("ok").name,
            "file-0"
        );
        drop(entries);
        // The two-way stream: dropping the receiver cancels it; the sender then fails.
        let (mut numbers, totals) = client.running_sum(0).await.expect("open");
        numbers.send(&1).await.expect("send");
        drop(totals);
        loop {
            if numbers.send(&1).await.is_err() {
                break;
            }
        }
        drop(numbers);
        // `hang` declares a 60 s default deadline; a client deadline overrides it.
        let quick = client.with_deadline(Duration::from_millis(100));
        assert_eq!(quick.hang(()).await, Err(Error::DeadlineExceeded));
        disks.hang_dropped.notified().await;
        c.finish().await;
    })
    .await
}
