//! What the side-by-side benchmarks share: rounds interleaved between the two sides,
//! medians, and the machine's load average to read the figures against.

/// Runs `theirs` and `ours` `rounds` times each, interleaved (theirs first in even rounds,
/// ours first in odd ones), so drift in the machine's load hits both alike. Returns the
/// medians of each side and of the per-round ratios ours / theirs.
pub(crate) fn side_by_side(
    rounds: usize,
    mut theirs: impl FnMut() -> f64,
    mut ours: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut a, mut b, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (t, o) = if round % 2 == 0 {
            let t = theirs();
            (t, ours())
        } else {
            let o = ours();
            (theirs(), o)
        };
        a.push(t);
        b.push(o);
        ratios.push(o / t);
    }
    (median(a), median(b), median(ratios))
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// The load average (1, 5, 15 minutes).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The runtime both sides run on (two workers, as the machine the figures are for), or
/// `None` when the bench is only being listed (`cargo bench -- --list` and
/// `cargo test --benches` probe benches that way).
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Some(rt)
}
