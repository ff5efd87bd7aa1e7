//! `grid-cli`: talk to a running grid node from a shell. `grid-cli --help` says how; the
//! node must admit the tool as a client (`ManagerBuilder::client`).
//!
//! The path of a command: `args.rs` reads the command line, `connect.rs` dials the node
//! as an admitted client, `commands.rs` runs the subcommand (through the node's built-in
//! service for `list`, `ping` and `status`), and `json.rs` turns JSON into MessagePack
//! and back.

mod args;
mod commands;
mod connect;
mod json;

use std::process::ExitCode;

use args::{Command, Stop};
use commands::Node;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let a = match args::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(Stop::Help) => {
            println!("{}\n\n{}", args::HELP, args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(Stop::Usage(why)) => {
            eprintln!(
                "grid-cli: {why}\n{}\n(grid-cli --help says more)",
                args::USAGE
            );
            return ExitCode::from(2);
        }
    };
    let (manager, conn) = match connect::connect(&a).await {
        Ok(c) => c,
        Err(why) => {
            eprintln!("grid-cli: {why}");
            return ExitCode::FAILURE;
        }
    };
    let node = Node {
        conn,
        subroute: a.subroute.clone(),
        deadline: a.deadline,
    };
    let done = match &a.command {
        Command::List => commands::list(&node).await,
        Command::Call { method, json } => commands::call(&node, method, json).await,
        Command::Stream { method, json } => commands::stream(&node, method, json).await,
        Command::Ping { count } => commands::ping(&node, *count).await,
        Command::Status => commands::status(&node).await,
    };
    manager.shutdown().await;
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("grid-cli: {why}");
            ExitCode::FAILURE
        }
    }
}
