//! Subscription-index lookup: one subject against 1k, 10k and 100k registered
//! patterns (mixed literals, `*` and `>`), and against 10k patterns for subjects of
//! 2, 4 and 8 tokens, to show the cost follows tokens rather than subscriptions.
//!
//!     cargo bench -p busbar-benches --bench index

use busbar::subject::SubjectIndex;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Distinct words per token position: large enough that patterns rarely repeat, so a
/// lookup visits few values and what is timed is the walk itself.
const VOCABULARY: u64 = 1000;

/// `n` patterns over a vocabulary like real services use: about 70% literal, 20% with
/// one `*`, 10% ending in `>`, spread over 1 to 8 tokens.
fn patterns(n: usize) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    (0..n)
        .map(|i| {
            let len = 1 + rand(8) as usize;
            let mut tokens: Vec<String> = (0..len).map(|t| format!("t{}x{}", t, rand(VOCABULARY))).collect();
            // Wildcards never stand first: a catch-all `>` or `*` is rare in real services.
            match i % 10 {
                _ if len == 1 => {}
                0..=1 => tokens[1 + rand(len as u64 - 1) as usize] = "*".into(),
                2 => *tokens.last_mut().unwrap() = ">".into(),
                _ => {}
            }
            tokens.join(".")
        })
        .collect()
}

/// A subject of `tokens` tokens equal to a registered literal pattern, so the walk goes
/// all the way down (the generator yields the same first patterns for every `n`).
fn subject(tokens: usize) -> String {
    patterns(1_000)
        .into_iter()
        .find(|p| p.split('.').count() == tokens && !p.contains(['*', '>']))
        .expect("a literal pattern of that length")
}

/// A subject no literal pattern starts with: only `*`/`>` branches are walked.
fn miss(tokens: usize) -> String {
    (0..tokens)
        .map(|t| format!("none{t}"))
        .collect::<Vec<_>>()
        .join(".")
}

fn build(n: usize) -> SubjectIndex<usize> {
    let mut index = SubjectIndex::new();
    for (i, p) in patterns(n).iter().enumerate() {
        index.insert(p, i).unwrap();
    }
    index
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_lookup");
    for n in [1_000usize, 10_000, 100_000] {
        let index = build(n);
        for (name, s) in [("4_tokens", subject(4)), ("4_tokens_miss", miss(4))] {
            let mut hits = 0;
            index.for_each_match(&s, |_| hits += 1);
            eprintln!("{n} patterns: {s} matches {hits}");
            group.bench_with_input(BenchmarkId::new(name, n), &index, |b, index| {
                b.iter(|| {
                    let mut hits = 0usize;
                    index.for_each_match(black_box(&s), |_| hits += 1);
                    hits
                })
            });
        }
    }
    let index = build(10_000);
    for tokens in [1usize, 2, 4, 8] {
        let s = subject(tokens);
        let mut hits = 0;
        index.for_each_match(&s, |_| hits += 1);
        eprintln!("10000 patterns: {tokens}-token subject matches {hits}");
        group.bench_with_input(BenchmarkId::new("10k_patterns_tokens", tokens), &s, |b, s| {
            b.iter(|| {
                let mut hits = 0usize;
                index.for_each_match(black_box(s), |_| hits += 1);
                hits
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
