//! seedio — the five seed registries' own Rust code, driven from the command line.
//!
//! procreg's presets claim that a C++ program and the original Rust program can
//! share one registry. This tool is the Rust side of that claim: each module
//! holds a copy of one seed's data types and of the code paths that read and
//! write its files (copied from /work/shared/seeds, with the parts the seed
//! files leave out filled in as each module's header says), so
//! tests/interop/interop_test.cpp can make the Rust code write a file that
//! procreg must read, and read a file procreg wrote.
//!
//!     seedio <seed> <verb> <args...>
//!
//! Seeds: algocline, yoi, insomnia, trusty, agentmux; `seedio <seed>` lists
//! the verbs. Every seed has `write` (the seed's own writer) and `check`
//! (load with the seed's own reader, compare with the expected value, exit 1
//! with both printed on mismatch).
//!
//! `seedio bench ...` runs algocline's operations for procreg's benchmarks
//! (module bench; `seedio bench` lists its verbs).
//!
//! Exit codes: 0 done; 1 failed or mismatch (message on stderr); 2 usage;
//! 3 refused by the seed's own rules (a live holder, a busy lock, a duplicate).
//!
//! Written for Rust 1.63 (Debian 12's rustc) and later: no let-else and no
//! library API newer than 1.63.

// Each module keeps its seed's API whole, including what no verb calls.
#![allow(dead_code)]

mod agentmux;
mod algocline;
mod bench;
mod insomnia;
mod trusty;
mod util;
mod yoi;

use util::Failure;

fn usage() -> Failure {
    Failure::Usage(
        "usage: seedio <algocline|yoi|insomnia|trusty|agentmux|bench> <verb> <args...>".to_string(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = if args.is_empty() { &args[..] } else { &args[1..] };
    let result = match args.first().map(String::as_str) {
        Some("algocline") => algocline::run(rest),
        Some("yoi") => yoi::run(rest),
        Some("insomnia") => insomnia::run(rest),
        Some("trusty") => trusty::run(rest),
        Some("agentmux") => agentmux::run(rest),
        Some("bench") => bench::run(rest),
        _ => Err(usage()),
    };
    std::process::exit(util::report(result));
}
