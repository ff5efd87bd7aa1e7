//! Handlers the tests share.

use futures::StreamExt;
use grid::{
    CallContext, Error, Interceptor, RemoteError, StreamCall, StreamHandler, StreamReceiver,
    StreamSender,
};
use tokio::sync::mpsc;

/// A stream handler that hands its input and context to the test, then waits until it is
/// stopped: the test reads the input as a handler would, even after the handler itself was
/// stopped (as a task the handler spawned would).
pub fn upload(taken: mpsc::UnboundedSender<(StreamReceiver, CallContext)>) -> StreamHandler {
    StreamHandler::new(move |mut call: StreamCall| {
        let taken = taken.clone();
        async move {
            if let Some(input) = call.input.take() {
                let _ = taken.send((input, call.ctx.clone()));
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    })
    .with_input()
}

/// Reads a stream to its end: how many messages, and how it ended.
pub async fn read_to_end(mut input: StreamReceiver) -> (usize, Result<(), Error>) {
    let mut n = 0;
    while let Some(item) = input.next().await {
        match item {
            Ok(_) => n += 1,
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(()))
}

/// Sends every message of `input` back on `output`, until the input ends.
pub async fn echo_back(
    input: &mut StreamReceiver,
    output: &mut StreamSender,
) -> Result<(), RemoteError> {
    while let Some(msg) = input.next().await {
        output.send(msg?).await?;
    }
    Ok(())
}

/// A stream handler that echoes every input message back, then returns.
pub fn echo_input() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        let mut input = call.take_input()?;
        echo_back(&mut input, &mut call.output).await
    })
    .with_input()
}

/// An interceptor that refuses every call it sees, saying who may not call what
/// ("alpha may not call #9").
pub struct DenyAll;

impl Interceptor for DenyAll {
    fn before(&self, call: &CallContext) -> Result<(), RemoteError> {
        Err(RemoteError::new(format!(
            "{} may not call {}",
            call.caller(),
            call.handler()
        )))
    }
}
