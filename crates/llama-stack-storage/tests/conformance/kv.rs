//! The [`KvStore`] conformance suite, written once and run against every backend by
//! `tests/kv_backends.rs` (one test function per backend).
//!
//! A new backend plugs in with one test function that opens it and calls
//! [`run_kv_suite`]. Each check runs in a fresh namespace ([`NamespacedKv`]), so checks
//! and repeated runs on a shared server never see each other's keys. Set
//! `LLAMA_STACK_TEST_BACKEND=kv_sled` (comma-separated) to run only some backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use llama_stack_core::storage::{KvStore, NamespacedKv};
use llama_stack_core::ErrorKind;

/// A short TTL for expiry checks, and how long to wait for it to pass.
const SHORT_TTL: Duration = Duration::from_millis(1100);
const AFTER_SHORT_TTL: Duration = Duration::from_millis(1600);
/// A TTL no check outlives.
const LONG_TTL: Duration = Duration::from_secs(3600);

type Store = Arc<dyn KvStore>;
type Check = fn(Store) -> BoxFuture<'static, ()>;

/// Whether `backend` is selected by `LLAMA_STACK_TEST_BACKEND` (unset = every backend).
pub(crate) fn selected(backend: &str) -> bool {
    match std::env::var("LLAMA_STACK_TEST_BACKEND") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|b| b.trim() == backend),
        _ => true,
    }
}

/// Runs every check against `store`, each in a fresh namespace.
pub(crate) async fn run_kv_suite(store: Store) {
    let checks: &[(&str, Check)] = &[
        ("get_set_overwrite_delete", |s| {
            Box::pin(get_set_overwrite_delete(s))
        }),
        ("empty_unicode_and_large_values", |s| {
            Box::pin(empty_unicode_and_large_values(s))
        }),
        ("ttl_expiry", |s| Box::pin(ttl_expiry(s))),
        ("set_if_absent", |s| Box::pin(set_if_absent(s))),
        ("set_if_absent_after_expiry", |s| {
            Box::pin(set_if_absent_after_expiry(s))
        }),
        ("set_if_absent_concurrent", |s| {
            Box::pin(set_if_absent_concurrent(s))
        }),
        ("increment", |s| Box::pin(increment(s))),
        ("increment_ttl", |s| Box::pin(increment_ttl(s))),
        ("increment_concurrent", |s| {
            Box::pin(increment_concurrent(s))
        }),
        ("scan_prefix", |s| Box::pin(scan_prefix(s))),
        ("scan_range", |s| Box::pin(scan_range(s))),
    ];
    let backend = store.backend();
    for (name, check) in checks {
        eprintln!("[{backend}] kv check {name}");
        check(Arc::new(NamespacedKv::new(
            store.clone(),
            &fresh_namespace(name),
        )))
        .await;
    }
}

fn fresh_namespace(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conformance-{check}-{nanos}-{n}")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn get_set_overwrite_delete(kv: Store) {
    assert_eq!(kv.get("missing").await.unwrap(), None);
    kv.set("k", "v1", None).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("v1"));
    kv.set("k", "v2", None).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("v2"));
    kv.set("other", "x", None).await.unwrap();
    kv.delete("k").await.unwrap();
    assert_eq!(kv.get("k").await.unwrap(), None);
    assert_eq!(kv.get("other").await.unwrap().as_deref(), Some("x"));
    // Deleting an absent key is not an error.
    kv.delete("k").await.unwrap();
    kv.delete("never-set").await.unwrap();
    // A deleted key can be set again.
    kv.set("k", "v3", None).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("v3"));
}

async fn empty_unicode_and_large_values(kv: Store) {
    kv.set("empty", "", None).await.unwrap();
    assert_eq!(kv.get("empty").await.unwrap().as_deref(), Some(""));
    assert_eq!(
        kv.scan_prefix("empty").await.unwrap(),
        pairs(&[("empty", "")])
    );

    let cases = [
        ("ключ", "значение"),
        ("🔑/emoji", "🦙 llama\nsecond line\t\"quoted\" 'single'"),
        ("日本語:キー", "値 with NUL \u{0} inside"),
        (
            "sql'; DROP TABLE kvstore; --",
            "x'); DELETE FROM kvstore; --",
        ),
        ("{\"json\": true}", "{\"nested\": [1, 2, {\"a\": null}]}"),
    ];
    for (k, v) in cases {
        kv.set(k, v, None).await.unwrap();
    }
    for (k, v) in cases {
        assert_eq!(kv.get(k).await.unwrap().as_deref(), Some(v), "key {k:?}");
    }

    let large = "0123456789abcdef".repeat(64 * 1024); // 1 MiB
    kv.set("large", &large, None).await.unwrap();
    assert_eq!(
        kv.get("large").await.unwrap().as_deref(),
        Some(large.as_str())
    );
}

async fn ttl_expiry(kv: Store) {
    kv.set("short", "gone soon", Some(SHORT_TTL)).await.unwrap();
    kv.set("long", "stays", Some(LONG_TTL)).await.unwrap();
    kv.set("forever", "stays", None).await.unwrap();
    // Overwriting without a TTL removes the expiry.
    kv.set("renewed", "first", Some(SHORT_TTL)).await.unwrap();
    kv.set("renewed", "second", None).await.unwrap();
    // Overwriting with a TTL adds one.
    kv.set("doomed", "first", None).await.unwrap();
    kv.set("doomed", "second", Some(SHORT_TTL)).await.unwrap();

    tokio::time::sleep(AFTER_SHORT_TTL).await;

    assert_eq!(kv.get("short").await.unwrap(), None);
    assert_eq!(kv.get("doomed").await.unwrap(), None);
    assert_eq!(kv.get("long").await.unwrap().as_deref(), Some("stays"));
    assert_eq!(kv.get("forever").await.unwrap().as_deref(), Some("stays"));
    assert_eq!(kv.get("renewed").await.unwrap().as_deref(), Some("second"));
    let expected = pairs(&[
        ("forever", "stays"),
        ("long", "stays"),
        ("renewed", "second"),
    ]);
    assert_eq!(kv.scan_prefix("").await.unwrap(), expected);
    assert_eq!(kv.scan_range("a", "z").await.unwrap(), expected);
    // An expired key can be set again.
    kv.set("short", "back", None).await.unwrap();
    assert_eq!(kv.get("short").await.unwrap().as_deref(), Some("back"));
}

async fn set_if_absent(kv: Store) {
    assert!(kv.set_if_absent("k", "first", None).await.unwrap());
    assert!(!kv.set_if_absent("k", "second", None).await.unwrap());
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("first"));
    // A live key with a TTL is present.
    assert!(kv
        .set_if_absent("ttl", "first", Some(LONG_TTL))
        .await
        .unwrap());
    assert!(!kv.set_if_absent("ttl", "second", None).await.unwrap());
    assert_eq!(kv.get("ttl").await.unwrap().as_deref(), Some("first"));
    // An empty value is a value.
    kv.set("empty", "", None).await.unwrap();
    assert!(!kv.set_if_absent("empty", "x", None).await.unwrap());
    // After delete it is absent again.
    kv.delete("k").await.unwrap();
    assert!(kv.set_if_absent("k", "third", None).await.unwrap());
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("third"));
}

async fn set_if_absent_after_expiry(kv: Store) {
    assert!(kv
        .set_if_absent("lock", "holder-1", Some(SHORT_TTL))
        .await
        .unwrap());
    tokio::time::sleep(AFTER_SHORT_TTL).await;
    // The expired entry counts as absent, and the new one carries its own TTL (none).
    assert!(kv.set_if_absent("lock", "holder-2", None).await.unwrap());
    assert_eq!(kv.get("lock").await.unwrap().as_deref(), Some("holder-2"));
    assert!(!kv.set_if_absent("lock", "holder-3", None).await.unwrap());
}

async fn set_if_absent_concurrent(kv: Store) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move {
                (
                    i,
                    kv.set_if_absent("race", &format!("winner-{i}"), None)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one set_if_absent wins: {winners:?}"
    );
    let expected = format!("winner-{}", winners[0]);
    assert_eq!(kv.get("race").await.unwrap(), Some(expected));
}

async fn increment(kv: Store) {
    assert_eq!(kv.increment("n", 1, None).await.unwrap(), 1);
    assert_eq!(kv.increment("n", 1, None).await.unwrap(), 2);
    assert_eq!(kv.increment("n", 40, None).await.unwrap(), 42);
    assert_eq!(kv.increment("n", -50, None).await.unwrap(), -8);
    assert_eq!(kv.get("n").await.unwrap().as_deref(), Some("-8"));
    assert_eq!(kv.increment("fresh", -3, None).await.unwrap(), -3);
    assert_eq!(kv.increment("zero", 0, None).await.unwrap(), 0);
    // A value written with set counts if it is an integer.
    kv.set("manual", "10", None).await.unwrap();
    assert_eq!(kv.increment("manual", 5, None).await.unwrap(), 15);
    // A non-integer value is rejected and left alone.
    kv.set("text", "not a number", None).await.unwrap();
    let err = kv.increment("text", 1, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert_eq!(
        kv.get("text").await.unwrap().as_deref(),
        Some("not a number")
    );
    // Overflow is an error, not a wrap-around.
    kv.set("max", &i64::MAX.to_string(), None).await.unwrap();
    assert!(kv.increment("max", 1, None).await.is_err());
    assert_eq!(kv.get("max").await.unwrap(), Some(i64::MAX.to_string()));
}

async fn increment_ttl(kv: Store) {
    // The TTL applies when the key is created; a later increment keeps that expiry.
    assert_eq!(kv.increment("window", 1, Some(SHORT_TTL)).await.unwrap(), 1);
    assert_eq!(kv.increment("window", 1, None).await.unwrap(), 2);
    assert_eq!(kv.increment("window", 1, Some(LONG_TTL)).await.unwrap(), 3);
    assert_eq!(kv.increment("steady", 1, Some(LONG_TTL)).await.unwrap(), 1);
    tokio::time::sleep(AFTER_SHORT_TTL).await;
    assert_eq!(kv.get("window").await.unwrap(), None);
    // After expiry the counter starts again from the delta.
    assert_eq!(kv.increment("window", 5, None).await.unwrap(), 5);
    assert_eq!(kv.increment("steady", 1, None).await.unwrap(), 2);
}

async fn increment_concurrent(kv: Store) {
    const TASKS: i64 = 50;
    const PER_TASK: i64 = 4;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..PER_TASK {
                    seen.push(kv.increment("counter", 1, Some(LONG_TTL)).await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in tasks {
        for v in t.await.unwrap() {
            assert!(all.insert(v), "value {v} returned twice");
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(all, (1..=total).collect::<BTreeSet<_>>());
    assert_eq!(kv.get("counter").await.unwrap(), Some(total.to_string()));
}

/// Keys sharing prefixes, including characters near and beyond `\u{ff}`.
const SCAN_KEYS: [&str; 16] = [
    "a",
    "ab",
    "ab\u{7f}",
    "abc",
    "abd",
    "ac",
    "a\u{fe}",
    "a\u{ff}",
    "a\u{ff}\u{ff}",
    "a\u{ff}z",
    "a\u{100}",
    "a\u{10ffff}",
    "b",
    "b/1",
    "b/10",
    "b/2",
];

fn expected_scan(keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut keys: Vec<&str> = SCAN_KEYS.iter().copied().filter(|k| keep(k)).collect();
    keys.sort(); // byte order, the order every backend must scan in
    keys.iter()
        .map(|k| (k.to_string(), format!("v:{k}")))
        .collect()
}

async fn scan_prefix(kv: Store) {
    // Written out of order.
    for k in SCAN_KEYS.iter().rev() {
        kv.set(k, &format!("v:{k}"), None).await.unwrap();
    }
    let check = |prefix: &'static str| {
        let kv = kv.clone();
        async move {
            let got = kv.scan_prefix(prefix).await.unwrap();
            assert_eq!(
                got,
                expected_scan(|k| k.starts_with(prefix)),
                "prefix {prefix:?}"
            );
        }
    };
    check("").await;
    check("a").await;
    check("ab").await;
    check("abc").await;
    check("a\u{ff}").await;
    check("a\u{ff}\u{ff}").await;
    check("a\u{10ffff}").await;
    check("b/1").await;
    check("b/").await;
    check("c").await;
    check("abcd").await;
    // Byte order: "abc" and "abd" sort before "ab\u{7f}" ('c' is 0x63, DEL is 0x7f).
    let all: Vec<String> = kv
        .scan_prefix("")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(&all[..4], ["a", "ab", "abc", "abd"]);
    // Deleted keys disappear from scans.
    kv.delete("abc").await.unwrap();
    assert_eq!(
        kv.scan_prefix("ab").await.unwrap(),
        pairs(&[("ab", "v:ab"), ("abd", "v:abd"), ("ab\u{7f}", "v:ab\u{7f}")])
    );
}

async fn scan_range(kv: Store) {
    for k in SCAN_KEYS {
        kv.set(k, &format!("v:{k}"), None).await.unwrap();
    }
    let check = |start: &'static str, end: &'static str| {
        let kv = kv.clone();
        async move {
            let got = kv.scan_range(start, end).await.unwrap();
            let want = expected_scan(|k| start <= k && k < end);
            assert_eq!(got, want, "range {start:?}..{end:?}");
        }
    };
    check("a", "b").await; // start inclusive, end exclusive
    check("ab", "ac").await;
    check("abc", "abd").await;
    check("a\u{ff}", "a\u{100}").await;
    check("a\u{ff}", "a\u{10ffff}").await;
    check("b/1", "b/2").await;
    check("", "\u{10ffff}").await;
    check("0", "a").await;
    check("zz", "zzz").await;
    // An empty or inverted range is empty, not an error.
    assert!(kv.scan_range("b", "b").await.unwrap().is_empty());
    assert!(kv.scan_range("b", "a").await.unwrap().is_empty());
}
