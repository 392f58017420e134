//! Writes deterministic benchmark data to standard output: rows of ten mixed columns
//! (integers, decimals, floats, booleans, timestamps and strings that need CSV quoting) as
//! CSV with a header or as JSON Lines, until about the requested number of bytes.
//!
//! `cargo run --release --example bench_data -- csv 1000000 > data.csv` writes about a million
//! bytes; `… -- jsonl 5000 rows` writes exactly 5,000 rows — the same rows, in the same order,
//! as the first 5,000 of any CSV output. Used by `scripts/bench` and `scripts/bench-memory`;
//! not part of the daemon. The same arguments always give the same bytes (a fixed-seed
//! xorshift generator, no dependency).

use std::io::{self, BufWriter, Write};

const CATEGORIES: &[&str] = &["kitchen", "garden", "toys", "books", "tools", "office"];
const WORDS: &[&str] = &[
    "tea",
    "pot",
    "blue",
    "large",
    "set",
    "of",
    "two",
    "classic",
    "steel",
    "oak",
    "\"deluxe\"",
    "mini",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (format, limit) = match (
        args.get(1).map(String::as_str),
        args.get(2).and_then(|b| b.parse::<u64>().ok()),
    ) {
        (Some(f @ ("csv" | "jsonl")), Some(b)) => (f.to_string(), b),
        _ => {
            eprintln!("usage: bench_data csv|jsonl LIMIT [bytes|rows]");
            std::process::exit(2);
        }
    };
    let by_rows = args.get(3).is_some_and(|u| u == "rows");
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut written = 0u64;
    if format == "csv" {
        let header = "id,sku,name,price,quantity,weight_kg,in_stock,category,updated_at,note\n";
        out.write_all(header.as_bytes())?;
        written += header.len() as u64;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut id = 0u64;
    let mut line = String::with_capacity(512);
    while if by_rows { id < limit } else { written < limit } {
        id += 1;
        let name: Vec<&str> = (0..2 + rng.below(4))
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        let name = name.join(" ");
        let price = format!("{}.{:02}", rng.below(1000), rng.below(100));
        let quantity = rng.below(10_000);
        let weight = rng.below(100_000) as f64 / 1000.0;
        let in_stock = rng.below(2) == 1;
        let category = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
        let t = 1_767_225_600 + rng.below(31_536_000);
        let ts = format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            1 + (t / 2_678_400) % 12,
            1 + (t / 86_400) % 28,
            (t / 3600) % 24,
            (t / 60) % 60,
            t % 60
        );
        let note = if rng.below(4) == 0 {
            "fragile, handle with care"
        } else {
            ""
        };
        line.clear();
        if format == "csv" {
            let quote = |s: &str| {
                if s.contains([',', '"']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            line.push_str(&format!(
                "{id},SKU-{:08},{},{price},{quantity},{weight},{in_stock},{category},{ts},{}\n",
                id * 7919 % 100_000_000,
                quote(&name),
                quote(note)
            ));
        } else {
            line.push_str(&format!(
                "{{\"id\":{id},\"sku\":\"SKU-{:08}\",\"name\":{},\"price\":\"{price}\",\"quantity\":{quantity},\"weight_kg\":{weight},\"in_stock\":{in_stock},\"category\":\"{category}\",\"updated_at\":\"{ts}\",\"note\":\"{note}\"}}\n",
                id * 7919 % 100_000_000,
                serde_json::to_string(&name).unwrap_or_default()
            ));
        }
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()
}
