//! `remote::s3` files against moto's S3-compatible server (`tests/python/s3_server.sh`,
//! started by `.ci/run`, URL in `LLAMA_STACK_TEST_S3_URL`): the same Files API checks as
//! `inline::localfs`, bucket creation and checks, and S3 files feeding vector stores.
//! Without the server the tests print "skip"; under `CI=true` they fail instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod vector_io_conformance;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use llama_stack::core::api::files::{FilePurpose, UploadFileRequest};
use llama_stack::core::api::vector_io::*;
use llama_stack::{ErrorKind, Stack};
use vector_io_conformance::{config, model_present};

fn s3_url() -> Option<String> {
    let url = std::env::var("LLAMA_STACK_TEST_S3_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("LLAMA_STACK_TEST_S3_URL is not set (CI must start tests/python/s3_server.sh)");
        }
        eprintln!("skip: LLAMA_STACK_TEST_S3_URL is not set (tests/python/s3_server.sh start)");
    }
    url
}

fn bucket(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ls-{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

const SQLITE_VEC: &str = r#"  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {dir}/sqlite_vec.db
      persistence: {backend: kv_default, namespace: "vector_io::sqlite_vec"}"#;

/// The test config with `remote::s3` instead of `inline::localfs`.
fn s3_config(dir: &Path, url: &str, bucket: &str, create: bool, extra: &str) -> String {
    let d = dir.display().to_string();
    config(dir, &SQLITE_VEC.replace("{dir}", &d), extra).replace(
        &format!("    provider_type: inline::localfs\n    config:\n      storage_dir: {d}/files\n"),
        &format!(
            "    provider_type: remote::s3\n    config:\n      bucket_name: {bucket}\n      \
             endpoint_url: {url}\n      aws_access_key_id: test\n      aws_secret_access_key: test\n      \
             auto_create_bucket: {create}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_api_on_s3() {
    if !model_present() {
        return;
    }
    let Some(url) = s3_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("api");
    let yaml = s3_config(
        dir.path(),
        &url,
        &bucket,
        true,
        "      ttl_secs: 2\n      max_file_size_bytes: 1000",
    );
    assert!(yaml.contains("remote::s3"), "{yaml}");
    let stack = Stack::builder().config_yaml(yaml).build().await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("{url}/{bucket}");
    // Whether the bucket lists the key (moto answers unsigned listings; objects are private).
    let exists = move |id: String| {
        let request = http.get(format!("{base}?list-type=2&prefix={id}"));
        Box::pin(async move {
            let listing = request.send().await.unwrap().text().await.unwrap();
            assert!(listing.contains("<ListBucketResult"), "{listing}");
            listing.contains(&format!("<Key>{id}</Key>"))
        }) as vector_io_conformance::BoolFuture
    };
    vector_io_conformance::files_api(&stack, &exists).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_checked_and_created_when_allowed() {
    if !model_present() {
        return;
    }
    let Some(url) = s3_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("check");
    // Missing bucket, creation not allowed: a config error that says what to do.
    let e = Stack::builder()
        .config_yaml(s3_config(dir.path(), &url, &bucket, false, ""))
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("auto_create_bucket"), "{e}");
    assert!(e.message().contains("providers.files[0].config"), "{e}");
    // Created once; later builds (creation allowed or not) use it.
    for create in [true, true, false] {
        Stack::builder()
            .config_yaml(s3_config(dir.path(), &url, &bucket, create, ""))
            .build()
            .await
            .unwrap();
    }
    // Unreachable endpoint: an error at build time, not at first upload.
    let e = Stack::builder()
        .config_yaml(s3_config(
            dir.path(),
            "http://127.0.0.1:1",
            &bucket,
            false,
            "",
        ))
        .build()
        .await
        .unwrap_err();
    assert!(e.message().contains(&bucket), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_files_feed_vector_stores_and_survive_a_rebuild() {
    if !model_present() {
        return;
    }
    let Some(url) = s3_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("vs");
    let yaml = s3_config(dir.path(), &url, &bucket, true, "");
    let stack = Stack::builder()
        .config_yaml(yaml.clone())
        .build()
        .await
        .unwrap();
    let file = stack
        .files()
        .upload(UploadFileRequest::new(
            "tides.md",
            "# Tides\n\nSpring tides happen at new and full moon, when the sun and moon align.",
            FilePurpose::Assistants,
        ))
        .await
        .unwrap();
    let store = stack
        .vector_io()
        .create_vector_store(Default::default())
        .await
        .unwrap();
    let attached = stack
        .vector_io()
        .attach_file(&store.id, AttachFileRequest::new(file.id.clone()))
        .await
        .unwrap();
    assert_eq!(
        attached.status,
        VectorStoreFileStatus::Completed,
        "{attached:?}"
    );
    let hits = stack
        .vector_io()
        .search(
            &store.id,
            SearchVectorStoreRequest::new("when are spring tides?"),
        )
        .await
        .unwrap();
    assert_eq!(hits.data[0].file_id, file.id);
    assert_eq!(hits.data[0].filename, "tides.md");
    drop(stack);

    let stack = Stack::builder().config_yaml(yaml).build().await.unwrap();
    let content = stack.files().content(&file.id).await.unwrap();
    assert!(String::from_utf8(content.content)
        .unwrap()
        .contains("Spring tides"));
    stack.files().delete(&file.id).await.unwrap();
    assert_eq!(
        stack.files().content(&file.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
