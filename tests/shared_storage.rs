//! Several `Stack`s on one PostgreSQL and one Redis behave as one system: resources
//! registered on one are listed and served by the others, concurrent registrations of
//! one id have exactly one winner, unregistrations propagate; and a Stack rides out a
//! restart of its database: calls fail with `Unavailable` while it is down and work
//! again once it is back, without rebuilding the Stack.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (database `test`, user `postgres`) and Redis on
//! 127.0.0.1:6379; the fault test starts private servers of its own. Run with
//! `cargo test --test shared_storage --features postgres-redis`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../crates/llama-stack-storage/tests/support/services.rs"]
mod services;

use std::time::{Duration, Instant};

use common::echo_spec;
use llama_stack::core::api::models::RegisterModelRequest;
use llama_stack::core::routing_table::SHARED_MAX_STALENESS;
use llama_stack::prelude::*;
use llama_stack::ErrorKind;

/// Where the registry (`storage.stores.metadata`) lives.
#[derive(Clone, Copy, Debug)]
enum Registry {
    Postgres,
    Redis,
}

/// A run config whose stores all live on PostgreSQL at `pg_port` and Redis at
/// `redis_port`, with names unique to `run`.
fn config(pg_port: u16, redis_port: u16, registry: Registry, run: &str) -> String {
    let metadata = match registry {
        Registry::Postgres => "kv_pg",
        Registry::Redis => "kv_redis",
    };
    format!(
        r#"version: 2
distro_name: shared
providers:
  inference:
  - provider_id: echo
    provider_type: inline::echo
    config:
      models: [listed-1]
storage:
  backends:
    kv_pg:
      type: kv_postgres
      host: 127.0.0.1
      port: "{pg_port}"
      db: test
      user: postgres
      table_name: kv_{run}
    kv_redis: {{type: kv_redis, host: 127.0.0.1, port: {redis_port}}}
    sql_pg: {{type: sql_postgres, host: 127.0.0.1, port: {pg_port}, db: test, user: postgres, pool_size: 2, max_overflow: 2}}
  stores:
    metadata: {{backend: {metadata}, namespace: registry_{run}}}
    inference: {{backend: sql_pg, table_name: inference_{run}}}
    conversations: {{backend: sql_pg, table_name: conversations_{run}}}
    prompts: {{backend: kv_redis, namespace: prompts_{run}}}
    connectors: {{backend: kv_redis, namespace: connectors_{run}}}
"#
    )
}

async fn build(yaml: &str) -> Result<Stack> {
    Stack::builder()
        .config_yaml(yaml)
        .with_provider(echo_spec())
        .build()
        .await
}

async fn listed(stack: &Stack) -> Vec<String> {
    common::model_ids(stack.models()).await
}

/// Drops what a run left on the shared servers.
async fn clean_up(run: &str) {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let task = tokio::spawn(conn);
    for table in [format!("kv_{run}"), format!("inference_{run}")] {
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\"; \
                 DELETE FROM _llama_stack_schema WHERE table_name = '{table}'"
            ))
            .await
            .unwrap();
    }
    drop(client);
    let _ = task.await;
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for pattern in [
        format!("registry_{run}:*"),
        format!("prompts_{run}:*"),
        format!("connectors_{run}:*"),
    ] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn two_stacks_are_one_system(registry: Registry) {
    let run = format!("multi_{}", services::unique_suffix());
    let yaml = config(services::PG_PORT, services::REDIS_PORT, registry, &run);
    stacks_on_one_config_are_one_system(&yaml).await;
    clean_up(&run).await;
}

/// Two stacks built from `yaml`, whose stores are shared, then a third built later.
async fn stacks_on_one_config_are_one_system(yaml: &str) {
    let a = build(yaml).await.unwrap();
    let b = build(yaml).await.unwrap();

    // Registered on A: B serves it at once and lists it.
    let from_a = a
        .models()
        .register(RegisterModelRequest::new("from-a"))
        .await
        .unwrap()
        .identifier;
    assert_eq!(b.models().get(&from_a).await.unwrap().identifier, from_a);
    assert!(listed(&b).await.contains(&from_a));
    let from_b = b
        .models()
        .register(RegisterModelRequest::new("from-b"))
        .await
        .unwrap()
        .identifier;
    assert_eq!(listed(&a).await, listed(&b).await);
    assert!(listed(&a).await.contains(&from_b));

    // The same id registered on both at once: exactly one wins, the other conflicts.
    for i in 0..10 {
        let id = format!("race-{i}");
        let (ma, mb) = (a.models(), b.models());
        let (ia, ib) = (id.clone(), id.clone());
        let ta = tokio::spawn(async move { ma.register(RegisterModelRequest::new(ia)).await });
        let tb = tokio::spawn(async move { mb.register(RegisterModelRequest::new(ib)).await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let outcomes = [ra.map(|_| ()), rb.map(|_| ())];
        let won = outcomes.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{id}: {outcomes:?}");
        for r in &outcomes {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{id}: {e}");
            }
        }
    }
    assert_eq!(listed(&a).await, listed(&b).await);

    // Unregistered on B: gone from A's listing at once, and from A's lookups once its
    // cached entry is older than the max staleness.
    assert_eq!(a.models().get(&from_a).await.unwrap().identifier, from_a);
    b.models().unregister(&from_a).await.unwrap();
    assert!(!listed(&a).await.contains(&from_a));
    tokio::time::sleep(SHARED_MAX_STALENESS + Duration::from_millis(100)).await;
    let err = a.models().get(&from_a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // A third stack built later sees the registry as it is.
    let c = build(yaml).await.unwrap();
    assert_eq!(listed(&c).await, listed(&a).await);

    // Listings stay current through a run of writes by the others, whichever stack lists.
    for i in 0..20 {
        let (writer, reader) = if i % 2 == 0 { (&c, &a) } else { (&a, &b) };
        let before = listed(reader).await;
        let id = writer
            .models()
            .register(RegisterModelRequest::new(format!("burst-{i}")))
            .await
            .unwrap()
            .identifier;
        let after = listed(reader).await;
        assert!(!before.contains(&id) && after.contains(&id), "{id}");
        writer.models().unregister(&id).await.unwrap();
        assert!(!listed(reader).await.contains(&id), "{id}");
        assert_eq!(listed(reader).await, before);
    }
    drop((a, b, c));
}

/// Stacks sharing one `kv_sqlite` file (as processes on one host do) are one system too:
/// their listings, served from cache while SQLite's data version is unchanged, still
/// see every write by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stacks_sharing_sqlite_registry_are_one_system() {
    let dir = tempfile::tempdir().unwrap();
    stacks_on_one_config_are_one_system(&common::echo_config(dir.path(), "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stacks_sharing_postgres_registry_are_one_system() {
    let test = "stacks_sharing_postgres_registry_are_one_system";
    if !services::postgres_available(test) || !services::redis_available(test) {
        return;
    }
    two_stacks_are_one_system(Registry::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stacks_sharing_redis_registry_are_one_system() {
    let test = "stacks_sharing_redis_registry_are_one_system";
    if !services::postgres_available(test) || !services::redis_available(test) {
        return;
    }
    two_stacks_are_one_system(Registry::Redis).await;
}

/// Retries `register` until it succeeds (the store is back), for at most `limit`.
async fn register_until_ok(stack: &Stack, id: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        match stack.models().register(RegisterModelRequest::new(id)).await {
            Ok(_) => return,
            Err(e) if start.elapsed() < limit => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "while recovering: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{id}: the stack did not recover within {limit:?}: {e}"),
        }
    }
}

/// Calls that need the registry while its server is down fail with `Unavailable`,
/// naming the server.
async fn assert_unavailable(stack: &Stack, port: u16) {
    let addr = format!("127.0.0.1:{port}");
    let err = stack
        .models()
        .register(RegisterModelRequest::new("while-down"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains(&addr), "{err}");
    let err = stack.models().list().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stacks_recover_from_database_restarts_by_themselves() {
    let test = "stacks_recover_from_database_restarts_by_themselves";
    if !services::private_postgres_available(test) || !services::private_redis_available(test) {
        return;
    }
    let pg = tokio::task::spawn_blocking(services::PrivatePostgres::start)
        .await
        .unwrap();
    let mut redis = services::PrivateRedis::start();
    let run = format!("fault_{}", services::unique_suffix());
    let on_pg = build(&config(pg.port, redis.port, Registry::Postgres, &run))
        .await
        .unwrap();
    let on_redis = build(&config(pg.port, redis.port, Registry::Redis, &run))
        .await
        .unwrap();
    for stack in [&on_pg, &on_redis] {
        stack
            .models()
            .register(RegisterModelRequest::new("before"))
            .await
            .unwrap();
    }

    // Redis goes away and comes back (empty: it keeps no data).
    redis.stop();
    assert_unavailable(&on_redis, redis.port).await;
    // The PostgreSQL-backed registry does not depend on Redis.
    assert!(listed(&on_pg).await.iter().any(|id| id.ends_with("before")));
    redis.restart();
    register_until_ok(&on_redis, "after-redis", Duration::from_secs(20)).await;
    assert!(listed(&on_redis)
        .await
        .iter()
        .any(|id| id.ends_with("after-redis")));

    // PostgreSQL goes away (an immediate shutdown, like a crash) and comes back.
    let pg_ref = &pg;
    tokio::task::block_in_place(|| pg_ref.stop());
    assert_unavailable(&on_pg, pg.port).await;
    tokio::task::block_in_place(|| pg_ref.restart());
    register_until_ok(&on_pg, "after-postgres", Duration::from_secs(30)).await;
    let now = listed(&on_pg).await;
    assert!(now.iter().any(|id| id.ends_with("before")), "{now:?}");
    assert!(
        now.iter().any(|id| id.ends_with("after-postgres")),
        "{now:?}"
    );
    drop((on_pg, on_redis));
}
