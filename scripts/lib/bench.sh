# Shared by scripts/bench and scripts/bench-memory (sourced, not run): building the release
# binaries, generating data once, and running one import case under /usr/bin/time.
#
# After `bench_setup DIR`: $bin (s3-importd), $gen (bench_data), $ceiling (bench_ceiling),
# $work (DIR, absolute). `run_case NAME SOURCE_TOML FORMAT [SETTINGS]` imports into a fresh
# state and sets: case_seconds, case_rss_kb, case_cpu (percent), case_rows, case_bytes_in.

mb=$((1024 * 1024))

bench_setup() {
    work=$(mkdir -p "$1" && cd "$1" && pwd)
    # BENCH_PROFILE=debug uses the debug build (CI's smoke runs, which have it already);
    # figures worth quoting come from the release build.
    local profile=${BENCH_PROFILE:-release}
    if [[ $profile == release ]]; then
        cargo build --release --quiet --bin s3-importd --example bench_data --example bench_ceiling
    else
        cargo build --quiet --bin s3-importd --example bench_data --example bench_ceiling
    fi
    local out=$PWD/target/$profile
    [[ $profile == release ]] || out=$PWD/target/debug
    # BENCH_BIN=path measures another build (e.g. an earlier commit's) with the same cases.
    bin=${BENCH_BIN:-$out/s3-importd}
    gen=$out/examples/bench_data
    ceiling=$out/examples/bench_ceiling
    mkdir -p "$work/data"
}

# gen_file FORMAT LIMIT UNIT FILE [gzip]: writes FILE once (kept for later runs).
gen_file() {
    local format=$1 limit=$2 unit=$3 file=$4 compress=${5:-}
    if [[ -s $file ]]; then return; fi
    echo "generating $file" >&2
    if [[ -n $compress ]]; then
        "$gen" "$format" "$limit" "$unit" | gzip -1 > "$file.tmp"
    else
        "$gen" "$format" "$limit" "$unit" > "$file.tmp"
    fi
    mv "$file.tmp" "$file"
}

# The ten-column template of bench_data's rows.
bench_template() {
    cat <<'TOML'
[template]
table = "products"
max_bad_rows = "0"
[[template.fields]]
name = "id"
type = "integer"
required = true
[[template.fields]]
name = "sku"
type = "string"
[[template.fields]]
name = "name"
type = "string"
[[template.fields]]
name = "price"
type = "decimal"
TOML
    # A Parquet output needs the decimal's precision and scale (its DECIMAL column has them).
    [[ -z ${bench_decimal_shape:-} ]] || printf 'precision = 12\nscale = 2\n'
    cat <<'TOML'
[[template.fields]]
name = "quantity"
type = "integer"
[[template.fields]]
name = "weight_kg"
type = "float"
[[template.fields]]
name = "in_stock"
type = "boolean"
[[template.fields]]
name = "category"
type = "string"
values = ["kitchen", "garden", "toys", "books", "tools", "office"]
[[template.fields]]
name = "updated_at"
type = "timestamp"
[[template.fields]]
name = "note"
type = "string"
TOML
}

# run_case NAME SOURCE_TOML FORMAT [SETTINGS_TOML]: one import into a `file` target, fresh
# state. SOURCE_TOML is the body of [source].
# gen_many N DIR: N small CSV objects (4 KiB each) in folders of 1,000, written once.
gen_many() {
    local n=$1 dir=$2
    [[ -d $dir ]] && return 0
    echo "generating $n small objects" >&2
    mkdir -p "$dir.tmp"
    "$gen" csv 4096 bytes > "$dir.one.csv"
    python3 - "$dir.tmp" "$n" "$dir.one.csv" <<'PY'
import sys, os
folder, n, one = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
for i in range(n):
    sub = os.path.join(folder, f"{i // 1000:03d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"{i:06d}.csv"), "wb") as f:
        f.write(one)
PY
    mv "$dir.tmp" "$dir"
}

# The state line of a case's s3-importd.toml: a SQLite file unless `case_state` says otherwise
# (scripts/bench-state sets a postgres:// URL).
run_case() {
    local name=$1 source=$2 format=$3 settings=${4:-} target_extra=${5:-}
    local dir=$work/run-$name
    rm -rf "$dir"
    mkdir -p "$dir/connections"
    printf '%s\n%s\n' "${case_state:-state = \"state/state.db\"}" "$settings" > "$dir/s3-importd.toml"
    {
        printf 'settle_seconds = 0\nbackfill_days = 36500\n[source]\n%s\n[format]\ntype = "%s"\n' "$source" "$format"
        bench_template
        printf '[target]\ntype = "file"\npath = "out"\n%s\n' "$target_extra"
    } > "$dir/connections/bench.toml"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f '%M %P' -o "$dir/time" "$bin" --config "$dir" run > "$dir/summary" 2> "$dir/log"
    end=$(date +%s.%N)
    read -r case_rss_kb case_cpu < "$dir/time"
    case_cpu=${case_cpu%\%}
    case_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    case_rows=$(grep -o 'rows [0-9]*' "$dir/summary" | head -1 | cut -d' ' -f2)
    # Outputs are as large as the input: keep the disk for the next case, unless the caller
    # looks at the output (case_keep_out=1; it removes $case_out itself).
    case_out=$dir/out
    [[ -n ${case_keep_out:-} ]] || rm -rf "$dir/out"
    rm -rf "$dir/state/spool" "$dir/spool"
}

# start_s3s ROOT: serves the folders of ROOT as buckets from s3s-fs (a Rust S3 server on the
# file system, installed into target/bench-tools on first use) on 127.0.0.1, credentials
# bench / benchsecret, until the script exits. Sets s3s_port. moto is too slow at large
# bodies: through it a benchmark measures moto.
start_s3s() {
    local s3s=target/bench-tools/bin/s3s-fs
    if [[ ! -x $s3s ]]; then
        cargo install --quiet s3s-fs --version 0.14.1 --features binary --root target/bench-tools
    fi
    s3s_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$s3s" --host 127.0.0.1 --port "$s3s_port" --access-key bench --secret-key benchsecret "$1" > "$work/s3s.log" 2>&1 &
    s3s_pid=$!
    trap 'kill "$s3s_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        (echo > "/dev/tcp/127.0.0.1/$s3s_port") 2>/dev/null && break
        sleep 0.1
    done
}
