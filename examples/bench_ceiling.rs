//! The parse ceiling the end-to-end benchmark is compared with: the fastest this machine
//! reads the same file with the same parsers, doing nothing else.
//!
//! `bench_ceiling csv FILE`: the csv crate reading `ByteRecord`s into one reused record.
//! `bench_ceiling jsonl FILE`: serde_json parsing each line into a typed struct.
//! `bench_ceiling jsonl-sonic FILE`: the same with sonic-rs (SIMD), to see how far a faster
//! JSON parser would move the ceiling.
//! Prints one line: `rows=N bytes=N seconds=S`. Used by `scripts/bench`; not part of the
//! daemon.

use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::time::Instant;

/// One row of `bench_data`'s output.
#[allow(dead_code)]
#[derive(Deserialize)]
struct Product {
    id: i64,
    sku: String,
    name: String,
    price: String,
    quantity: i64,
    weight_kg: f64,
    in_stock: bool,
    category: String,
    updated_at: String,
    note: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bench_ceiling csv|jsonl|jsonl-sonic FILE");
        std::process::exit(2);
    };
    let bytes = std::fs::metadata(path)?.len();
    let file = std::fs::File::open(path)?;
    let start = Instant::now();
    let mut rows = 0u64;
    match kind.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().from_reader(file);
            let mut record = csv::ByteRecord::new();
            while reader.read_byte_record(&mut record)? {
                rows += 1;
            }
        }
        "jsonl" | "jsonl-sonic" => {
            let sonic = kind == "jsonl-sonic";
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                let product: Product = if sonic {
                    sonic_rs::from_slice(&line)?
                } else {
                    serde_json::from_slice(&line)?
                };
                std::hint::black_box(&product);
                rows += 1;
            }
        }
        other => {
            eprintln!("unknown kind {other:?}; use csv, jsonl or jsonl-sonic");
            std::process::exit(2);
        }
    }
    println!(
        "rows={rows} bytes={bytes} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
