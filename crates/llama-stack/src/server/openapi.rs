//! `/openapi.json`: an OpenAPI 3.1 document generated from the route table and the
//! `JsonSchema` derives of the API types (JSON Schema 2020-12, components under
//! `#/components/schemas/`).

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::routes::RouteDef;
use llama_stack_core::api::inspect::LLAMA_STACK_VERSION;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn path_params(path: &str) -> Vec<Value> {
    let mut params = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let raw = &rest[start + 1..start + end];
        let name = raw.strip_suffix(":path").unwrap_or(raw);
        params.push(
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
        );
        rest = &rest[start + end + 1..];
    }
    params
}

/// The OpenAPI path key: `{x:path}` is written `{x}`.
pub fn openapi_path(path: &str) -> String {
    path.replace(":path}", "}")
}

/// The OpenAPI 3.1 document of `routes`.
pub fn document(routes: &[RouteDef]) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();

    for route in routes {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(route.operation));
        op.insert("summary".into(), json!(route.summary));
        op.insert("tags".into(), json!([route.tag]));
        if route.deprecated {
            op.insert("deprecated".into(), json!(true));
        }
        if route.public {
            op.insert("security".into(), json!([]));
        }
        let mut parameters = path_params(route.path);
        if let Some(query) = route.query {
            let schema = query(&mut generator);
            let resolved = resolve(&generator, schema.as_value());
            if let Some(props) = resolved.get("properties").and_then(Value::as_object) {
                for (name, s) in props {
                    parameters
                        .push(json!({"name": name, "in": "query", "required": false, "schema": s}));
                }
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = route.request {
            let schema = body(&mut generator);
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut content = Map::new();
        match route.response {
            Some(resp) => {
                content.insert(
                    "application/json".into(),
                    json!({"schema": resp(&mut generator)}),
                );
            }
            None => {
                content.insert(
                    "application/json".into(),
                    json!({"schema": {"type": "null"}}),
                );
            }
        }
        if let Some(stream) = route.stream {
            content.insert(
                "text/event-stream".into(),
                json!({"schema": stream(&mut generator), "description": "each event is `data: <JSON>`; the stream ends without a [DONE] sentinel"}),
            );
        }
        let responses = json!({
            "200": {"description": "OK", "content": content},
            "400": error_response("Invalid request (the message names the field)"),
            "401": error_response("Missing or invalid credentials"),
            "403": error_response("Denied by the route or access policy"),
            "404": error_response("Not found or not visible to the caller"),
            "413": error_response("Request body too large"),
            "429": error_response("Quota exceeded (see the Retry-After header)"),
            "500": error_response("Internal error"),
        });
        op.insert("responses".into(), responses);

        let key = openapi_path(route.path);
        let entry = paths.entry(key).or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(route.method.to_ascii_lowercase(), Value::Object(op));
        }
    }

    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(
        "ErrorBody".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string"},
                "code": {"type": "string"}
            }}}
        }),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Llama Stack",
            "version": LLAMA_STACK_VERSION,
            "description": "Llama Stack and OpenAI-compatible APIs served by llama-stack-rs"
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}]
    })
}

/// Follows a top-level `$ref` into the generator's definitions.
fn resolve(generator: &schemars::SchemaGenerator, schema: &Value) -> Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        if let Some(name) = r.rsplit('/').next() {
            if let Some(def) = generator.definitions().get(name) {
                return def.clone();
            }
        }
    }
    schema.clone()
}
