//! Starting the handlers the engine admitted: find what is registered under the call's
//! handler id and subroute, and run it (single calls: serve_call.rs; streams:
//! serve_stream.rs; what both use: serve_shared.rs). Every task started here is counted by
//! the manager and can be stopped by the session when its call ends without it.

use std::sync::Arc;

use super::serve_shared::Answers;
use super::{serve_call, serve_stream, ConnInner};
use crate::engine::Start;
use crate::session::Session;

/// Starts every handler in `starts`.
pub(crate) fn start_handlers(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    starts: &mut Vec<Start>,
    mut answers: Answers<'_>,
) {
    for start in starts.drain(..) {
        if start.stream {
            serve_stream::start(conn, session, start);
        } else {
            serve_call::start(conn, session, start, &mut answers);
        }
    }
}
