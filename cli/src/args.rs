//! The command line: options, the subcommand and its arguments, and the help.

use std::time::Duration;

pub const USAGE: &str = "\
usage: grid-cli [OPTIONS] list   NODE
       grid-cli [OPTIONS] call   NODE METHOD [JSON]
       grid-cli [OPTIONS] stream NODE METHOD [JSON]   (input items, if any: JSON lines on stdin)
       grid-cli [OPTIONS] ping   NODE [COUNT]
       grid-cli [OPTIONS] status NODE";

pub const HELP: &str = "\
grid-cli talks to a running grid node from a shell: it lists what the node serves, calls
its methods and streams with JSON in and JSON out, pings it, and prints its status.

NODE is the node's name and URL, as its peers list it: NAME=ws://HOST:PORT/grid/v1 (or
wss://...). The node must admit this tool as a client under the name given with --as
(default grid-cli): `ManagerBuilder::client(\"grid-cli\")` in Rust, `--client grid-cli`
for the `node` example. The tool presents the token like any peer; a node that refuses it
says why (unknown name, refused token).

METHOD is Service.method as `list` shows it (e.g. Kv.get), or a handler id (#65537 or
0x00010001) for handlers registered without a service trait.

JSON is the request (default: null). Typed values are MessagePack maps keyed by field
name, so JSON converts without the Rust types: an object for a struct ({\"key\": \"a\"}),
a string for a String or a unit enum variant, {\"Variant\": value} for a variant with
data, null for None or (), an array for a Vec or a tuple. Quote it for the shell:
  grid-cli call a=ws://127.0.0.1:7001/grid/v1 Kv.get '\"from/b\"'

Subcommands:
  list    every handler of the node: Service.method, handler id, shape, and the request,
          item and answer types as the service trait wrote them
  call    a single call: prints the answer as one line of JSON
  stream  opens a stream: prints each item the node sends as a line of JSON; for methods
          that take input (two-way, upload) reads items as JSON lines from stdin and ends
          the input at end of file
  ping    COUNT round trips (default 3) through the node's call path; prints each
  status  the node's peers (state, round trip, reconnects, last error) and handlers
          (calls, errors, latency percentiles)

Options:
  --as NAME          the client name this tool connects under (default grid-cli; or
                     $GRID_CLI_NAME)
  --token TOKEN      the bearer token (or $GRID_TOKEN; required)
  --ca FILE          PEM file of the CA that signed a wss:// node's certificate (default:
                     the system's roots)
  --subroute NAME    call the handlers registered under this subroute
  --deadline SECS    each call's or stream's deadline (default: 10 for calls, none for
                     streams, which run until they end or Ctrl-C)
  --connect SECS     how long to try to connect (default 5)
  -h, --help         this help

Exit status: 0 on success, 1 when the node or the call failed, 2 for a usage error.";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    List,
    Call { method: String, json: String },
    Stream { method: String, json: String },
    Ping { count: u32 },
    Status,
}

/// The parsed command line.
#[derive(Debug)]
pub struct Args {
    pub name: String,
    pub token: String,
    pub ca: Option<String>,
    pub subroute: Option<String>,
    /// The deadline given, if any.
    pub deadline: Option<Duration>,
    pub connect: Duration,
    pub node: String,
    pub url: String,
    pub command: Command,
}

/// What parsing ended with, if not arguments to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    Help,
    Usage(String),
}

/// Parses `argv` (without the program name), with `env` for the defaults.
pub fn parse(
    argv: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Args, Stop> {
    let mut name = env("GRID_CLI_NAME").unwrap_or_else(|| "grid-cli".into());
    let mut token = env("GRID_TOKEN");
    let (mut ca, mut subroute) = (None, None);
    let (mut deadline, mut connect) = (None, Duration::from_secs(5));
    let mut words = Vec::new();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(Stop::Help);
        }
        if !arg.starts_with("--") || arg == "--" {
            words.push(arg);
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| Stop::Usage(format!("{arg} needs a value")))?;
        match arg.as_str() {
            "--as" => name = value,
            "--token" => token = Some(value),
            "--ca" => ca = Some(value),
            "--subroute" => subroute = Some(value),
            "--deadline" => deadline = Some(seconds(&arg, &value)?),
            "--connect" => connect = seconds(&arg, &value)?,
            other => return Err(Stop::Usage(format!("unknown option {other}"))),
        }
    }
    let mut words = words.into_iter();
    let sub = words
        .next()
        .ok_or_else(|| Stop::Usage("which subcommand?".into()))?;
    let node = words
        .next()
        .ok_or_else(|| Stop::Usage(format!("{sub}: which NODE? (NAME=URL)")))?;
    let Some((node, url)) = node.split_once('=') else {
        return Err(Stop::Usage(format!(
            "NODE is NAME=URL, the node's name and its URL (e.g. a=ws://127.0.0.1:7001/grid/v1), not {node:?}"
        )));
    };
    let mut method = || {
        words
            .next()
            .ok_or_else(|| Stop::Usage(format!("{sub}: which METHOD? (Service.method)")))
    };
    let command = match sub.as_str() {
        "list" => Command::List,
        "status" => Command::Status,
        "call" => Command::Call {
            method: method()?,
            json: words.next().unwrap_or_else(|| "null".into()),
        },
        "stream" => Command::Stream {
            method: method()?,
            json: words.next().unwrap_or_else(|| "null".into()),
        },
        "ping" => Command::Ping {
            count: match words.next() {
                None => 3,
                Some(n) => n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Stop::Usage(format!("ping: COUNT is a number above 0, not {n:?}"))
                })?,
            },
        },
        other => {
            return Err(Stop::Usage(format!(
                "unknown subcommand {other:?}: list, call, stream, ping or status"
            )))
        }
    };
    if let Some(extra) = words.next() {
        return Err(Stop::Usage(format!("{sub}: unexpected argument {extra:?}")));
    }
    let token = token
        .ok_or_else(|| Stop::Usage("a token is required: --token TOKEN or $GRID_TOKEN".into()))?;
    Ok(Args {
        name,
        token,
        ca,
        subroute,
        deadline,
        connect,
        node: node.to_owned(),
        url: url.to_owned(),
        command,
    })
}

fn seconds(flag: &str, value: &str) -> Result<Duration, Stop> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Stop::Usage(format!(
                "{flag} takes a number of seconds above 0, not {value:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Args, Stop> {
        parse(line.split_whitespace().map(str::to_owned), |_| None)
    }

    #[test]
    fn a_call_with_options_parses() {
        let a = run("--token t --as ops call a=ws://h:1/grid/v1 Kv.get \"k\" --deadline 2.5")
            .expect("parses");
        assert_eq!((a.name.as_str(), a.token.as_str()), ("ops", "t"));
        assert_eq!((a.node.as_str(), a.url.as_str()), ("a", "ws://h:1/grid/v1"));
        assert_eq!(a.deadline, Some(Duration::from_millis(2500)));
        assert_eq!(
            a.command,
            Command::Call {
                method: "Kv.get".into(),
                json: "\"k\"".into()
            }
        );
    }

    #[test]
    fn defaults_come_from_the_environment() {
        let a = parse(["ping".into(), "a=ws://h:1".into()], |k| match k {
            "GRID_TOKEN" => Some("env-secret".into()),
            _ => None,
        })
        .expect("parses");
        assert_eq!(
            (a.name.as_str(), a.token.as_str()),
            ("grid-cli", "env-secret")
        );
        assert_eq!(a.command, Command::Ping { count: 3 });
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        let usage = |line: &str| match run(line) {
            Err(Stop::Usage(why)) => why,
            other => panic!("{line}: expected a usage error, got {other:?}"),
        };
        assert!(usage("--token t").contains("which subcommand"));
        assert!(usage("--token t list").contains("which NODE"));
        assert!(usage("--token t list ws://h:1").contains("NODE is NAME=URL"));
        assert!(usage("--token t call a=ws://h:1").contains("which METHOD"));
        assert!(usage("--token t frob a=ws://h:1").contains("unknown subcommand"));
        assert!(usage("--token t ping a=ws://h:1 0").contains("above 0"));
        assert!(usage("--token t list a=ws://h:1 extra").contains("unexpected argument"));
        assert!(usage("list a=ws://h:1").contains("token is required"));
        assert!(usage("--deadline -1 list a=ws://h:1").contains("seconds above 0"));
        assert!(usage("--bogus 1 list a=ws://h:1").contains("unknown option"));
        assert_eq!(run("list --help").expect_err("help"), Stop::Help);
    }
}
