//! Building stacks from run configs and distributions, and calling them in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{echo_config, echo_spec};
use futures::StreamExt;
use llama_stack::core::api::inference::EmbeddingsRequest;
use llama_stack::core::api::inspect::RouteFilter;
use llama_stack::core::api::providers::HealthStatus;
use llama_stack::prelude::*;

async fn build(dir: &std::path::Path, extra: &str) -> Result<Stack> {
    Stack::builder()
        .config_yaml(echo_config(dir, extra))
        .with_provider(echo_spec())
        .build()
        .await
}

const REGISTERED: &str = r#"registered_resources:
  models:
  - model_id: my-model
    provider_id: echo
    provider_model_id: echo-base
  - model_id: embedder
    provider_id: echo
    model_type: embedding
    metadata: {embedding_dimension: 2}
"#;

#[tokio::test]
async fn starter_builds_offline_and_reports_itself() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder()
        .distribution("starter")
        .data_dir(dir.path())
        .build()
        .await
        .unwrap();
    assert_eq!(stack.config().name(), "starter");
    assert!(dir.path().join("kvstore.db").exists());
    assert_eq!(stack.inspect().version().await.unwrap().version, "0.7.1");
    assert_eq!(
        stack.inspect().health().await.unwrap().status,
        HealthStatus::Ok
    );
    let routes = stack.inspect().routes(None).await.unwrap().data;
    assert!(routes
        .iter()
        .any(|r| r.route == "/v1/chat/completions" && r.method == "POST"));
    assert!(!routes.iter().any(|r| r.route == "/v1/tool-runtime/invoke"));
    let deprecated = stack
        .inspect()
        .routes(Some(RouteFilter::Deprecated))
        .await
        .unwrap()
        .data;
    assert!(deprecated
        .iter()
        .any(|r| r.route == "/v1/tool-runtime/invoke"));
    let alpha = stack
        .inspect()
        .routes(Some(RouteFilter::V1alpha))
        .await
        .unwrap()
        .data;
    assert!(alpha.iter().all(|r| r.route.starts_with("/v1alpha/")
        || r.route.contains("completions")
        || r.route.contains("embeddings")));
}

#[tokio::test]
async fn registered_resources_appear_once_across_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let stack = build(dir.path(), REGISTERED).await.unwrap();
        let ids = common::model_ids(stack.models()).await;
        assert_eq!(
            ids,
            [
                "echo/echo-base",
                "echo/embedder",
                "echo/listed-1",
                "echo/listed-2"
            ],
        );
    }
    let stack = build(dir.path(), REGISTERED).await.unwrap();
    let m = stack.models().get("echo/embedder").await.unwrap();
    assert_eq!(m.model_type, ModelType::Embedding);
    assert_eq!(m.embedding_dimension(), Some(2));
    let openai = stack.models().openai_list().await.unwrap();
    let first = serde_json::to_value(&openai.data[0]).unwrap();
    assert_eq!(first["owned_by"], "llama_stack");
    assert_eq!(first["custom_metadata"]["provider_id"], "echo");
}

#[tokio::test]
async fn chat_routes_to_the_provider_with_its_model_id_and_echoes_the_requested_id() {
    let dir = tempfile::tempdir().unwrap();
    let stack = build(dir.path(), REGISTERED).await.unwrap();
    let resp = stack
        .inference()
        .chat_completion(ChatCompletionRequest::new(
            "echo/echo-base",
            [Message::system("be brief"), "hello there".into()],
        ))
        .await
        .unwrap();
    assert_eq!(resp.model, "echo/echo-base");
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("hello there")
    );

    let mut stream = stack
        .inference()
        .chat_completion_stream(ChatCompletionRequest::new(
            "echo/echo-base",
            ["one two three".into()],
        ))
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.model, "echo/echo-base");
        text.push_str(chunk.choices[0].delta.content.as_deref().unwrap_or(""));
    }
    assert_eq!(text, "one two three");

    // An unregistered <provider_id>/<model> goes straight to that provider.
    let resp = stack
        .inference()
        .chat_completion(ChatCompletionRequest::new("echo/anything", ["x".into()]))
        .await
        .unwrap();
    assert_eq!(resp.model, "echo/anything");

    let emb = stack
        .inference()
        .embeddings(EmbeddingsRequest::new("echo/embedder", "abc"))
        .await
        .unwrap();
    assert_eq!(emb.model, "echo/embedder");
    assert_eq!(emb.data.len(), 1);
}

#[tokio::test]
async fn bad_calls_get_typed_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let stack = build(dir.path(), REGISTERED).await.unwrap();
    let inf = stack.inference();

    let err = inf
        .chat_completion(ChatCompletionRequest::new("nope", ["hi".into()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.http_status(), 404);
    assert!(err.message().contains("'nope'"), "{err}");
    assert!(
        err.message().contains("echo/echo-base"),
        "lists what exists: {err}"
    );

    let err = inf
        .chat_completion(ChatCompletionRequest::new("echo/embedder", ["hi".into()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("is of type 'embedding'"), "{err}");

    let err = inf
        .chat_completion(ChatCompletionRequest::new("echo/echo-base", []))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("messages"), "{err}");

    let err = inf
        .chat_completion(
            ChatCompletionRequest::new("echo/echo-base", ["hi".into()]).with_temperature(9.0),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("temperature"), "{err}");

    // The provider lacks json_schema and tools: the router refuses before calling it.
    let req = ChatCompletionRequest::new("echo/echo-base", ["hi".into()])
        .with_response_format(ResponseFormat::JsonObject);
    let err = inf.chat_completion(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);

    let err = inf
        .completion(CompletionRequest::new("echo/echo-base", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("text completions"), "{err}");

    let err = stack.models().get("missing/model").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = stack.providers().inspect("nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn api_registration_persists_and_conflicts_on_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let stack = build(dir.path(), "").await.unwrap();
        let m = stack
            .models()
            .register(RegisterModelRequest::new("custom").with_provider_id("echo"))
            .await
            .unwrap();
        assert_eq!(m.identifier, "echo/custom");
        let m = stack
            .models()
            .register(RegisterModelRequest::new("echo/repo").with_provider_id("echo"))
            .await
            .unwrap();
        assert_eq!(
            (m.identifier.as_str(), m.provider_resource_id.as_str()),
            ("echo/echo/repo", "echo/repo"),
            "model ids are never stripped of a provider-looking prefix"
        );
        let err = stack
            .models()
            .register(RegisterModelRequest::new("custom").with_provider_id("echo"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.http_status(), 409);
        let err = stack
            .models()
            .register(RegisterModelRequest::new("e").with_model_type(ModelType::Embedding))
            .await
            .unwrap_err();
        assert!(err.message().contains("embedding_dimension"), "{err}");
        let err = stack
            .models()
            .register(RegisterModelRequest::new("x").with_provider_id("ghost"))
            .await
            .unwrap_err();
        assert!(
            err.message().contains("provider_id") && err.message().contains("echo"),
            "{err}"
        );
    }
    let stack = build(dir.path(), "").await.unwrap();
    assert!(stack.models().get("echo/custom").await.is_ok());
    stack.models().unregister("echo/custom").await.unwrap();
    let stack = build(dir.path(), "").await.unwrap();
    assert_eq!(
        stack.models().get("echo/custom").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn concurrent_registration_of_one_id_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let stack = build(dir.path(), "").await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = stack.clone();
        set.spawn(async move {
            s.models()
                .register(RegisterModelRequest::new("race").with_provider_id("echo"))
                .await
        });
    }
    let (mut ok, mut conflict) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.kind() == ErrorKind::Conflict => conflict += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, conflict), (1, 15));
}

#[tokio::test]
async fn users_see_only_what_the_default_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let auth = "server:\n  auth:\n    access_policy: []\n";
    let stack = build(dir.path(), &format!("{REGISTERED}{auth}"))
        .await
        .unwrap();
    let alice = User::new("alice").with_attribute("roles", ["ml"]);
    let bob = User::new("bob").with_attribute("roles", ["web"]);
    let carol = User::new("carol").with_attribute("roles", ["ml"]);

    stack
        .as_user(alice.clone())
        .models()
        .register(RegisterModelRequest::new("alice-model").with_provider_id("echo"))
        .await
        .unwrap();
    let visible = |s: &Stack, u: &User| common::model_ids(s.as_user(u.clone()).models());
    assert!(visible(&stack, &alice)
        .await
        .contains(&"echo/alice-model".to_string()));
    assert!(visible(&stack, &carol)
        .await
        .contains(&"echo/alice-model".to_string()));
    let bobs = visible(&stack, &bob).await;
    assert!(!bobs.contains(&"echo/alice-model".to_string()));
    assert!(
        bobs.contains(&"echo/echo-base".to_string()),
        "unowned stays visible"
    );

    // Unreadable looks like not found, for get, inference and delete.
    let bob_scope = stack.as_user(bob.clone());
    assert_eq!(
        bob_scope
            .models()
            .get("echo/alice-model")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let err = bob_scope
        .inference()
        .chat_completion(ChatCompletionRequest::new(
            "echo/alice-model",
            ["hi".into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        !err.message().contains("alice-model ("),
        "never lists what bob cannot see: {err}"
    );
    assert_eq!(
        bob_scope
            .models()
            .unregister("echo/alice-model")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    stack
        .as_user(carol)
        .models()
        .get("echo/alice-model")
        .await
        .unwrap();
    stack
        .as_user(alice)
        .models()
        .unregister("echo/alice-model")
        .await
        .unwrap();
}

#[tokio::test]
async fn explicit_policy_forbids_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let auth = r#"server:
  auth:
    access_policy:
    - permit: {actions: [read]}
    - permit: {actions: [create, delete]}
      when: user with admin in roles
"#;
    let stack = build(dir.path(), auth).await.unwrap();
    let dev = User::new("dev").with_attribute("roles", ["dev"]);
    let err = stack
        .as_user(dev)
        .models()
        .register(RegisterModelRequest::new("m").with_provider_id("echo"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert_eq!(err.http_status(), 403);
    assert!(
        err.message()
            .contains("cannot perform action 'create' on resource 'model::echo/m'"),
        "{err}"
    );
    let admin = User::new("root").with_attribute("roles", ["admin"]);
    stack
        .as_user(admin)
        .models()
        .register(RegisterModelRequest::new("m").with_provider_id("echo"))
        .await
        .unwrap();
}

#[tokio::test]
async fn providers_report_redacted_config_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let stack = build(dir.path(), "").await.unwrap();
    let list = stack.providers().list().await.unwrap().data;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].provider_type, "inline::echo");
    assert_eq!(list[0].api, "inference");
    assert_eq!(list[0].health.status, HealthStatus::Ok);
    let routes = stack.inspect().routes(None).await.unwrap().data;
    let chat = routes
        .iter()
        .find(|r| r.route == "/v1/chat/completions")
        .unwrap();
    assert_eq!(chat.provider_types, ["inline::echo"]);
}

#[tokio::test]
async fn config_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let check = |yaml: String, needle: &'static str| async move {
        let err = Stack::builder()
            .config_yaml(yaml)
            .with_provider(echo_spec())
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(
            err.message().contains(needle),
            "'{err}' should contain '{needle}'"
        );
    };
    let base = echo_config(dir.path(), "");
    check(
        base.replace("inline::echo", "inline::nope"),
        "providers.inference[0].provider_type",
    )
    .await;
    check(
        base.replace(
            "models: [listed-1, listed-2]",
            "models: [a]\n      colour: red",
        ),
        "providers.inference[0].config",
    )
    .await;
    check(
        base.replace(
            "models: [listed-1, listed-2]",
            "models: [a]\n      colour: red",
        ),
        "colour",
    )
    .await;
    check(
        base.replace(
            "provider_id: echo",
            "provider_id: ${env.LLAMA_STACK_TEST_SURELY_UNSET}",
        ),
        "LLAMA_STACK_TEST_SURELY_UNSET",
    )
    .await;
    check(format!("{base}bogus_key: 1\n"), "bogus_key").await;
    check(
        base.replace(
            "backend: kv_default, namespace: registry",
            "backend: missing, namespace: registry",
        ),
        "missing",
    )
    .await;
    let err = Stack::builder()
        .distribution("nope")
        .build()
        .await
        .unwrap_err();
    assert!(err.message().contains("starter"), "{err}");
}

#[tokio::test]
async fn disabled_providers_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = echo_config(dir.path(), "").replace(
        "provider_id: echo",
        "provider_id: ${env.LLAMA_STACK_TEST_SURELY_UNSET:+echo}",
    );
    let stack = Stack::builder()
        .config_yaml(yaml)
        .with_provider(echo_spec())
        .build()
        .await
        .unwrap();
    assert!(stack.providers().list().await.unwrap().data.is_empty());
    assert!(stack.models().list().await.unwrap().data.is_empty());
}

#[tokio::test]
async fn provider_listings_replace_what_the_provider_no_longer_lists() {
    let dir = tempfile::tempdir().unwrap();
    let ids = |s: Stack| async move { common::model_ids(s.models()).await };
    let stack = build(dir.path(), REGISTERED).await.unwrap();
    assert!(ids(stack).await.contains(&"echo/listed-2".to_string()));
    drop(build(dir.path(), "").await.unwrap());
    let yaml = echo_config(dir.path(), REGISTERED).replace("[listed-1, listed-2]", "[listed-1]");
    let stack = Stack::builder()
        .config_yaml(yaml)
        .with_provider(echo_spec())
        .build()
        .await
        .unwrap();
    assert_eq!(
        ids(stack).await,
        ["echo/echo-base", "echo/embedder", "echo/listed-1"]
    );
}

#[tokio::test]
async fn chat_completions_are_stored_listed_and_kept_per_caller() {
    use llama_stack::core::api::inference::ListChatCompletionsRequest;
    use llama_stack::core::storage::Order;

    let dir = tempfile::tempdir().unwrap();
    let auth = "server:\n  auth:\n    access_policy: []\n";
    let stack = build(dir.path(), &format!("{REGISTERED}{auth}"))
        .await
        .unwrap();
    let alice = stack.as_user(User::new("alice").with_attribute("roles", ["ml"]));
    let bob = stack.as_user(User::new("bob").with_attribute("roles", ["web"]));

    let ask = |model: &str, text: &str| {
        ChatCompletionRequest::new(model, [Message::system("be brief"), text.into()])
    };
    let first = alice
        .inference()
        .chat_completion(ask("echo/echo-base", "first question"))
        .await
        .unwrap();
    let mut stream = alice
        .inference()
        .chat_completion_stream(ask("echo/echo-base", "streamed answer here"))
        .await
        .unwrap();
    let mut streamed_id = String::new();
    while let Some(chunk) = stream.next().await {
        streamed_id = chunk.unwrap().id;
    }
    let third = alice
        .inference()
        .chat_completion(ask("echo/other", "third"))
        .await
        .unwrap();
    let mut unstored = ask("echo/echo-base", "do not keep");
    unstored
        .extra_body
        .insert("store".into(), serde_json::Value::Bool(false));
    let not_kept = alice.inference().chat_completion(unstored).await.unwrap();
    let bobs = bob
        .inference()
        .chat_completion(ask("echo/echo-base", "bob's"))
        .await
        .unwrap();

    // Newest first by default, only the caller's own, without the store:false one.
    let all = alice
        .inference()
        .list_chat_completions(ListChatCompletionsRequest::default())
        .await
        .unwrap();
    let ids: Vec<&str> = all.data.iter().map(|c| c.completion.id.as_str()).collect();
    assert_eq!(
        ids,
        [third.id.as_str(), streamed_id.as_str(), first.id.as_str()]
    );
    assert_eq!(all.object, "list");
    assert!(!all.has_more);
    assert_eq!(all.first_id, third.id);
    assert_eq!(all.last_id, first.id);

    // The stored form: the completion as returned plus the input messages.
    let got = alice
        .inference()
        .get_chat_completion(&first.id)
        .await
        .unwrap();
    assert_eq!(got.completion, first);
    assert_eq!(got.input_messages.len(), 2);
    assert_eq!(
        got.input_messages[1].content().unwrap().text(),
        "first question"
    );
    // A stream is stored as the completion it assembles to.
    let streamed = alice
        .inference()
        .get_chat_completion(&streamed_id)
        .await
        .unwrap();
    assert_eq!(
        streamed.completion.choices[0].message.content.as_deref(),
        Some("streamed answer here")
    );
    assert_eq!(streamed.completion.object, "chat.completion");
    assert_eq!(streamed.completion.model, "echo/echo-base");

    // Pages, order and the model filter.
    let page =
        |after: Option<&str>, order: Order, model: Option<&str>| ListChatCompletionsRequest {
            after: after.map(str::to_string),
            limit: Some(2),
            model: model.map(str::to_string),
            order: Some(order),
        };
    let p1 = alice
        .inference()
        .list_chat_completions(page(None, Order::Asc, None))
        .await
        .unwrap();
    assert_eq!(p1.data.len(), 2);
    assert!(p1.has_more);
    assert_eq!(p1.first_id, first.id);
    let p2 = alice
        .inference()
        .list_chat_completions(page(Some(&p1.last_id), Order::Asc, None))
        .await
        .unwrap();
    assert_eq!(p2.data.len(), 1);
    assert!(!p2.has_more);
    assert_eq!(p2.first_id, third.id);
    let other = alice
        .inference()
        .list_chat_completions(page(None, Order::Desc, Some("echo/other")))
        .await
        .unwrap();
    assert_eq!(other.data.len(), 1);
    assert_eq!(other.first_id, third.id);

    // Another caller sees neither the list entries nor the records.
    let for_bob = bob
        .inference()
        .list_chat_completions(ListChatCompletionsRequest::default())
        .await
        .unwrap();
    assert_eq!(for_bob.data.len(), 1);
    assert_eq!(for_bob.first_id, bobs.id);
    let err = bob
        .inference()
        .get_chat_completion(&first.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = alice
        .inference()
        .get_chat_completion(&not_kept.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = alice
        .inference()
        .list_chat_completions(ListChatCompletionsRequest {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.message().contains("limit"), "{err}");

    // Records survive a rebuild on the same storage.
    drop((alice, bob, stack));
    let stack = build(dir.path(), &format!("{REGISTERED}{auth}"))
        .await
        .unwrap();
    let alice = stack.as_user(User::new("alice").with_attribute("roles", ["ml"]));
    let again = alice
        .inference()
        .list_chat_completions(ListChatCompletionsRequest::default())
        .await
        .unwrap();
    assert_eq!(again.data.len(), 3);
}
