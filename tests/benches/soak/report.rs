//! What the run reports: a line every few seconds, and a summary at the end.

use std::time::Duration;

use grid_tests::{alloc, resident_bytes};

use crate::tally::n;
use crate::world::World;
use crate::MIB;

/// One line of the report.
pub(crate) struct Sample {
    t: f64,
    calls_ok: u64,
    calls_failed: u64,
    streams_ok: u64,
    faults: u64,
    reconnects: u64,
    rss: usize,
    pub(crate) heap: usize,
    peak: usize,
}

/// The figures of the run so far; resets the heap's peak.
pub(crate) fn sample(w: &World) -> Sample {
    let t = &w.tally;
    let s = Sample {
        t: w.elapsed(),
        calls_ok: n(&t.calls_ok),
        calls_failed: t.calls_failed.total(),
        streams_ok: n(&t.streams_ok),
        faults: t.faults.total(),
        reconnects: w.reconnects(),
        rss: resident_bytes(),
        heap: alloc::live(),
        peak: alloc::peak(),
    };
    alloc::reset_peak();
    s
}

/// Prints a line of the report.
pub(crate) fn report_line(w: &World, s: &Sample) {
    let t = &w.tally;
    println!(
        "[{:6.1} s] calls {} ok, {} failed ({}), {} given up | streams {} ok, {} failed ({}), {} given up | \
         faults {} ({}) | reconnects {} | rss {:.1} MiB, heap {:.1} MiB (peak {:.1})",
        s.t,
        s.calls_ok,
        s.calls_failed,
        t.calls_failed.show(),
        n(&t.calls_given_up),
        s.streams_ok,
        t.streams_failed.total(),
        t.streams_failed.show(),
        n(&t.streams_given_up),
        s.faults,
        t.faults.show(),
        s.reconnects,
        s.rss as f64 / MIB,
        s.heap as f64 / MIB,
        s.peak as f64 / MIB,
    );
}

/// Figures from the end of the run, for the summary.
pub(crate) struct Figures {
    pub(crate) heap_before: usize,
    pub(crate) heap_warm: usize,
    pub(crate) heap_after: usize,
    pub(crate) rss_after: usize,
    pub(crate) tasks_before: Vec<usize>,
    pub(crate) tasks_after: Vec<usize>,
    pub(crate) tasks_shut_down: Vec<usize>,
    pub(crate) open_before_shutdown: Vec<usize>,
    pub(crate) open_after_shutdown: Vec<usize>,
}

/// Prints the summary: the run's counts, the end's figures, and a table of the samples.
pub(crate) fn summary(w: &World, samples: &[Sample], ran: Duration, f: Figures) {
    let t = &w.tally;
    let secs = ran.as_secs_f64();
    println!("\n== summary: {secs:.0} s of load");
    println!(
        "calls      {} ok ({:.0}/s, {:.1} MiB echoed), {} failed: {}; {} given up by their caller; {} ended over 1 s past their deadline",
        n(&t.calls_ok),
        n(&t.calls_ok) as f64 / secs,
        n(&t.call_bytes) as f64 / MIB,
        t.calls_failed.total(),
        t.calls_failed.show(),
        n(&t.calls_given_up),
        n(&t.calls_late)
    );
    println!(
        "streams    {} ok ({} echoes checked), {} failed: {}; {} given up part way; {} ended over 1 s past their deadline",
        n(&t.streams_ok),
        n(&t.echoes),
        t.streams_failed.total(),
        t.streams_failed.show(),
        n(&t.streams_given_up),
        n(&t.streams_late)
    );
    println!(
        "handlers   {} slow handlers stopped before answering (cancelled, deadline, lost socket)",
        n(&t.handlers_stopped)
    );
    println!("faults     {} drawn: {}", t.faults.total(), t.faults.show());
    let per_link: Vec<String> = w
        .links
        .iter()
        .map(|l| {
            let s = w.connection(l.dialer, l.acceptor).stats();
            format!(
                "{} {} (protocol errors {})",
                l.name, s.reconnects, s.protocol_errors
            )
        })
        .collect();
    println!("reconnects {} ({})", w.reconnects(), per_link.join(", "));
    println!(
        "findings   hangs {}, wrong answers {}, unexpected errors {}",
        n(&t.hangs),
        n(&t.wrong),
        n(&t.unexpected)
    );
    println!(
        "tasks      per node before the load {:?}, after it {:?}, after shutdown {:?}",
        f.tasks_before, f.tasks_after, f.tasks_shut_down
    );
    println!(
        "links      open through each proxy when idle {:?}, after shutdown {:?}",
        f.open_before_shutdown, f.open_after_shutdown
    );
    println!(
        "heap       {:.1} MiB before the load, {:.1} MiB after warm-up, {:.1} MiB idle after the run \
         (bounds: {:.1} = 2 x after warm-up + 16, {:.1} = before + 4); rss {:.1} MiB",
        f.heap_before as f64 / MIB,
        f.heap_warm as f64 / MIB,
        f.heap_after as f64 / MIB,
        (2 * f.heap_warm + 16 * 1024 * 1024) as f64 / MIB,
        (f.heap_before + 4 * 1024 * 1024) as f64 / MIB,
        f.rss_after as f64 / MIB
    );
    println!("\n|      t | calls ok | calls failed | streams ok | faults | reconnects |  rss MiB | heap MiB | peak MiB |");
    println!("|-------:|---------:|-------------:|-----------:|-------:|-----------:|---------:|---------:|---------:|");
    for s in samples {
        println!(
            "| {:5.0}s | {:>8} | {:>12} | {:>10} | {:>6} | {:>10} | {:>8.1} | {:>8.1} | {:>8.1} |",
            s.t,
            s.calls_ok,
            s.calls_failed,
            s.streams_ok,
            s.faults,
            s.reconnects,
            s.rss as f64 / MIB,
            s.heap as f64 / MIB,
            s.peak as f64 / MIB
        );
    }
}
